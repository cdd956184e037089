// The audit trail: who changed what, newest first, filtered by actor, action or target.
import { type Clients, why } from "../api.js";
import { h, latestOnly, time } from "../dom.js";

export function auditPage(api: Clients): HTMLElement {
  const inputs = {
    actor: h("input", { id: "audit-actor", size: "24" }) as HTMLInputElement,
    action: h("input", { id: "audit-action", size: "32" }) as HTMLInputElement,
    target: h("input", { id: "audit-target", size: "28" }) as HTMLInputElement,
  };
  const form = h(
    "form",
    { class: "inline", "aria-label": "Filter the audit trail" },
    h("label", { for: "audit-actor" }, "Actor", inputs.actor),
    h("label", { for: "audit-action" }, "Action (a service ending in / for all its calls)", inputs.action),
    h("label", { for: "audit-target" }, "Target", inputs.target),
    h("button", { type: "submit" }, "Show"),
  );
  const result = h("div", { "aria-live": "polite" });
  const list = latestOnly(() =>
    api.audit.listAuditEvents({
      actor: inputs.actor.value.trim(),
      action: inputs.action.value.trim(),
      target: inputs.target.value.trim(),
      pageSize: 200,
    }),
  );
  const load = async () => {
    try {
      const answer = await list();
      if (!answer) return;
      const { auditEvents } = answer;
      result.replaceChildren(
        h(
          "table",
          { "aria-label": "Audit trail" },
          h("thead", {}, h("tr", {}, ...["When", "Actor", "Action", "Target", "Outcome"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            ...auditEvents.map((e) =>
              h(
                "tr",
                {},
                h("td", {}, time(e.occurTime?.seconds, e.occurTime?.nanos)),
                h("td", {}, e.actor),
                h("td", {}, e.action.replace(/^herald\.v1\./, "")),
                h("td", {}, e.target),
                h("td", { class: e.outcome === "OK" ? "" : "error" }, e.outcome === "OK" ? "OK" : `${e.outcome}: ${e.outcomeMessage}`),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, why(error)));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void load();
  });
  void load();
  return h("section", { "aria-labelledby": "audit-title" }, h("h1", { id: "audit-title" }, "Audit trail"), form, result);
}
