// Provider accounts, in the order herald tries them for each channel (priority first, then weight among equals),
// with each one's circuit breaker as the adapters process that answered sees it.
import { CircuitState } from "../../gen/herald/v1/provider_service_pb.js";
import { type Clients, why } from "../api.js";
import { h, time } from "../dom.js";

function circuit(state: CircuitState): string {
  return state === CircuitState.UNSPECIFIED ? "-" : (CircuitState[state] ?? "").toLowerCase().replace("_", "-");
}

export function providersPage(api: Clients): HTMLElement {
  const body = h("div", {}, h("p", {}, "Loading…"));
  void (async () => {
    try {
      const { accounts } = await api.providers.listProviderAccounts({});
      const ordered = [...accounts].sort((a, b) => a.channel.localeCompare(b.channel) || a.priority - b.priority || b.weight - a.weight);
      body.replaceChildren(
        ordered.length
          ? h(
              "table",
              { "aria-label": "Provider accounts" },
              h("thead", {}, h("tr", {}, ...["Channel", "Account", "Provider", "Priority", "Weight", "Rate / s", "State", "Circuit", "Unit price", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
              h(
                "tbody",
                {},
                ...ordered.map((a) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, a.channel),
                    h("td", {}, a.name),
                    h("td", {}, a.provider),
                    h("td", {}, String(a.priority)),
                    h("td", {}, String(a.weight || 1)),
                    h("td", {}, a.rateLimitPerSecond ? String(a.rateLimitPerSecond) : "no limit"),
                    h("td", {}, a.disabled ? "disabled" : "in use"),
                    h("td", { class: a.circuitState === CircuitState.OPEN ? "error" : "" }, circuit(a.circuitState)),
                    h("td", {}, a.unitPriceMicros ? `${(Number(a.unitPriceMicros) / 1e6).toFixed(4)} ${a.currencyCode}` : "-"),
                    h("td", {}, time((a.updateTime ?? a.createTime)?.seconds)),
                  ),
                ),
              ),
            )
          : h("p", {}, "No provider accounts: each channel goes to its plug-in's default account."),
      );
    } catch (error) {
      body.replaceChildren(h("p", { class: "error", role: "alert" }, why(error)));
    }
  })();
  return h("section", { "aria-labelledby": "providers-title" }, h("h1", { id: "providers-title" }, "Provider accounts"), body);
}
