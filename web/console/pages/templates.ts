// Templates: the list, and an editor whose preview follows the author's typing (PreviewTemplate renders the draft
// on the server, as a Send would) and whose Save adds a version; herald's objections appear at their fields.
import { clone, create } from "@bufbuild/protobuf";
import { type Template, TemplateSchema } from "../../gen/herald/v1/admin_service_pb.js";
import { Category } from "../../gen/herald/v1/common_pb.js";
import { type Clients, fieldProblems, why } from "../api.js";
import { lineDiff } from "../diff.js";
import { h, latestOnly, status, time } from "../dom.js";

const PREVIEW_DELAY_MS = 250;

export function templatesPage(api: Clients, templateId: string, mayEdit: boolean): HTMLElement {
  const section = h("section", { "aria-labelledby": "templates-title" }, h("h1", { id: "templates-title" }, "Templates"));
  const body = h("div", {}, h("p", {}, "Loading…"));
  section.append(body);
  (templateId ? editor(api, templateId, mayEdit, body) : list(api, body, mayEdit)).catch((error) =>
    body.replaceChildren(h("p", { class: "error", role: "alert" }, why(error))),
  );
  return section;
}

async function list(api: Clients, into: HTMLElement, mayEdit: boolean): Promise<void> {
  const { templates } = await api.admin.listTemplates({ pageSize: 1000 });
  const rows = templates.map((t) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/templates/${encodeURIComponent(t.templateId)}` }, t.templateId)),
      h("td", {}, (Category[t.category] ?? "").toLowerCase()),
      h("td", {}, String(t.version)),
      h("td", {}, [...new Set(t.contents.map((c) => c.channel))].join(", ")),
      h("td", {}, t.ownerAppId || "the company"),
      h("td", {}, time(t.createTime?.seconds, t.createTime?.nanos)),
    ),
  );
  into.replaceChildren(
    mayEdit ? creation(api) : "",
    h(
      "table",
      { "aria-label": "Templates" },
      h("thead", {}, h("tr", {}, ...["Template", "Category", "Version", "Channels", "Owner", "Last version"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...rows),
    ),
  );
}

function creation(api: Clients): HTMLElement {
  const id = h("input", { id: "new-template-id", required: "", size: "24" }) as HTMLInputElement;
  const category = h(
    "select",
    { id: "new-template-category" },
    ...[["NOTIFICATION", "notification"], ["MARKETING", "marketing"], ["CRITICAL", "critical"]].map(([value, text]) => h("option", { value }, text)),
  ) as HTMLSelectElement;
  const channel = h("input", { id: "new-template-channel", required: "", size: "12", value: "email" }) as HTMLInputElement;
  const problem = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "inline", "aria-label": "Create a template" },
    h("label", { for: "new-template-id" }, "New template's id", id),
    h("label", { for: "new-template-category" }, "Category", category),
    h("label", { for: "new-template-channel" }, "First channel", channel),
    h("button", { type: "submit" }, "Create template"),
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.admin.createTemplate({
        template: {
          templateId: id.value.trim(),
          category: Category[category.value as keyof typeof Category],
          contents: [{ channel: channel.value.trim(), subject: channel.value.trim() === "email" ? "Subject" : "", body: "Write here" }],
        },
      });
      location.hash = `#/templates/${encodeURIComponent(id.value.trim())}`;
    } catch (error) {
      const problems = fieldProblems(error);
      problem.textContent = problems.size ? [...problems].map(([f, w]) => `${f}: ${w}`).join("; ") : why(error);
    }
  });
  return form;
}

function versions(api: Clients, stored: Template): HTMLElement {
  const choice = h(
    "select",
    { id: "compare-version" },
    h("option", { value: "" }, "choose"),
    ...Array.from({ length: stored.version - 1 }, (_, i) => h("option", { value: String(i + 1) }, `version ${i + 1}`)),
  ) as HTMLSelectElement;
  const shown = h("div", { "aria-live": "polite" });
  choice.addEventListener("change", async () => {
    if (!choice.value) return shown.replaceChildren();
    const older = await api.admin.getTemplate({ templateId: stored.templateId, version: Number(choice.value) });
    shown.replaceChildren(
      ...stored.contents.map((content) => {
        const was = older.contents.find((c) => c.channel === content.channel && c.locale === content.locale);
        const lines = lineDiff(`${was?.subject ?? ""}\n${was?.body ?? ""}`, `${content.subject}\n${content.body}`);
        return h(
          "figure",
          {},
          h("figcaption", {}, `${content.channel}${content.locale ? `, ${content.locale}` : ""}: version ${choice.value} → ${stored.version}`),
          h("pre", { class: "diff" }, ...lines.map(([kind, text]) => h(kind === "added" ? "ins" : kind === "removed" ? "del" : "span", {}, `${kind === "added" ? "+ " : kind === "removed" ? "- " : "  "}${text}\n`))),
        );
      }),
    );
  });
  return h(
    "section",
    { "aria-labelledby": "versions-title" },
    h("h2", { id: "versions-title" }, "Versions"),
    stored.version > 1 ? h("label", { for: "compare-version" }, `Compare version ${stored.version} with`, choice) : h("p", {}, "This is the first version."),
    shown,
  );
}

