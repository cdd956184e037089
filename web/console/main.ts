// herald's console: one page served by herald-gateway at /, routed by the URL's fragment.
import { clients } from "./api.js";
import { h, status } from "./dom.js";
import { appsPage } from "./pages/apps.js";
import { auditPage } from "./pages/audit.js";
import { deadLettersPage } from "./pages/deadletters.js";
import { messagePage } from "./pages/message.js";
import { providersPage } from "./pages/providers.js";
import { signInPage } from "./pages/signin.js";
import { statisticsPage } from "./pages/statistics.js";
import { templatesPage } from "./pages/templates.js";
import { topicsPage } from "./pages/topics.js";
import { usersPage } from "./pages/users.js";
import { type ConsoleConfig, current, finishSignIn, may, type Session, signOut } from "./session.js";

interface Page {
  path: string;
  title: string;
  roles: string[];
  render: (session: Session, argument: string) => HTMLElement;
}

const PAGES: Page[] = [
  {
    path: "messages",
    title: "Messages",
    roles: ["herald.support"],
    render: (session, argument) => messagePage(clients(session), decodeURIComponent(argument), config.jaegerUrl),
  },
  {
    path: "users",
    title: "Users",
    roles: ["herald.support", "herald.operator"],
    render: (session, argument) => usersPage(clients(session), decodeURIComponent(argument)),
  },
  {
    path: "statistics",
    title: "Statistics",
    roles: ["herald.analyst"],
    render: (session) => statisticsPage(clients(session)),
  },
  {
    path: "templates",
    title: "Templates",
    roles: ["herald.author", "herald.support", "herald.operator"],
    render: (session, argument) =>
      templatesPage(clients(session), decodeURIComponent(argument), may(session, "herald.author")),
  },
  {
    path: "dead-letters",
    title: "Dead letters",
    roles: ["herald.operator"],
    render: (session) => deadLettersPage(clients(session)),
  },
  {
    path: "providers",
    title: "Providers",
    roles: ["herald.operator"],
    render: (session) => providersPage(clients(session)),
  },
  {
    path: "topics",
    title: "Topics",
    roles: ["herald.operator"],
    render: (session, argument) => topicsPage(clients(session), session, decodeURIComponent(argument)),
  },
  {
    path: "apps",
    title: "Apps",
    roles: ["herald.operator"],
    render: (session) => appsPage(clients(session)),
  },
  {
    path: "audit",
    title: "Audit trail",
    roles: ["herald.operator", "herald.support"],
    render: (session) => auditPage(clients(session)),
  },
];

let config: ConsoleConfig;

function route(): void {
  const session = current();
  const main = document.getElementById("main") as HTMLElement;
  const [path, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  status("");
  if (!session) {
    navigation(null, "");
    main.replaceChildren(signInPage(config, () => (location.hash = "#/messages")));
    document.title = "Sign in - herald console";
    return;
  }
  const offered = PAGES.filter((page) => may(session, ...page.roles));
  const page = offered.find((p) => p.path === path) ?? offered[0];
  navigation(session, page?.path ?? "");
  if (!page) {
    main.replaceChildren(h("p", {}, "Your roles give you no page of this console."));
    return;
  }
  document.title = `${page.title} - herald console`;
  main.replaceChildren(page.render(session, rest.join("/")));
}

function navigation(session: Session | null, active: string): void {
  const nav = document.getElementById("nav") as HTMLElement;
  const who = document.getElementById("who") as HTMLElement;
  nav.replaceChildren(
    ...(session ? PAGES.filter((page) => may(session, ...page.roles)) : []).map((page) =>
      h("li", {}, h("a", { href: `#/${page.path}`, ...(page.path === active ? { "aria-current": "page" } : {}) }, page.title)),
    ),
  );
  if (!session) {
    who.replaceChildren();
    return;
  }
  const out = h("button", { type: "button", class: "secondary" }, "Sign out");
  out.addEventListener("click", () => {
    signOut();
    route();
  });
  who.replaceChildren(h("span", {}, `${session.actor} (${session.roles.join(", ") || "no herald role"})`), out);
}

async function start(): Promise<void> {
  config = (await (await fetch("/console/config.json")).json()) as ConsoleConfig;
  try {
    await finishSignIn(config.oidc);
  } catch (error) {
    status(`Sign-in failed: ${(error as Error).message}`);
  }
  window.addEventListener("hashchange", route);
  route();
}

start().catch((error: Error) => status(`The console could not start: ${error.message}`));
