// Statistics: GetStats over a chosen range, hourly or daily, charted (Chart.js, bundled) and tabled - the table is
// the chart's numbers for whoever cannot see it, and the same numbers GetStats gives.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { StatsDimension, StatsInterval, type StatsRow } from "../../gen/herald/v1/status_service_pb.js";
import { type Clients, why } from "../api.js";
import { h, time } from "../dom.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const STATES = ["sent", "delivered", "read", "failed", "suppressed"] as const;
const COLOURS = ["#0b57d0", "#1e6b34", "#7b3fb5", "#a4161a", "#8a6d00"];
const HOUR = 3600_000;

function localInput(date: Date): string {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return shifted.toISOString().slice(0, 16);
}

export function statisticsPage(api: Clients): HTMLElement {
  const now = new Date();
  const from = h("input", { id: "stats-from", type: "datetime-local", value: localInput(new Date(now.getTime() - 24 * HOUR)) }) as HTMLInputElement;
  const to = h("input", { id: "stats-to", type: "datetime-local", value: localInput(new Date(now.getTime() + HOUR)) }) as HTMLInputElement;
  const interval = h("select", { id: "stats-interval" }, h("option", { value: "hour" }, "hourly"), h("option", { value: "day" }, "daily")) as HTMLSelectElement;
  const groupBy = h(
    "select",
    { id: "stats-group" },
    ...[["", "nothing"], ["app", "app"], ["channel", "channel"], ["template", "template"], ["provider", "provider account"]].map(([value, text]) => h("option", { value }, text)),
  ) as HTMLSelectElement;
  const app = h("input", { id: "stats-app", size: "24" }) as HTMLInputElement;
  const form = h(
    "form",
    { class: "inline", "aria-label": "Statistics range" },
    h("label", { for: "stats-from" }, "From", from),
    h("label", { for: "stats-to" }, "To", to),
    h("label", { for: "stats-interval" }, "Buckets", interval),
    h("label", { for: "stats-group" }, "Split by", groupBy),
    h("label", { for: "stats-app" }, "App (empty: every app)", app),
    h("button", { type: "submit" }, "Show"),
  );
  const canvas = h("canvas", { role: "img", "aria-label": "Deliveries by state per bucket; the table below has the numbers" }) as HTMLCanvasElement;
  const result = h("div", { id: "stats", "aria-live": "polite" });
  let chart: Chart | undefined;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const { rows } = await api.status.getStats({
        startTime: timestampFromDate(new Date(from.value)),
        endTime: timestampFromDate(new Date(to.value)),
        interval: interval.value === "day" ? StatsInterval.DAY : StatsInterval.HOUR,
        groupBy: groupBy.value ? [dimension(groupBy.value)] : [],
        appId: app.value.trim(),
      });
      chart?.destroy();
      chart = draw(canvas, rows, interval.value === "day");
      result.replaceChildren(table(rows, groupBy.value));
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, why(error)));
    }
  });
  return h(
    "section",
    { "aria-labelledby": "stats-title" },
    h("h1", { id: "stats-title" }, "Statistics"),
    form,
    h("div", { class: "chart" }, canvas),
    result,
  );
}

function dimension(name: string): StatsDimension {
  return { app: StatsDimension.APP, channel: StatsDimension.CHANNEL, template: StatsDimension.TEMPLATE, provider: StatsDimension.PROVIDER }[name] ?? StatsDimension.UNSPECIFIED;
}

function bucket(row: StatsRow, daily: boolean): string {
  return time(row.bucketStartTime?.seconds).slice(0, daily ? 10 : 16);
}

function draw(canvas: HTMLCanvasElement, rows: StatsRow[], daily: boolean): Chart {
  const buckets = [...new Set(rows.map((row) => bucket(row, daily)))];
  const totals = (state: (typeof STATES)[number]) =>
    buckets.map((b) => rows.filter((row) => bucket(row, daily) === b).reduce((sum, row) => sum + Number(row[state]), 0));
  return new Chart(canvas, {
    type: "bar",
    data: { labels: buckets, datasets: STATES.map((state, i) => ({ label: state, data: totals(state), backgroundColor: COLOURS[i] })) },
    options: { animation: false, responsive: true, maintainAspectRatio: false },
  });
}

function seconds(duration: { seconds: bigint; nanos: number } | undefined): string {
  return duration ? `${(Number(duration.seconds) + duration.nanos / 1e9).toFixed(2)} s` : "";
}

function table(rows: StatsRow[], group: string): HTMLElement {
  const columns = ["Bucket", ...(group ? [group] : []), ...STATES, "Opened", "Clicked", "Send p50", "Send p99", "Cost"];
  const body = rows.map((row) =>
    h(
      "tr",
      {},
      h("td", {}, time(row.bucketStartTime?.seconds)),
      ...(group ? [h("td", {}, { app: row.appId, channel: row.channel, template: row.templateId, provider: row.provider }[group] ?? "")] : []),
      ...STATES.map((state) => h("td", { "data-state": state }, String(row[state]))),
      h("td", {}, `${row.opened} (${(row.openRate * 100).toFixed(1)} %)`),
      h("td", {}, `${row.clicked} (${(row.clickRate * 100).toFixed(1)} %)`),
      h("td", {}, seconds(row.sendLatency?.p50)),
      h("td", {}, seconds(row.sendLatency?.p99)),
      h("td", {}, row.costs.map((c) => `${(Number(c.amountMicros) / 1e6).toFixed(4)} ${c.currencyCode}`).join(", ")),
    ),
  );
  return h(
    "table",
    { "aria-label": "Statistics" },
    h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ...(body.length ? body : [h("tr", {}, h("td", { colspan: String(columns.length) }, "No deliveries in this range."))])),
  );
}
