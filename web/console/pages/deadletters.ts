// Dead letters: deliveries that failed after their last retry, each replayed - after a confirmation - with a
// fresh retry budget once the cause is fixed.
import { Category } from "../../gen/herald/v1/common_pb.js";
import type { DeadLetter } from "../../gen/herald/v1/dead_letter_service_pb.js";
import { type Clients, why } from "../api.js";
import { h, status, time } from "../dom.js";

export function deadLettersPage(api: Clients): HTMLElement {
  const body = h("div", {}, h("p", {}, "Loading…"));
  const dialog = h("dialog", { "aria-labelledby": "confirm-title" }) as HTMLDialogElement;
  const section = h("section", { "aria-labelledby": "dlq-title" }, h("h1", { id: "dlq-title" }, "Dead letters"), body, dialog);
  const refresh = () =>
    show(api, body, dialog, refresh).catch((error) => body.replaceChildren(h("p", { class: "error", role: "alert" }, why(error))));
  void refresh();
  return section;
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
  const yes = h("button", { type: "button" }, "Replay");
  const no = h("button", { type: "button", class: "secondary" }, "Cancel");
  dialog.replaceChildren(
    h("h2", { id: "confirm-title" }, `Replay dead letter ${letter.sequence}?`),
    h("p", {}, `Delivery ${letter.deliveryId} on ${letter.channel} goes out again with a fresh retry budget.`),
    h("p", {}, yes, " ", no),
  );
  no.addEventListener("click", () => dialog.close());
  yes.addEventListener("click", async () => {
    dialog.close();
    try {
      const { replayed } = await api.deadLetters.replayDeadLetters({ sequences: [letter.sequence] });
      status(`Replayed ${replayed} dead letter${replayed === 1 ? "" : "s"}.`);
    } catch (error) {
      status(`Not replayed: ${why(error)}`);
    }
    refresh();
  });
  dialog.showModal();
  no.focus();
}
