/* Recent requests, images and videos: the list from /api/history, and reopening one in its mode (its
   input, result or error; a request still running is followed live through run.js). */
import { ApiError, ENDPOINTS, api, apiKey } from "./api.js";
import { S } from "./state.js";
import { $, el, toast, fmtSeconds, toEpoch, ago } from "./util.js";
import { explain, showError, clearError, imageError } from "./errors.js";
import { setFormValues } from "./form.js";
import { setMode } from "./mode.js";
import { setPreview, forgetFile, nameFromUrl } from "./image.js";
import { setStatus, startTimer, clearLogs } from "./status.js";
import { detachJob, onStatus, watch } from "./run.js";
import { showInputOnly, showResult } from "./result.js";

const modeOf = (item) => (item.endpoint === ENDPOINTS.video ? "video" : "image");

function historyState(item) {
  if (item.status === "IN_QUEUE") return ["queued", "Queued"];
  if (item.status === "IN_PROGRESS") return ["running", "Running"];
  if (item.error_type === "client_cancelled") return ["cancelled", "Cancelled"];
  if (item.error || item.error_type || !item.result) return ["failed", "Failed"];
  return ["done", "Done"];
}
export async function refreshHistory() {
  const note = $("history-note");
  if (S.limits && S.limits.auth_required && !apiKey()) {
    note.textContent = "Enter the API key to see recent requests.";
    $("history").replaceChildren();
    return;
  }
  try {
    const { data } = await api("/api/history?limit=20");
    renderHistory(data);
    note.textContent = data.length ? "" : "No requests yet. Finished runs appear here.";
  } catch (err) {
    const info = explain(err, "loading the history");
    note.textContent = `${info.title}: ${info.lines.map((l) => (typeof l === "string" ? l : `${l.label}: ${l.msg}`)).join(" ")}`;
  }
}
/** A result's picture: the image, or the video's first frame (a GIF as an image; a MOV as its name). */
function thumbnail(file, video) {
  const type = String(file.content_type || "");
  const expired = (node) => () => node.replaceWith(el("span", { text: "expired" }));
  if (!video || type.startsWith("image/")) {
    const img = el("img", { src: file.url, alt: "", loading: "lazy", decoding: "async" });
    img.addEventListener("error", expired(img));
    return img;
  }
  const vid = el("video", { muted: true, playsinline: true, preload: "metadata", "aria-hidden": "true", tabindex: "-1" });
  if (type && vid.canPlayType(type) === "") return el("span", { text: (type.split("/")[1] || "video").replace("quicktime", "MOV") });
  vid.muted = true;
  vid.addEventListener("error", expired(vid));
  vid.src = file.url;
  return vid;
}

function renderHistory(items) {
  const current = S.result && S.result.meta.requestId;
  $("history").replaceChildren(
    ...items.map((item) => {
      const [state, label] = historyState(item);
      const video = modeOf(item) === "video";
      const file = item.result && item.result[video ? "video" : "image"];
      const thumb = el("div", { class: "thumb" });
      if (file && file.url) thumb.append(thumbnail(file, video));
      else thumb.append(el("span", { text: label }));
      const created = toEpoch(item.created_at);
      const modelName = item.input && item.input.model ? String(item.input.model).replace("General Use ", "") : item.endpoint;
      const model = video ? `Video · ${modelName}` : modelName;
      const btn = el(
        "button",
        {
          type: "button",
          "data-testid": "history-item",
          "data-request-id": item.request_id,
          "aria-current": current === item.request_id ? "true" : null,
          "aria-label": `${label} request from ${created ? ago(created) : "earlier"}, ${model}. Open it.`,
          title: `${item.request_id}\n${created ? new Date(created * 1000).toLocaleString() : ""}`,
          onclick: () => openHistory(item),
        },
        thumb,
        el("div", { class: "hist-meta" }, el("span", { class: "when", text: created ? ago(created) : "" }), el("span", { class: "pill", "data-state": state, text: label })),
        el("div", { class: "hist-meta" }, el("span", { class: "when", text: model })),
      );
      return el("li", {}, btn);
    }),
  );
}
async function openHistory(item) {
  if (S.run) return toast("Wait for the current upload to finish.", true);
  detachJob();
  clearError();
  clearLogs();
  forgetFile();
  $("image-url").value = "";
  if (!setMode(modeOf(item))) return;
  const input = item.input || {};
  setFormValues(input);
  const url = input[S.sourceKey] || "";
  $("image-url").value = url;
  imageError("");
  if (url) setPreview(url, nameFromUrl(url), `from request ${item.request_id.slice(0, 8)}…`);
  const created = toEpoch(item.created_at);
  const completed = toEpoch(item.completed_at);
  const total = created && completed ? completed - created : null;
  $("elapsed").textContent = total != null ? fmtSeconds(total) : "";
  const [state, label] = historyState(item);
  if (item.status !== "COMPLETED") {
    // Still running: follow it live.
    const job = { ...item, input, t0: performance.now() - (created ? Date.now() - created * 1000 : 0), beforeUrl: url, done: false };
    S.job = job;
    showInputOnly(url);
    startTimer(job.t0);
    onStatus(job, item);
    watch(job).catch((err) => {
      setStatus("failed", "Failed");
      showError(explain(err));
    });
    return;
  }
  if (state === "done") {
    setStatus("done", "Completed", `from history · ${created ? ago(created) : ""}`);
    const inference = item.metrics && item.metrics.inference_time;
    showResult(item.result, input, { beforeUrl: url, requestId: item.request_id, total, inference, endpoint: item.endpoint });
    for (const b of document.querySelectorAll("#history button")) {
      if (b.dataset.requestId === item.request_id) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
    return;
  }
  showInputOnly(url);
  setStatus(state, label, item.request_id);
  if (state === "cancelled") return showError(explain(new ApiError(499, null, item.response_url)));
  try {
    await api(item.response_url);
  } catch (err) {
    const info = explain(err);
    if (item.error && info.title !== "Invalid input" && !info.neutral) {
      info.lines = [item.error];
      info.type = item.error_type;
    }
    showError(info);
  }
}
