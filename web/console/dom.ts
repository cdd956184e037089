// A few lines instead of a framework: elements built from a tag, attributes and children, text always as text.
type Child = Node | string | null | undefined | false;

export function h(tag: string, attributes: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  for (const child of children) if (child) element.append(child);
  return element;
}

// Wraps a loader so that only the latest call's answer (or refusal) is shown: an earlier, slower one - the page's
// first load, a preview of what the author typed before - comes back as undefined, no longer wanted.
export function latestOnly<A extends unknown[], T>(load: (...args: A) => Promise<T>): (...args: A) => Promise<T | undefined> {
  let latest = 0;
  return async (...args: A) => {
    const mine = ++latest;
    try {
      const answer = await load(...args);
      return mine === latest ? answer : undefined;
    } catch (error) {
      if (mine === latest) throw error;
      return undefined;
    }
  };
}

export function status(text: string): void {
  (document.getElementById("status") as HTMLElement).textContent = text;
}

export function time(seconds: bigint | undefined, nanos = 0): string {
  if (seconds === undefined) return "";
  return new Date(Number(seconds) * 1000 + nanos / 1e6).toISOString().replace("T", " ").replace("Z", " UTC");
}

// Ask before a change: a modal dialog with the change's title and detail, doing `act` on `yes` (its refusal goes
// to the status line); the focus starts on Cancel.
export function confirmIn(dialog: HTMLDialogElement, title: string, detail: string | Node, yes: string, act: () => Promise<void>): void {
  const titleId = `${dialog.id || "dialog"}-title`;
  const go = h("button", { type: "button" }, yes);
  const no = h("button", { type: "button", class: "secondary" }, "Cancel");
  dialog.setAttribute("aria-labelledby", titleId);
  dialog.replaceChildren(h("h2", { id: titleId }, title), h("p", {}, detail), h("p", {}, go, " ", no));
  no.addEventListener("click", () => dialog.close());
  go.addEventListener("click", async () => {
    dialog.close();
    try {
      await act();
    } catch (error) {
      status(`Not done: ${(error as Error).message}`);
    }
  });
  dialog.showModal();
  no.focus();
}
