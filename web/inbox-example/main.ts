// One user's inbox through herald-gateway: Sync what is stored, then Subscribe for what comes, over the Connect
// protocol with JSON (connect-web), authorised by an inbox token. Opened as index.html#gateway=<url>&token=<token>.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { type InboxItem, InboxService, MarkReadRequestSchema } from "../gen/herald/v1/inbox_service_pb.js";

const config = new URLSearchParams(location.hash.slice(1));
const token = config.get("token") ?? "";
const bearer: Interceptor = (next) => (request) => {
  request.header.set("Authorization", `Bearer ${token}`);
  return next(request);
};
const inbox = createClient(
  InboxService,
  createConnectTransport({ baseUrl: config.get("gateway") ?? location.origin, interceptors: [bearer] }),
);

const list = document.getElementById("items") as HTMLUListElement;
const state = document.getElementById("state") as HTMLParagraphElement;
const unread = document.getElementById("unread") as HTMLSpanElement;
// seq -> the item as last seen; the stream sends an item again when another device reads or deletes it.
const items = new Map<bigint, InboxItem>();
let cursor = 0n;

function show(item: InboxItem): void {
  items.set(item.seq, item);
  if (item.seq > cursor) cursor = item.seq;
  const id = `item-${item.seq}`;
  let row = document.getElementById(id) as HTMLLIElement | null;
  if (item.deleted) {
    row?.remove();
    return;
  }
  if (!row) {
    row = document.createElement("li");
    row.id = id;
    row.dataset.seq = String(item.seq);
    // Newest first: before the first row with a lower sequence.
    const after = [...list.children].find((other) => BigInt((other as HTMLElement).dataset.seq ?? 0) < item.seq);
    list.insertBefore(row, after ?? null);
  }
  row.className = item.read ? "read" : "unread";
  const title = document.createElement("h2");
  title.textContent = item.title;
  const body = document.createElement("p");
  body.textContent = item.body;
  row.replaceChildren(...(item.title ? [title] : []), body);
  if (!item.read) {
    const read = document.createElement("button");
    read.textContent = "Mark read";
    read.setAttribute("aria-label", `Mark "${item.title || item.body}" read`);
    read.addEventListener("click", () => {
      markRead(item.seq).catch((error) => {
        state.textContent = `Could not mark it read: ${ConnectError.from(error).rawMessage}`;
      });
    });
    row.append(read);
  }
  const count = [...items.values()].filter((i) => !i.read && !i.deleted).length;
  unread.textContent = count ? `(${count})` : "";
}

async function markRead(seq: bigint): Promise<void> {
  await inbox.markRead(create(MarkReadRequestSchema, { seqs: [seq] }));
}

async function sync(): Promise<void> {
  for (;;) {
    const page = await inbox.sync({ afterSeq: cursor });
    page.items.forEach(show);
    if (!page.items.length || cursor >= page.maxSeq) return;
  }
}

async function follow(): Promise<void> {
  for (let backoff = 1000; ; backoff = Math.min(backoff * 2, 30000)) {
    try {
      await sync();
      state.textContent = "Up to date";
      for await (const item of inbox.subscribe({ afterSeq: cursor })) {
        show(item);
        backoff = 1000;
      }
    } catch (error) {
      const failure = ConnectError.from(error);
      if (failure.code === Code.Unauthenticated || failure.code === Code.PermissionDenied) {
        state.textContent = `Signed out: ${failure.rawMessage}`;
        return;
      }
      state.textContent = `Reconnecting: ${failure.rawMessage}`;
    }
    await new Promise((resume) => setTimeout(resume, backoff));
  }
}

void follow();