async function editor(api: Clients, templateId: string, mayEdit: boolean, into: HTMLElement): Promise<void> {
  const stored = await api.admin.getTemplate({ templateId });
  const draft: Template = clone(TemplateSchema, stored);
  const fields = new Map<string, HTMLElement>();
  const general = h("p", { class: "error", role: "alert" });

  function field(path: string, label: string, control: HTMLInputElement | HTMLTextAreaElement, onInput: (value: string) => void): HTMLElement {
    const id = path.replace(/[^a-z0-9]+/gi, "-");
    const problem = h("p", { class: "error", id: `${id}-problem` });
    control.id = id;
    control.setAttribute("aria-describedby", problem.id);
    control.readOnly = !mayEdit;
    control.addEventListener("input", () => {
      onInput(control.value);
      schedulePreview();
    });
    fields.set(path, problem);
    return h("div", { class: "field" }, h("label", { for: id }, label, control), problem);
  }

  const editors: HTMLElement[] = [
    field("template.description", "Description", Object.assign(h("input", { size: "60" }) as HTMLInputElement, { value: draft.description }), (v) => (draft.description = v)),
  ];
  draft.contents.forEach((content, i) => {
    const where = `${content.channel}${content.locale ? `, ${content.locale}` : ""}`;
    if (content.subject || content.channel === "email") {
      const subject = Object.assign(h("input", { size: "60" }) as HTMLInputElement, { value: content.subject });
      editors.push(field(`template.contents[${i}].subject`, `Subject (${where})`, subject, (v) => (content.subject = v)));
    }
    const text = Object.assign(h("textarea", { rows: "6", cols: "80" }) as HTMLTextAreaElement, { value: content.body });
    editors.push(field(`template.contents[${i}].body`, `Body (${where})`, text, (v) => (content.body = v)));
  });
  const variables = h("textarea", { id: "variables", rows: "3", cols: "40" }) as HTMLTextAreaElement;
  variables.value = draft.variables.map((name) => `${name}=`).join("\n");
  variables.addEventListener("input", () => schedulePreview());
  const locale = h("input", { id: "locale", size: "10" }) as HTMLInputElement;
  locale.addEventListener("input", () => schedulePreview());
  const preview = h("div", { id: "preview", "aria-live": "polite" });

  let timer: number | undefined;
  function schedulePreview(): void {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void renderPreview(), PREVIEW_DELAY_MS);
  }

  function showProblems(problems: Map<string, string>, error: unknown): void {
    for (const [path, problem] of fields) {
      problem.textContent = problems.get(path) ?? "";
      document.getElementById(path.replace(/[^a-z0-9]+/gi, "-"))?.setAttribute("aria-invalid", String(problems.has(path)));
    }
    const elsewhere = [...problems].filter(([path]) => !fields.has(path)).map(([path, text]) => `${path}: ${text}`);
    general.textContent = error && problems.size === 0 ? why(error) : elsewhere.join("; ");
  }

  const render = latestOnly((values: Record<string, string>) =>
    api.admin.previewTemplate({ template: draft, variables: values, locale: locale.value.trim() }),
  );

  async function renderPreview(): Promise<void> {
    const values = Object.fromEntries(
      variables.value.split("\n").filter((line) => line.includes("=")).map((line) => [line.slice(0, line.indexOf("=")).trim(), line.slice(line.indexOf("=") + 1)]),
    );
    try {
      const answer = await render(values);
      if (!answer) return;
      const { contents } = answer;
      showProblems(new Map(), null);
      preview.replaceChildren(
        ...contents.map((c) => h("article", { class: "rendered" }, h("h3", {}, c.channel), c.subject ? h("p", {}, h("strong", {}, c.subject)) : null, h("pre", {}, c.body))),
      );
    } catch (error) {
      showProblems(fieldProblems(error), error);
    }
  }

  const save = h("button", { type: "submit" }, "Save as a new version");
  const archive = h("button", { type: "button", class: "secondary" }, "Archive…");
  archive.addEventListener("click", async () => {
    if (!window.confirm(`Archive ${draft.templateId}? Sends naming it are refused from then on; what was sent stays.`)) return;
    try {
      const archived = await api.admin.archiveTemplate({ templateId: draft.templateId });
      status(`${archived.templateId} is archived.`);
      await editor(api, templateId, mayEdit, into);
    } catch (error) {
      status(`Not archived: ${why(error)}`);
    }
  });
  const form = h(
    "form",
    { "aria-labelledby": "editor-title" },
    h("h2", { id: "editor-title" }, `${draft.templateId}, version ${stored.version}`),
    h("p", {}, `${(Category[draft.category] ?? "").toLowerCase()}; owner: ${draft.ownerAppId || "the company"}`),
    ...editors,
    general,
    stored.archiveTime ? h("p", {}, `Archived ${time(stored.archiveTime.seconds)}.`) : null,
    mayEdit && !stored.archiveTime ? h("p", {}, save, " ", archive) : null,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const saved = await api.admin.updateTemplate({ template: create(TemplateSchema, draft) });
      status(`Saved ${saved.templateId} as version ${saved.version}.`);
      await editor(api, templateId, mayEdit, into);
    } catch (error) {
      showProblems(fieldProblems(error), error);
    }
  });
  const previewing = h(
    "section",
    { "aria-labelledby": "preview-title" },
    h("h2", { id: "preview-title" }, "Preview"),
    h("label", { for: "variables" }, "Variables (name=value, one a line)", variables),
    h("label", { for: "locale" }, "Locale (empty: the default)", locale),
    preview,
  );
  into.replaceChildren(h("div", { class: "editor" }, form, previewing), versions(api, stored));
  await renderPreview();
}
