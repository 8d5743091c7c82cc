/* Running a request on the queue of the current mode's endpoint (image or video): submit, follow its
   status (event stream, else polling; a video's progress in frames from its logs), fetch the result or
   explain the failure, cancel. Does not draw the result (result.js) or the history (history.js):
   onSettled (main.js) says what to do when a request has settled. */
import { ApiError, api, authHeaders } from "./api.js";
import { S } from "./state.js";
import { $, toast, fmtSeconds } from "./util.js";
import { explain, showError, clearError, imageError } from "./errors.js";
import { formValues } from "./form.js";
import { MODES } from "./mode.js";
import { resolveSourceUrl } from "./image.js";
import { setStatus, startTimer, stopTimer, clearLogs, addLocalLog, setServerLogs, framesFrom, describeFrames, setFrames } from "./status.js";
import { showInputOnly, showResult } from "./result.js";
import { updateSnippet } from "./snippets.js";

let settled = () => {};
/** fn() runs whenever a watched request has settled: completed, failed or cancelled. */
export function onSettled(fn) {
  settled = fn;
}

export async function runRequest() {
  if (S.run || (S.job && !S.job.done)) return; // one at a time
  clearError();
  imageError("");
  const typed = $("image-url").value.trim();
  if (!S.file && !typed) {
    imageError(MODES[S.mode].missing);
    $("dropzone").focus();
    return;
  }
  if (!$("image-error").hidden) return;
  detachJob();
  clearLogs();
  const run = new AbortController();
  S.run = run;
  const t0 = startTimer();
  setStatus("uploading", "Preparing");
  showInputOnly(S.fileUrl || typed);
  try {
    const sourceUrl = await resolveSourceUrl(run);
    const input = { ...formValues(), [S.sourceKey]: sourceUrl };
    const endpoint = S.endpoint;
    updateSnippet(input);
    setStatus("queued", "Submitting");
    const { data } = await api(`/queue/${endpoint}`, {
      method: "POST",
      body: JSON.stringify(input),
      headers: { "Content-Type": "application/json" },
      signal: run.signal,
    });
    const job = { ...data, input, endpoint, t0, beforeUrl: S.fileUrl || sourceUrl, done: false };
    S.run = null;
    S.job = job;
    addLocalLog(`Submitted request ${data.request_id}`);
    onStatus(job, data);
    await watch(job);
  } catch (err) {
    S.run = null;
    stopTimer();
    if (err.name === "AbortError") {
      setStatus("cancelled", "Cancelled", "before it was submitted");
      showError({ title: "Cancelled", lines: ["The request was cancelled before it was submitted."], neutral: true });
      return;
    }
    const info = explain(err, "submitting");
    setStatus("failed", info.title === "Invalid input" ? "Invalid input" : "Failed", "");
    showError(info);
  }
}

export function detachJob() {
  if (S.job && S.job.ctrl) S.job.ctrl.abort();
  if (S.job) S.job.detached = true;
  S.job = null;
  stopTimer();
}

export function onStatus(job, st) {
  if (job !== S.job) return;
  if (Array.isArray(st.logs)) setServerLogs(st.logs);
  if (st.status === "IN_QUEUE") {
    const pos = st.queue_position;
    setStatus("queued", "In queue", pos == null ? "" : pos === 0 ? "next in line" : `${pos} ahead in the queue`);
  } else if (st.status === "IN_PROGRESS") {
    // A video's "Processed 40/120 frames (…)" lines drive the progress bar; other lines show as they are.
    const last = (st.logs || []).filter((l) => l.message).pop();
    const frames = last && framesFrom([last]);
    setStatus("running", "Running", frames ? describeFrames(frames) : last ? last.message : "removing the background");
    setFrames(framesFrom(st.logs));
  } else if (st.status === "COMPLETED") {
    setStatus("running", "Finishing", "fetching the result");
  }
}

export async function watch(job) {
  job.ctrl = new AbortController();
  let final = null;
  try {
    final = await streamStatus(job);
  } catch (err) {
    if (job.detached) return;
    if (err instanceof ApiError && err.status !== 0 && err.status < 500) throw err;
    addLocalLog("Live status stream unavailable; polling instead", "WARNING");
  }
  if (job.detached) return;
  if (!final) final = await pollStatus(job);
  if (job.detached || !final) return;
  await finish(job, final);
}

async function streamStatus(job) {
  let res;
  try {
    res = await fetch(`${job.status_url}/stream?logs=1`, { headers: authHeaders(), signal: job.ctrl.signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, null, job.status_url);
  }
  if (!res.ok || !res.body) {
    let body = null;
    try {
      body = await res.json();
    } catch {
      /* ignore */
    }
    throw new ApiError(res.status, body, job.status_url);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      buf += value;
      let m;
      while ((m = /\r?\n\r?\n/.exec(buf))) {
        const block = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        const data = block
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        let st;
        try {
          st = JSON.parse(data);
        } catch {
          continue;
        }
        onStatus(job, st);
        if (st.status === "COMPLETED") return st;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

async function pollStatus(job) {
  let failures = 0;
  for (;;) {
    if (job.detached) return null;
    try {
      const { data } = await api(`${job.status_url}?logs=1`, { signal: job.ctrl.signal });
      failures = 0;
      onStatus(job, data);
      if (data.status === "COMPLETED") return data;
    } catch (err) {
      if (err.name === "AbortError" || job.detached) return null;
      if (err instanceof ApiError && err.status !== 0 && err.status < 500) throw err;
      if (++failures >= 10) throw err;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function finish(job, st) {
  try {
    // A cancelled request needs no second look (its result is a 499).
    if (st.error_type === "client_cancelled") throw new ApiError(499, { detail: st.error, error_type: st.error_type }, job.response_url);
    const { data } = await api(job.response_url);
    if (job.detached) return;
    job.done = true;
    stopTimer();
    const total = (performance.now() - job.t0) / 1000;
    $("elapsed").textContent = fmtSeconds(total);
    const inf = st.metrics && st.metrics.inference_time;
    const frames = st.metrics && st.metrics.frames;
    const took = inf == null ? "" : frames != null ? `${frames} frames in ${fmtSeconds(inf)}` : `inference ${fmtSeconds(inf)}`;
    setStatus("done", "Completed", took);
    showResult(data, job.input, { beforeUrl: job.beforeUrl, inference: inf, total, requestId: job.request_id, endpoint: job.endpoint });
  } catch (err) {
    if (job.detached) return;
    job.done = true;
    stopTimer();
    const info = explain(err);
    if (err instanceof ApiError && err.status === 499) {
      setStatus("cancelled", "Cancelled", job.request_id);
    } else {
      if (st.error && info.title !== "Invalid input") {
        info.lines = [st.error];
        info.type = st.error_type || info.type;
      } else if (st.error_type && !info.type) info.type = st.error_type;
      setStatus("failed", "Failed", st.error_type || "");
    }
    showError(info);
  } finally {
    settled();
  }
}

export async function cancelRequest() {
  const btn = $("cancel");
  if (S.run) {
    S.run.abort();
    return;
  }
  const job = S.job;
  if (!job || job.done) return;
  btn.disabled = true;
  try {
    await api(job.cancel_url, { method: "PUT" });
    addLocalLog("Cancellation requested", "WARNING");
    if (S.job === job && !job.done) $("status-text").textContent = "cancelling…";
  } catch (err) {
    if (err instanceof ApiError && err.status === 400) toast("The request had already finished.");
    else showError(explain(err, "cancelling"));
  } finally {
    btn.disabled = false;
  }
}
