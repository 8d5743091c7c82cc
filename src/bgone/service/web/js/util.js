/* Small shared helpers: DOM ($ by id, el to build an element, the toast line) and formatting for people
   (byte sizes, durations, field names, timestamps, "… ago"). No state, nothing about requests or the form. */

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
}

let toastTimer = null;
export function toast(text, bad = false) {
  const t = $("toast");
  t.textContent = text;
  t.style.color = bad ? "var(--err)" : "";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.textContent = ""), 3500);
}

// -- formatting
export function fmtBytes(n) {
  if (n == null || Number.isNaN(n)) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
export const fmtSeconds = (s) => (s < 10 ? `${s.toFixed(2)} s` : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
export const humanize = (key) => key.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
export const toEpoch = (t) => (t == null ? null : typeof t === "number" ? t : Date.parse(t) / 1000);
export function ago(epoch) {
  const s = Math.max(0, Date.now() / 1000 - epoch);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(epoch * 1000).toLocaleDateString();
}
