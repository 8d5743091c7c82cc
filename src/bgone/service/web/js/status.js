/* The status line (pill, text, progress overlay, Cancel and Run's busy state), the elapsed timer, the log
   list and the progress in frames a video's logs carry ("Processed 40/120 frames (8.1 fps, about 10 s
   left)"). Shows what it is told; the request logic lives in run.js. */
import { $, el, fmtSeconds } from "./util.js";

export function setStatus(state, label, text = "") {
  const pill = $("status-pill");
  pill.dataset.state = state;
  pill.textContent = label;
  $("status-text").textContent = text;
  $("status-text").title = text;
  const busy = state === "uploading" || state === "queued" || state === "running";
  $("stage-progress").hidden = !busy;
  $("stage-progress-text").textContent = text ? `${label} · ${text}` : `${label}…`;
  $("cancel").hidden = !busy;
  $("run").setAttribute("aria-busy", String(busy));
}
let timer = null;
export function startTimer(from) {
  stopTimer();
  const t0 = from || performance.now();
  const tick = () => ($("elapsed").textContent = fmtSeconds((performance.now() - t0) / 1000));
  tick();
  timer = setInterval(tick, 100);
  return t0;
}
export function stopTimer() {
  if (timer) clearInterval(timer);
  timer = null;
}

// -- logs
const logLines = [];
function renderLogs(lines) {
  const list = $("logs");
  list.replaceChildren(
    ...lines.map((l) => {
      const t = l.timestamp ? new Date(l.timestamp) : null;
      const stamp = t && !Number.isNaN(t.getTime()) ? t.toLocaleTimeString([], { hour12: false }) : "";
      return el("li", { class: `lv-${l.level || "INFO"}` }, el("span", { class: "t", text: stamp }), el("span", { text: l.message }));
    }),
  );
  $("log-count").textContent = lines.length ? `(${lines.length})` : "";
  list.scrollTop = list.scrollHeight;
}
export function clearLogs() {
  logLines.length = 0;
  renderLogs(logLines);
  setFrames(null);
}
export function addLocalLog(message, level = "INFO") {
  logLines.push({ message, level, timestamp: new Date().toISOString(), local: true });
  renderLogs(logLines);
}
export function setServerLogs(lines) {
  const local = logLines.filter((l) => l.local);
  logLines.length = 0;
  logLines.push(...local, ...(lines || []));
  renderLogs(logLines);
}

// -- progress in frames (videos), from the worker's log lines
const FRAMES = /Processed (\d+)\/(\d+) frames(?: \(([\d.]+) fps(?:, about (\d+) s left)?\))?/;
/** The latest "Processed N/M frames" of log lines: {done, total, fps, eta} (fps and eta may be null), or null. */
export function framesFrom(lines) {
  for (let i = (lines || []).length - 1; i >= 0; i--) {
    const m = FRAMES.exec((lines[i] && lines[i].message) || "");
    if (m) return { done: Number(m[1]), total: Number(m[2]), fps: m[3] || null, eta: m[4] == null ? null : Number(m[4]) };
  }
  return null;
}
/** "40/120 frames · 8.1 fps · about 10 s left" */
export function describeFrames(p) {
  const eta = p.eta != null && p.done < p.total ? `about ${p.eta} s left` : null;
  return [`${p.done}/${p.total} frames`, p.fps != null ? `${p.fps} fps` : null, eta].filter(Boolean).join(" · ");
}
/** The progress bar under the overlay's text; null hides it. */
export function setFrames(p) {
  const bar = $("frame-progress");
  bar.hidden = !p;
  if (!p) {
    bar.removeAttribute("value");
    bar.removeAttribute("aria-valuetext");
    return;
  }
  bar.max = Math.max(p.total, 1);
  bar.value = Math.min(p.done, bar.max);
  bar.setAttribute("aria-valuetext", `${p.done} of ${p.total} frames`);
}
