/* The viewer's stage: view mode tabs (result / before-after / mask), background swatches, zoom, pan, the
   before/after split, and their keyboard and pointer handling; the stage's videos (input, result, mask)
   kept in step. Knows image and video sizes, not requests. */
import { $ } from "./util.js";

// The view: mode, zoom (1 = fit) and pan, the split (%), the image's natural size and its fitted size.
const V = { mode: "result", z: 1, tx: 0, ty: 0, split: 50, natW: 0, natH: 0, fit: 1, fw: 0, fh: 0 };

export function setNatural(w, h) {
  if (!w || !h) return;
  if (w === V.natW && h === V.natH) return;
  V.natW = w;
  V.natH = h;
  fitView();
}
function stageSize() {
  const r = $("stage").getBoundingClientRect();
  return { sw: r.width, sh: r.height, left: r.left, top: r.top };
}
export function fitView() {
  const { sw, sh } = stageSize();
  if (!V.natW || !sw) return;
  const pad = 16;
  V.fit = Math.min((sw - pad) / V.natW, (sh - pad) / V.natH);
  V.fw = V.natW * V.fit;
  V.fh = V.natH * V.fit;
  const zoom = $("zoom");
  zoom.min = String(Math.min(1, Math.round((1 / V.fit) * 100) / 100));
  V.z = 1;
  V.tx = (sw - V.fw) / 2;
  V.ty = (sh - V.fh) / 2;
  applyView();
}
function clampPan() {
  const { sw, sh } = stageSize();
  const W = V.fw * V.z;
  const H = V.fh * V.z;
  V.tx = W <= sw ? (sw - W) / 2 : Math.min(0, Math.max(sw - W, V.tx));
  V.ty = H <= sh ? (sh - H) / 2 : Math.min(0, Math.max(sh - H, V.ty));
}
function zoomTo(z, px, py) {
  const { sw, sh } = stageSize();
  const zoom = $("zoom");
  z = Math.max(Number(zoom.min), Math.min(Number(zoom.max), z));
  if (px == null) {
    px = sw / 2;
    py = sh / 2;
  }
  V.tx = px - (px - V.tx) * (z / V.z);
  V.ty = py - (py - V.ty) * (z / V.z);
  V.z = z;
  applyView();
}
function applyView() {
  clampPan();
  const stage = $("stage");
  for (const xf of stage.querySelectorAll(".xf")) {
    xf.style.width = `${V.fw}px`;
    xf.style.height = `${V.fh}px`;
    xf.style.transform = `translate(${V.tx}px, ${V.ty}px) scale(${V.z})`;
  }
  stage.style.setProperty("--cell", `${16 / V.z}px`);
  const scale = V.z * V.fit;
  stage.classList.toggle("pixelated", scale >= 3);
  const { sw, sh } = stageSize();
  stage.classList.toggle("zoomed", V.fw * V.z > sw + 1 || V.fh * V.z > sh + 1);
  const zoom = $("zoom");
  zoom.value = String(V.z);
  const label = V.z === 1 ? "Fit" : `${Math.round(scale * 100)}%`;
  $("zoom-out").textContent = label;
  zoom.setAttribute("aria-valuetext", V.z === 1 ? `fit (${Math.round(scale * 100)}%)` : label);
}
function setSplit(pct) {
  V.split = Math.max(0, Math.min(100, pct));
  $("stage").style.setProperty("--split", `${V.split}%`);
  const d = $("divider");
  d.setAttribute("aria-valuenow", String(Math.round(V.split)));
  d.setAttribute("aria-valuetext", `${Math.round(V.split)}% before`);
}
export const viewMode = () => V.mode;
export function setMode(mode) {
  V.mode = mode;
  const stage = $("stage");
  stage.dataset.mode = mode;
  $("viewer").dataset.mode = mode;
  for (const tab of document.querySelectorAll('.viewer-bar [role="tab"]')) {
    const on = tab.dataset.mode === mode;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
  }
}

