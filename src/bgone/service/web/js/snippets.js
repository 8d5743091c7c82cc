/* "Request as code": the current request (or the result's input) as a curl command or a Python
   fal_client snippet for the mode's endpoint (image or video), shown and copied to the clipboard.
   Reads the form and the input; sends nothing. */
import { ENDPOINTS } from "./api.js";
import { S } from "./state.js";
import { $, el, toast } from "./util.js";
import { formValues } from "./form.js";
import { MODES } from "./mode.js";

let snippetLang = "curl";
function snippetInput(input) {
  if (input) return { input, pendingFile: null };
  const values = formValues();
  const typed = $("image-url").value.trim();
  const uploaded = S.file && S.uploads.get(S.file);
  const url = uploaded || typed || (S.file ? null : MODES[S.mode].placeholder);
  return { input: { ...values, [S.sourceKey]: url }, pendingFile: url ? null : S.file };
}
function pyValue(v, indent) {
  if (v === true) return "True";
  if (v === false) return "False";
  if (v == null) return "None";
  if (typeof v === "object") return JSON.stringify(v, null, 4).replace(/\n/g, `\n${indent}`).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
  return JSON.stringify(v);
}
function curlSnippet(input, pendingFile, endpoint) {
  const base = location.origin;
  const pending = pendingFile ? { [S.sourceKey]: input[S.sourceKey] ?? `${base}/files/… (upload ${pendingFile.name} first)` } : {};
  const body = JSON.stringify({ ...input, ...pending }, null, 2).replace(/'/g, "'\\''");
  const lines = [`curl -X POST "${base}/${endpoint}"`];
  if (S.limits && S.limits.auth_required) lines.push(`  -H "Authorization: Key $FAL_KEY"`);
  lines.push(`  -H "Content-Type: application/json"`, `  -d '${body}'`);
  return lines.join(" \\\n");
}
function pythonSnippet(input, pendingFile, endpoint) {
  const base = location.origin;
  const output = endpoint === ENDPOINTS.video ? "video" : "image";
  const args = Object.entries(input).map(([k, v]) => {
    const value = pendingFile && k === S.sourceKey && v == null ? `fal_client.upload_file(${JSON.stringify(pendingFile.name)})` : pyValue(v, "        ");
    return `        ${JSON.stringify(k)}: ${value},`;
  });
  const keyNote = S.limits && S.limits.auth_required ? "export FAL_KEY=<your key>" : "export FAL_KEY=anything (this server is open)";
  return [
    "import fal_client",
    "import fal_client.client as c",
    "",
    `# Point fal_client at this bgone server; ${keyNote}`,
    `c.RUN_URL_FORMAT, c.QUEUE_URL_FORMAT = "${base}/", "${base}/queue/"`,
    `c.REST_URL = c.CDN_URL = "${base}"`,
    "",
    "result = fal_client.subscribe(",
    `    "${endpoint}",`,
    "    arguments={",
    ...args,
    "    },",
    "    with_logs=True,",
    "    on_queue_update=print,",
    ")",
    `print(result["${output}"]["url"])`,
  ].join("\n");
}
export function updateSnippet(input) {
  if (!S.order.length) return null;
  const { input: inp, pendingFile } = snippetInput(S.result ? S.result.input : input);
  const endpoint = (S.result && S.result.meta.endpoint) || S.endpoint;
  const texts = { curl: curlSnippet(inp, pendingFile, endpoint), python: pythonSnippet(inp, pendingFile, endpoint) };
  // Long data: URIs are copied whole but shown shortened.
  $("snippet").textContent = texts[snippetLang].replace(/"data:[^"]{80,}"/g, (m) => `${m.slice(0, 60)}…"`);
  return texts;
}
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = el("textarea", { style: "position:fixed;left:-9999px;top:0", "aria-hidden": "true" });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}
export function initSnippets() {
  const tabs = [$("code-tab-curl"), $("code-tab-python")];
  const pick = (lang) => {
    snippetLang = lang;
    for (const t of tabs) {
      const on = t.dataset.lang === lang;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
    }
    updateSnippet();
  };
  for (const t of tabs) {
    t.addEventListener("click", () => pick(t.dataset.lang));
    t.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        const other = tabs.find((x) => x !== t);
        other.focus();
        pick(other.dataset.lang);
      }
    });
  }
  for (const [id, lang, label] of [
    ["copy-curl", "curl", "curl command"],
    ["copy-python", "python", "Python snippet"],
  ]) {
    $(id).addEventListener("click", async () => {
      const texts = updateSnippet();
      pick(lang);
      $("code").open = true;
      const ok = await copyText(texts[lang]);
      toast(ok ? `Copied the ${label} to the clipboard.` : "Could not copy: select the snippet below and copy it.", !ok);
    });
  }
}
