/* Error explanations: any failure (ApiError or not) into a title and lines, shown in the alert box;
   validation messages marked on their fields and on the image / video input; a 401/403 also shows the key box.
   Does not retry or run anything. */
import { ApiError, apiKey } from "./api.js";
import { S } from "./state.js";
import { $, el, humanize } from "./util.js";
import { showKeyBox } from "./keybox.js";

function fieldLabel(name) {
  const prop = S.props[name];
  if (name === S.sourceKey) return humanize(S.sourceKind);
  return (prop && prop.title) || humanize(String(name));
}

/** Which fields a validation message names, when its loc is only ["body"]. */
function fieldsNamedIn(msg) {
  const text = msg.toLowerCase();
  return S.order.filter((k) => text.includes(k.replace(/_/g, " ")) || text.includes(k));
}

function cleanMsg(msg) {
  return String(msg ?? "").replace(/^Value error,\s*/i, "");
}

/** Turn any failure into {title, lines[], fields[{name,msg}], neutral}. */
export function explain(err, context = "") {
  if (!(err instanceof ApiError)) {
    return { title: "Something went wrong", lines: [String(err && err.message ? err.message : err)] };
  }
  const body = err.body;
  const detail = body && typeof body === "object" ? body.detail : body;
  const where = context ? ` (${context})` : "";
  switch (err.status) {
    case 0:
      return {
        title: "Network error",
        lines: [`Could not reach the server at ${location.origin}${where}. Check that bgone is running and try again.`],
      };
    case 401:
    case 403:
      showKeyBox(true);
      return {
        title: "Unauthorized",
        lines: [
          typeof detail === "string" ? detail : "This server requires an API key.",
          apiKey() ? "The saved API key was rejected: check it in the field at the top." : "Enter your API key in the field at the top.",
        ],
        unauthorized: true,
      };
    case 413:
      return { title: `${humanize(S.sourceKind)} too large`, lines: [typeof detail === "string" ? detail : "The server refused the upload."] };
    case 422: {
      const items = Array.isArray(detail) ? detail : [{ loc: ["body"], msg: typeof detail === "string" ? detail : JSON.stringify(detail) }];
      const fields = [];
      const lines = items.map((item) => {
        const loc = (item.loc || []).filter((p) => p !== "body");
        const msg = cleanMsg(item.msg);
        let names = loc.length ? [String(loc[0])] : fieldsNamedIn(msg);
        names = names.filter((n) => n in S.props || n === S.sourceKey);
        for (const n of names) fields.push({ name: n, msg });
        const label = loc.length ? loc.map((p) => (typeof p === "number" ? `[${p}]` : fieldLabel(p))).join(" › ") : names.map(fieldLabel).join(", ") || "Input";
        return { label, msg };
      });
      return { title: "Invalid input", lines, fields };
    }
    case 499:
      return { title: "Cancelled", lines: ["The request was cancelled before it finished."], neutral: true };
    case 429:
    case 502:
    case 503:
      return {
        title: "Server busy",
        lines: [`The server is busy right now (HTTP ${err.status}). Try again in a moment.`, typeof detail === "string" ? detail : null].filter(Boolean),
      };
    case 504:
      return { title: "Timed out", lines: [typeof detail === "string" ? detail : "The request timed out."] };
    case 404:
      return { title: "Not found", lines: [typeof detail === "string" ? detail : `Nothing at ${err.url}.`] };
    default: {
      const type = body && body.error_type ? body.error_type : null;
      return {
        title: err.status >= 500 ? "Request failed" : `Request refused (HTTP ${err.status})`,
        lines: [typeof detail === "string" ? detail : JSON.stringify(detail)],
        type,
      };
    }
  }
}

export function showError(info) {
  const box = $("error");
  box.classList.toggle("neutral", !!info.neutral);
  $("error-title").textContent = info.title;
  const body = $("error-body");
  body.replaceChildren();
  const lines = info.lines || [];
  if (lines.length === 1 && typeof lines[0] === "string") body.append(lines[0]);
  else {
    const ul = el("ul");
    for (const line of lines) {
      if (typeof line === "string") ul.append(el("li", { text: line }));
      else ul.append(el("li", {}, el("strong", { text: `${line.label}: ` }), line.msg));
    }
    body.append(ul);
  }
  if (info.type) body.append(" ", el("code", { "data-testid": "error-type", text: info.type }));
  box.hidden = false;
  for (const f of info.fields || []) markField(f.name, f.msg);
}
export function clearError() {
  $("error").hidden = true;
  for (const node of document.querySelectorAll(".field.invalid")) unmarkField(node.dataset.field);
}
function markField(name, msg) {
  if (name === S.sourceKey) return imageError(msg);
  const wrap = document.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
  if (!wrap) return;
  wrap.classList.add("invalid");
  const input = wrap.querySelector("input, select");
  if (input) input.setAttribute("aria-invalid", "true");
  const errNode = wrap.querySelector(".field-error");
  if (errNode) {
    errNode.textContent = msg;
    errNode.hidden = false;
  }
}
export function unmarkField(name) {
  const wrap = document.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
  if (!wrap) return;
  wrap.classList.remove("invalid");
  const input = wrap.querySelector("input, select");
  if (input) input.removeAttribute("aria-invalid");
  const errNode = wrap.querySelector(".field-error");
  if (errNode) errNode.hidden = true;
}
export function imageError(msg) {
  const node = $("image-error");
  node.textContent = msg;
  node.hidden = !msg;
  $("image-url").toggleAttribute("aria-invalid", !!msg);
  $("dropzone").toggleAttribute("aria-invalid", !!msg);
}
