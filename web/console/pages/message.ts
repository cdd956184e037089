// What happened to a message: its deliveries, each with its state, attempts, reason and every state it passed.
import { ConnectError } from "@connectrpc/connect";
import type { Delivery, Message } from "../../gen/herald/v1/status_service_pb.js";
import { Category, DeliveryState } from "../../gen/herald/v1/common_pb.js";
import type { Clients } from "../api.js";
import { h, time } from "../dom.js";

const PAGE = 500;

function stateName(state: DeliveryState): string {
  return (DeliveryState[state] ?? String(state)).toLowerCase();
}

export function messagePage(api: Clients, messageId: string, jaegerUrl: string): HTMLElement {
  const input = h("input", { id: "message-id", name: "message-id", value: messageId, required: "", size: "44" }) as HTMLInputElement;
  const form = h(
    "form",
    { class: "inline", role: "search", "aria-label": "Find a message" },
    h("label", { for: "message-id" }, "Message id", input),
    h("button", { type: "submit" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/messages/${encodeURIComponent(input.value.trim())}`;
  });
  const result = h("div", { id: "message", "aria-live": "polite" });
  if (messageId) {
    result.append(h("p", {}, "Loading…"));
    show(api, messageId, jaegerUrl, result);
  }
  return h("section", { "aria-labelledby": "messages-title" }, h("h1", { id: "messages-title" }, "Messages"), form, result);
}

async function show(api: Clients, messageId: string, jaegerUrl: string, into: HTMLElement): Promise<void> {
  try {
    let page = await api.status.getMessage({ messageId, pageSize: PAGE });
    const deliveries = [...page.deliveries];
    while (page.nextPageToken) {
      page = await api.status.getMessage({ messageId, pageSize: PAGE, pageToken: page.nextPageToken });
      deliveries.push(...page.deliveries);
    }
    into.replaceChildren(...timeline(page, deliveries, jaegerUrl));
  } catch (error) {
    into.replaceChildren(h("p", { class: "error", role: "alert" }, ConnectError.from(error).rawMessage));
  }
}

function timeline(message: Message, deliveries: Delivery[], jaegerUrl: string): Node[] {
  const counts = message.deliveryStateCounts.map((c) => `${stateName(c.state)} ${c.count}`).join(", ");
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Message"), h("dd", {}, message.messageId),
    h("dt", {}, "Template"), h("dd", {}, `${message.templateId} (version ${message.templateVersion})`),
    h("dt", {}, "Category"), h("dd", {}, (Category[message.category] ?? "").toLowerCase()),
    h("dt", {}, "Accepted"), h("dd", {}, time(message.createTime?.seconds, message.createTime?.nanos)),
    h("dt", {}, "Deliveries"), h("dd", {}, `${message.deliveryCount}${counts ? `: ${counts}` : ""}`),
    h("dt", {}, "Trace"),
    h("dd", {}, message.traceId && jaegerUrl ? h("a", { href: `${jaegerUrl}/trace/${message.traceId}` }, `${message.traceId} in Jaeger`) : message.traceId || "none"),
  );
  const rows = deliveries.map((d) =>
    h(
      "tr",
      {},
      h("td", {}, d.channel),
      h("td", {}, d.userId || "(in the request)"),
      h("td", { class: `state state-${stateName(d.state)}` }, stateName(d.state)),
      h("td", {}, String(d.attempts)),
      h("td", {}, d.reason),
      h("td", {}, d.provider),
      h("td", {}, time(d.updateTime?.seconds, d.updateTime?.nanos)),
      h("td", {}, history(d)),
    ),
  );
  const table = h(
    "table",
    { "aria-label": "Deliveries" },
    h("thead", {}, h("tr", {}, ...["Channel", "User", "State", "Attempts", "Reason", "Provider", "Updated", "History"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ...rows),
  );
  return [facts, h("h2", {}, "Deliveries"), table];
}

function history(delivery: Delivery): HTMLElement {
  const steps = delivery.history.map((step) =>
    h(
      "li",
      {},
      `${time(step.occurTime?.seconds, step.occurTime?.nanos)}: ${stateName(step.state)}`,
      step.attempt ? ` (attempt ${step.attempt})` : "",
      step.reason ? ` - ${step.reason}` : "",
    ),
  );
  return h("details", {}, h("summary", {}, `${steps.length} steps`), h("ol", { class: "history" }, ...steps));
}
