/* bgone playground: a hand-written client for the fal-compatible queue API. No build step, no CDN.
   The entry point (native ES modules, loaded by index.html): wires the modules together and starts up. */
import { api } from "./api.js";
import { S } from "./state.js";
import { $, el } from "./util.js";
import { explain, showError, unmarkField } from "./errors.js";
import { initKeyBox } from "./keybox.js";
import { resetForm } from "./form.js";
import { initModeSwitch, onModeChange, setMode } from "./mode.js";
import { initImageInput, inputSwitched } from "./image.js";
import { runRequest, cancelRequest, onSettled } from "./run.js";
import { initViewer } from "./viewer.js";
import { updateSnippet, initSnippets } from "./snippets.js";
import { refreshHistory } from "./history.js";

async function boot() {
  initModeSwitch();
  initImageInput();
  initViewer();
  initSnippets();
  onModeChange((mode) => {
    inputSwitched(mode);
    updateSnippet();
  });
  onSettled(refreshHistory);
  $("cancel").addEventListener("click", cancelRequest);
  $("history-refresh").addEventListener("click", refreshHistory);
  $("reset-settings").addEventListener("click", () => {
    resetForm();
    updateSnippet();
  });

  const form = $("run-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    runRequest();
  });
  // Enter submits from any control of the form (selects and switches too); Ctrl/⌘+Enter from anywhere.
  form.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.isComposing) return;
    const t = e.target;
    if (t.matches("select, input[type=checkbox]")) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("change", (e) => {
    const wrap = e.target.closest(".field[data-field]");
    if (wrap) unmarkField(wrap.dataset.field);
    updateSnippet();
  });

  try {
    const [{ data: limits }, { data: schema }, models] = await Promise.all([
      api("/api/limits", { auth: false }),
      api("/openapi.json", { auth: false }),
      api("/api/models", { auth: false }).catch(() => ({ data: null })), // older servers: no model map shown
    ]);
    S.limits = limits;
    S.schema = schema;
    S.models = models.data;
    setMode("image"); // builds the form (throws if the schema is missing)
    document.body.dataset.ready = "true";
  } catch (err) {
    $("fields").replaceChildren(el("p", { class: "field-error", text: "Could not load the input schema from the server." }));
    showError(explain(err, "loading the playground"));
    return;
  }
  initKeyBox(() => {
    updateSnippet();
    refreshHistory();
  });
  updateSnippet();
  refreshHistory();
  api("/health", { auth: false })
    .then(({ data }) => ($("server-info").textContent = `bgone ${data.version}`))
    .catch(() => {});
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
