// A user, as support asks about one: who herald knows them as, their opt-outs, their deliveries, and - for a
// template - whether they would get it, and why not (ExplainRouting).
import { Category } from "../../gen/herald/v1/common_pb.js";
import { ChannelVerdict_Outcome } from "../../gen/herald/v1/routing_service_pb.js";
import { DeliveryState } from "../../gen/herald/v1/common_pb.js";
import { type Clients, why } from "../api.js";
import { h, time } from "../dom.js";

function lower(name: string | undefined): string {
  return (name ?? "").toLowerCase();
}

export function usersPage(api: Clients, userId: string): HTMLElement {
  const input = h("input", { id: "user-id", value: userId, required: "", size: "30" }) as HTMLInputElement;
  const form = h(
    "form",
    { class: "inline", role: "search", "aria-label": "Find a user" },
    h("label", { for: "user-id" }, "User id", input),
    h("button", { type: "submit" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/users/${encodeURIComponent(input.value.trim())}`;
  });
  const result = h("div", { "aria-live": "polite" });
  if (userId) void show(api, userId, result);
  return h("section", { "aria-labelledby": "users-title" }, h("h1", { id: "users-title" }, "Users"), form, result);
}

async function show(api: Clients, userId: string, into: HTMLElement): Promise<void> {
  const parts: Node[] = [];
  try {
    const user = await api.directory.getUser({ userId });
    const addresses = Object.entries(user.addresses).map(([channel, address]) => `${channel}: ${address}`);
    parts.push(
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Addresses"), h("dd", {}, addresses.join("; ") || "none in the directory"),
        h("dt", {}, "Time zone, locale"), h("dd", {}, `${user.timezone || "-"}, ${user.locale || "-"}`),
        h("dt", {}, "Preferred channel"), h("dd", {}, user.preferredChannel || "none"),
        h("dt", {}, "Opted out of"),
        h("dd", {}, user.preferences.filter((p) => p.optedOut).map((p) => `${lower(Category[p.category])} on ${p.channel || "every channel"}`).join("; ") || "nothing"),
      ),
    );
  } catch (error) {
    parts.push(h("p", {}, `The directory: ${why(error)}`));
  }
  parts.push(h("h2", {}, "Deliveries"));
  try {
    const { deliveries } = await api.status.listDeliveries({ userId, pageSize: 100 });
    parts.push(
      deliveries.length
        ? h(
            "table",
            { "aria-label": "The user's deliveries" },
            h("thead", {}, h("tr", {}, ...["When", "Message", "Template", "Channel", "State", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              ...deliveries.map((d) =>
                h(
                  "tr",
                  {},
                  h("td", {}, time(d.createTime?.seconds, d.createTime?.nanos)),
                  h("td", {}, h("a", { href: `#/messages/${encodeURIComponent(d.messageId)}` }, d.messageId)),
                  h("td", {}, d.templateId),
                  h("td", {}, d.channel),
                  h("td", { class: `state state-${lower(DeliveryState[d.state])}` }, lower(DeliveryState[d.state])),
                  h("td", {}, d.reason),
                ),
              ),
            ),
          )
        : h("p", {}, "No deliveries to this user."),
    );
  } catch (error) {
    parts.push(h("p", { class: "error", role: "alert" }, why(error)));
  }
  parts.push(explain(api, userId));
  into.replaceChildren(...parts);
}

function explain(api: Clients, userId: string): HTMLElement {
  const app = h("input", { id: "explain-app", required: "", size: "24" }) as HTMLInputElement;
  const template = h("input", { id: "explain-template", required: "", size: "24" }) as HTMLInputElement;
  const verdicts = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "inline", "aria-labelledby": "explain-title" },
    h("label", { for: "explain-app" }, "App", app),
    h("label", { for: "explain-template" }, "Template", template),
    h("button", { type: "submit" }, "Explain"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await api.routing.explainRouting({ appId: app.value.trim(), templateId: template.value.trim(), userId });
      verdicts.replaceChildren(
        h(
          "table",
          { "aria-label": "Would they get it" },
          h("thead", {}, h("tr", {}, ...["Channel", "Verdict", "Why"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            ...answer.verdicts.map((v) =>
              h("tr", {}, h("td", {}, v.channel), h("td", {}, lower(ChannelVerdict_Outcome[v.outcome])), h("td", {}, v.reason)),
            ),
          ),
        ),
      );
    } catch (error) {
      verdicts.replaceChildren(h("p", { class: "error", role: "alert" }, why(error)));
    }
  });
  return h("section", { "aria-labelledby": "explain-title" }, h("h2", { id: "explain-title" }, "Would they get a template?"), form, verdicts);
}
