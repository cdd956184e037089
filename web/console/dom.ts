// A few lines instead of a framework: elements built from a tag, attributes and children, text always as text.
type Child = Node | string | null | undefined | false;

export function h(tag: string, attributes: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  for (const child of children) if (child) element.append(child);
  return element;
}

export function status(text: string): void {
  (document.getElementById("status") as HTMLElement).textContent = text;
}

export function time(seconds: bigint | undefined, nanos = 0): string {
  if (seconds === undefined) return "";
  return new Date(Number(seconds) * 1000 + nanos / 1e6).toISOString().replace("T", " ").replace("Z", " UTC");
}