export function initViewer() {
  const stage = $("stage");
  const tabs = [...document.querySelectorAll('.viewer-bar [role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => setMode(tab.dataset.mode));
    tab.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
      const enabled = tabs.filter((t) => !t.disabled);
      const i = enabled.indexOf(tab);
      const next = enabled[(i + (e.key === "ArrowRight" ? 1 : enabled.length - 1)) % enabled.length];
      next.focus();
      setMode(next.dataset.mode);
    });
  }
  $("tab-compare").disabled = true;
  $("tab-mask").disabled = true;

  // Background swatches.
  const radios = [...document.querySelectorAll(".swatch[role=radio]")];
  const setBg = (bg) => {
    stage.dataset.bg = bg;
    for (const r of radios) {
      const on = r.dataset.bg === bg;
      r.setAttribute("aria-checked", String(on));
      r.tabIndex = on ? 0 : -1;
    }
    document.querySelector(".sw-color").classList.toggle("on", bg === "color");
  };
  for (const r of radios) {
    r.addEventListener("click", () => setBg(r.dataset.bg));
    r.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
      const i = radios.indexOf(r);
      const next = radios[(i + (e.key === "ArrowRight" ? 1 : radios.length - 1)) % radios.length];
      next.focus();
      setBg(next.dataset.bg);
    });
  }
  $("bg-color").addEventListener("input", (e) => {
    stage.style.setProperty("--custom-bg", e.target.value);
    setBg("color");
  });
  setBg("checker");

  $("zoom").addEventListener("input", (e) => zoomTo(Number(e.target.value)));
  $("zoom-fit").addEventListener("click", () => fitView());
  $("zoom-1to1").addEventListener("click", () => zoomTo(1 / V.fit));
  window.addEventListener("resize", () => fitView());

  // Pan with the pointer (or move the split in compare mode); Ctrl/⌘ + wheel or pinch zooms.
  let drag = null;
  stage.addEventListener("pointerdown", (e) => {
    if (!stage.classList.contains("has-result") && !stage.classList.contains("has-input")) return;
    if (e.button !== 0) return;
    const onDivider = e.target.closest("#divider");
    const zoomed = stage.classList.contains("zoomed");
    const kind = V.mode === "compare" && (onDivider || !zoomed) && stage.classList.contains("has-result") ? "split" : zoomed ? "pan" : null;
    if (!kind) return;
    drag = { kind, x: e.clientX, y: e.clientY, tx: V.tx, ty: V.ty };
    stage.setPointerCapture(e.pointerId);
    if (kind === "pan") stage.classList.add("panning");
    if (kind === "split") {
      const { sw, left } = stageSize();
      setSplit(((e.clientX - left) / sw) * 100);
      $("divider").focus({ preventScroll: true });
    }
    e.preventDefault();
  });
  stage.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (drag.kind === "pan") {
      V.tx = drag.tx + (e.clientX - drag.x);
      V.ty = drag.ty + (e.clientY - drag.y);
      applyView();
    } else {
      const { sw, left } = stageSize();
      setSplit(((e.clientX - left) / sw) * 100);
    }
  });
  const end = () => {
    drag = null;
    stage.classList.remove("panning");
  };
  stage.addEventListener("pointerup", end);
  stage.addEventListener("pointercancel", end);
  stage.addEventListener(
    "wheel",
    (e) => {
      if (!(e.ctrlKey || e.metaKey) || !V.natW) return;
      e.preventDefault();
      const { left, top } = stageSize();
      zoomTo(V.z * Math.exp(-e.deltaY * 0.002), e.clientX - left, e.clientY - top);
    },
    { passive: false },
  );
  stage.addEventListener("dblclick", (e) => {
    if (!V.natW || e.target.closest("video[controls]")) return; // the video's own controls
    const { left, top } = stageSize();
    if (V.z === 1) zoomTo(Math.max(2, 1 / V.fit), e.clientX - left, e.clientY - top);
    else fitView();
  });
  stage.addEventListener("keydown", (e) => {
    if (e.target !== stage || !V.natW) return;
    const step = e.shiftKey ? 120 : 40;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (moves[e.key]) {
      V.tx += moves[e.key][0];
      V.ty += moves[e.key][1];
      applyView();
    } else if (e.key === "+" || e.key === "=") zoomTo(V.z * 1.25);
    else if (e.key === "-") zoomTo(V.z / 1.25);
    else if (e.key === "0") fitView();
    else if (e.key === "1") zoomTo(1 / V.fit);
    else return;
    e.preventDefault();
  });
  const divider = $("divider");
  divider.addEventListener("keydown", (e) => {
    const step = e.shiftKey ? 10 : 2;
    const keys = { ArrowLeft: -step, ArrowDown: -step, ArrowRight: step, ArrowUp: step, PageDown: -10, PageUp: 10 };
    if (e.key in keys) setSplit(V.split + keys[e.key]);
    else if (e.key === "Home") setSplit(0);
    else if (e.key === "End") setSplit(100);
    else return;
    e.preventDefault();
    e.stopPropagation();
  });
  setSplit(50);
  initVideoSync();
}

// The stage's videos play in step: the one on show leads (the mask in the mask view, else the result, whose
// controls the user has), the others follow its play / pause, time and speed.
function initVideoSync() {
  const videos = ["result-video", "mask-video", "before-video"].map($);
  const follow = (e) => {
    const lead = e.target;
    if (lead !== $(V.mode === "mask" ? "mask-video" : "result-video")) return;
    for (const v of videos) {
      if (v === lead || !v.getAttribute("src") || v.readyState === 0) continue;
      if (Math.abs(v.currentTime - lead.currentTime) > 0.2) v.currentTime = lead.currentTime;
      if (v.playbackRate !== lead.playbackRate) v.playbackRate = lead.playbackRate;
      if (lead.paused && !v.paused) v.pause();
      else if (!lead.paused && v.paused) v.play().catch(() => {});
    }
  };
  for (const v of videos) for (const type of ["play", "pause", "seeked", "timeupdate", "ratechange"]) v.addEventListener(type, follow);
}
