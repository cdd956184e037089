// An app's topics: how many subscribe to each, who, and subscribers imported from a CSV file (its first column
// the user ids), a thousand a call, with the progress shown.
import { type Clients, clientStream, why } from "../api.js";
import { h, status, time } from "../dom.js";
import type { Session } from "../session.js";

const CHUNK = 1000;

export function topicsPage(api: Clients, session: Session, appId: string): HTMLElement {
  const app = h("input", { id: "topics-app", value: appId, required: "", size: "28" }) as HTMLInputElement;
  const form = h(
    "form",
    { class: "inline", "aria-label": "Choose the app" },
    h("label", { for: "topics-app" }, "App", app),
    h("button", { type: "submit" }, "Show its topics"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/topics/${encodeURIComponent(app.value.trim())}`;
  });
  const body = h("div", { "aria-live": "polite" });
  if (appId) void show(api, appId, body);
  return h(
    "section",
    { "aria-labelledby": "topics-title" },
    h("h1", { id: "topics-title" }, "Topics"),
    form,
    body,
    appId ? importer(session, appId, () => void show(api, appId, body)) : "",
  );
}

async function show(api: Clients, appId: string, into: HTMLElement): Promise<void> {
  try {
    const { topics } = await api.topics.listTopics({ appId, pageSize: 1000 });
    const subscribers = h("div", { "aria-live": "polite" });
    const rows = topics.map((topic) => {
      const list = h("button", { type: "button", class: "secondary", "aria-label": `Subscribers of ${topic.topicKey}` }, "Subscribers");
      list.addEventListener("click", async () => {
        const page = await api.topics.listSubscribers({ appId, topicKey: topic.topicKey, pageSize: 100 });
        subscribers.replaceChildren(
          h("h2", {}, `Subscribers of ${topic.topicKey}`),
          h("p", {}, page.userIds.join(", ") + (page.nextPageToken ? ", …" : "")),
        );
      });
      return h(
        "tr",
        {},
        h("td", {}, topic.topicKey),
        h("td", {}, topic.name),
        h("td", {}, String(topic.subscriberCount)),
        h("td", {}, time(topic.createTime?.seconds)),
        h("td", {}, list),
      );
    });
    into.replaceChildren(
      h(
        "table",
        { "aria-label": "Topics" },
        h("thead", {}, h("tr", {}, ...["Topic", "Name", "Subscribers", "Created", "Who"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, ...rows),
      ),
      subscribers,
    );
  } catch (error) {
    into.replaceChildren(h("p", { class: "error", role: "alert" }, why(error)));
  }
}

function importer(session: Session, appId: string, done: () => void): HTMLElement {
  const topic = h("input", { id: "import-topic", required: "", size: "24" }) as HTMLInputElement;
  const file = h("input", { id: "import-file", type: "file", accept: ".csv,text/csv,text/plain", required: "" }) as HTMLInputElement;
  const progress = h("progress", { id: "import-progress", value: "0", max: "1", "aria-label": "Import progress" }) as HTMLProgressElement;
  const said = h("p", { id: "import-said", "aria-live": "polite" });
  const form = h(
    "form",
    { "aria-labelledby": "import-title" },
    h("h2", { id: "import-title" }, "Import subscribers"),
    h("label", { for: "import-topic" }, "Topic", topic),
    h("label", { for: "import-file" }, "CSV file (user ids in the first column)", file),
    h("p", {}, h("button", { type: "submit" }, "Import")),
    progress,
    said,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = await file.files?.[0]?.text();
    if (!text) return;
    const userIds = text
      .split(/\r?\n/)
      .map((line) => line.split(",")[0].trim().replace(/^"|"$/g, ""))
      .filter((id, i) => id && !(i === 0 && /^user_?id$/i.test(id)));
    progress.max = userIds.length;
    let sent = 0;
    let added = 0;
    try {
      for (let at = 0; at < userIds.length; at += CHUNK) {
        const chunk = userIds.slice(at, at + CHUNK);
        const reply = await clientStream<{ addedCount?: string }>(session, "herald.v1.TopicService/AddSubscribers", [
          { appId, topicKey: topic.value.trim(), userIds: chunk },
        ]);
        sent += chunk.length;
        added += Number(reply.addedCount ?? 0);
        progress.value = sent;
        said.textContent = `${sent} of ${userIds.length} imported`;
      }
      status(`Imported ${userIds.length} user ids into ${topic.value.trim()}: ${added} newly subscribed.`);
      done();
    } catch (error) {
      said.textContent = `Stopped after ${sent} of ${userIds.length}: ${why(error)}`;
    }
  });
  return form;
}
