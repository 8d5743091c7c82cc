/* The status line (pill, text, progress overlay, Cancel and Run's busy state), the elapsed timer and the
   log list. Shows what it is told; the request logic lives in run.js. */
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
