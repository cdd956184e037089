// Dead letters: deliveries that failed after their last retry, each replayed - after a confirmation - with a
// fresh retry budget once the cause is fixed; and the messages a stage gave up on (unprocessed), replayed alike.
import { Category } from "../../gen/herald/v1/common_pb.js";
import type { DeadLetter } from "../../gen/herald/v1/dead_letter_service_pb.js";
import { type Clients, why } from "../api.js";
import { confirmIn, h, status, time } from "../dom.js";

export function deadLettersPage(api: Clients): HTMLElement {
  const body = h("div", {}, h("p", {}, "Loading…"));
  const stuck = h("div", {}, h("p", {}, "Loading…"));
  const dialog = h("dialog", { id: "confirm" }) as HTMLDialogElement;
  const section = h(
    "section",
    { "aria-labelledby": "dlq-title" },
    h("h1", { id: "dlq-title" }, "Dead letters"),
    body,
    h("h2", {}, "Unprocessed messages"),
    stuck,
    dialog,
  );
  const refresh = () => {
    show(api, body, dialog, refresh).catch((error) => body.replaceChildren(h("p", { class: "error", role: "alert" }, why(error))));
    unprocessed(api, stuck, dialog, refresh).catch((error) => stuck.replaceChildren(h("p", { class: "error", role: "alert" }, why(error))));
  };
  refresh();
  return section;
}

async function unprocessed(api: Clients, into: HTMLElement, dialog: HTMLDialogElement, refresh: () => void): Promise<void> {
  const { unprocessedMessages } = await api.deadLetters.listUnprocessedMessages({ pageSize: 200 });
  if (unprocessedMessages.length === 0) {
    into.replaceChildren(h("p", {}, "None: every stage handled every message it was given."));
    return;
  }
  into.replaceChildren(
    h(
      "table",
      { "aria-label": "Unprocessed messages" },
      h("thead", {}, h("tr", {}, ...["Seq", "Stage", "Subject", "Tries", "Reason", "Given up", "Action"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        ...unprocessedMessages.map((m) => {
          const replay = h("button", { type: "button", class: "secondary", "aria-label": `Replay unprocessed message ${m.sequence}` }, "Replay…");
          replay.addEventListener("click", () =>
            confirmIn(dialog, `Replay unprocessed message ${m.sequence}?`, `It goes back to ${m.consumer} as it first came.`, "Replay", async () => {
              const { replayed } = await api.deadLetters.replayUnprocessedMessages({ sequences: [m.sequence], consumer: m.consumer });
              status(`Replayed ${replayed} unprocessed message${replayed === 1 ? "" : "s"}.`);
              refresh();
            }),
          );
          return h(
            "tr",
            {},
            h("td", {}, String(m.sequence)),
            h("td", {}, m.consumer),
            h("td", {}, m.subject),
            h("td", {}, String(m.deliveries)),
            h("td", {}, m.reason),
            h("td", {}, time(m.deadTime?.seconds, m.deadTime?.nanos)),
            h("td", {}, replay),
          );
        }),
      ),
    ),
  );
}

async function show(api: Clients, into: HTMLElement, dialog: HTMLDialogElement, refresh: () => void): Promise<void> {
  const { deadLetters } = await api.deadLetters.listDeadLetters({ pageSize: 200 });
  if (deadLetters.length === 0) {
    into.replaceChildren(h("p", {}, "No dead letters: every delivery was sent or is still being tried."));
    return;
  }
  const rows = deadLetters.map((letter) => {
    const replay = h("button", { type: "button", class: "secondary", "aria-label": `Replay dead letter ${letter.sequence}` }, "Replay…");
    replay.addEventListener("click", () => confirmReplay(api, letter, dialog, refresh));
    return h(
      "tr",
      {},
      h("td", {}, String(letter.sequence)),
      h("td", {}, h("a", { href: `#/messages/${encodeURIComponent(letter.messageId)}` }, letter.deliveryId)),
      h("td", {}, `${(Category[letter.category] ?? "").toLowerCase()} / ${letter.channel}`),
      h("td", {}, String(letter.attempts)),
      h("td", {}, letter.reason),
      h("td", {}, time(letter.deadTime?.seconds, letter.deadTime?.nanos)),
      h("td", {}, replay),
    );
  });
  into.replaceChildren(
    h(
      "table",
      { "aria-label": "Dead letters" },
      h("thead", {}, h("tr", {}, ...["Seq", "Delivery", "Category / channel", "Attempts", "Last error", "Died", "Action"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...rows),
    ),
  );
}

function confirmReplay(api: Clients, letter: DeadLetter, dialog: HTMLDialogElement, refresh: () => void): void {
  confirmIn(dialog, `Replay dead letter ${letter.sequence}?`, `Delivery ${letter.deliveryId} on ${letter.channel} goes out again with a fresh retry budget.`, "Replay", async () => {
    const { replayed } = await api.deadLetters.replayDeadLetters({ sequences: [letter.sequence] });
    status(`Replayed ${replayed} dead letter${replayed === 1 ? "" : "s"}.`);
    refresh();
  });
}

