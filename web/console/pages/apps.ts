// Apps and their keys: create one (its key shown once), rotate a key with a grace period for the old one, disable
// and enable - each change confirmed first, and each in the audit trail.
import type { App } from "../../gen/herald/v1/admin_service_pb.js";
import { type Clients, fieldProblems, why } from "../api.js";
import { confirmIn, h, status, time } from "../dom.js";

export function appsPage(api: Clients): HTMLElement {
  const list = h("div", {}, h("p", {}, "Loading…"));
  const dialog = h("dialog", { id: "app-dialog" }) as HTMLDialogElement;
  const refresh = () => void show(api, list, dialog, refresh);
  refresh();
  return h("section", { "aria-labelledby": "apps-title" }, h("h1", { id: "apps-title" }, "Apps and keys"), creation(api, dialog, refresh), list, dialog);
}

function creation(api: Clients, dialog: HTMLDialogElement, refresh: () => void): HTMLElement {
  const name = h("input", { id: "app-name", required: "", size: "24" }) as HTMLInputElement;
  const channels = h("input", { id: "app-channels", size: "30", placeholder: "e.g. email, sms" }) as HTMLInputElement;
  const problem = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "inline", "aria-label": "Create an app" },
    h("label", { for: "app-name" }, "New app's name", name),
    h("label", { for: "app-channels" }, "Channels it may send on (empty: all)", channels),
    h("button", { type: "submit" }, "Create app"),
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const allowedChannels = channels.value.split(",").map((c) => c.trim()).filter(Boolean);
      const made = await api.admin.createApp({ name: name.value.trim(), allowedChannels });
      problem.textContent = "";
      showKey(dialog, `${made.app?.name} (${made.app?.appId}) is created`, made.apiKey);
      refresh();
    } catch (error) {
      const problems = fieldProblems(error);
      problem.textContent = problems.size ? [...problems].map(([f, w]) => `${f}: ${w}`).join("; ") : why(error);
    }
  });
  return form;
}

async function show(api: Clients, into: HTMLElement, dialog: HTMLDialogElement, refresh: () => void): Promise<void> {
  try {
    const { apps } = await api.admin.listApps({ pageSize: 1000 });
    into.replaceChildren(
      h(
        "table",
        { "aria-label": "Apps" },
        h("thead", {}, h("tr", {}, ...["App", "Name", "Channels", "Rate / s", "Created", "State", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, ...apps.map((app) => row(api, app, dialog, refresh))),
      ),
    );
  } catch (error) {
    into.replaceChildren(h("p", { class: "error", role: "alert" }, why(error)));
  }
}

function row(api: Clients, app: App, dialog: HTMLDialogElement, refresh: () => void): HTMLElement {
  const rotate = h("button", { type: "button", class: "secondary", "aria-label": `Rotate key of ${app.name}` }, "Rotate key…");
  rotate.addEventListener("click", () => confirmRotation(api, app, dialog, refresh));
  const toggle = h(
    "button",
    { type: "button", class: "secondary", "aria-label": `${app.disabled ? "Enable" : "Disable"} ${app.name}` },
    app.disabled ? "Enable…" : "Disable…",
  );
  toggle.addEventListener("click", () =>
    confirmIn(dialog, `${app.disabled ? "Enable" : "Disable"} ${app.name}?`, app.disabled ? "Its keys work again." : "Its keys stop working everywhere within a second; nothing it sent is lost.", "Confirm", async () => {
      await (app.disabled ? api.admin.enableApp({ appId: app.appId }) : api.admin.disableApp({ appId: app.appId }));
      status(`${app.name} is ${app.disabled ? "enabled" : "disabled"}.`);
      refresh();
    }),
  );
  return h(
    "tr",
    {},
    h("td", {}, app.appId),
    h("td", {}, app.name),
    h("td", {}, app.allowedChannels.join(", ") || "all"),
    h("td", {}, app.rateLimitPerSecond ? String(app.rateLimitPerSecond) : "no limit"),
    h("td", {}, time(app.createTime?.seconds, app.createTime?.nanos)),
    h("td", {}, app.disabled ? "disabled" : "enabled"),
    h("td", {}, rotate, " ", toggle),
  );
}

function confirmRotation(api: Clients, app: App, dialog: HTMLDialogElement, refresh: () => void): void {
  const hours = h("input", { id: "grace-hours", type: "number", min: "0", max: "720", value: "24" }) as HTMLInputElement;
  confirmIn(
    dialog,
    `Rotate the key of ${app.name}?`,
    h("label", { for: "grace-hours" }, "Hours the current key keeps working", hours),
    "Confirm",
    async () => {
      const rotated = await api.admin.rotateAppKey({ appId: app.appId, gracePeriod: { seconds: BigInt(Math.round(Number(hours.value) * 3600)) } });
      showKey(dialog, `A new key for ${app.name}`, rotated.apiKey);
      refresh();
    },
  );
}

function showKey(dialog: HTMLDialogElement, title: string, key: string): void {
  const done = h("button", { type: "button" }, "I have copied it");
  dialog.replaceChildren(
    h("h2", { id: "app-dialog-title" }, title),
    h("p", {}, "Its API key, shown this once (herald keeps only its hash):"),
    h("p", {}, h("code", { id: "new-key" }, key)),
    h("p", {}, done),
  );
  done.addEventListener("click", () => dialog.close());
  if (!dialog.open) dialog.showModal();
  done.focus();
}
