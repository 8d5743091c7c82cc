/* The result on show: input and cut-out images, the mask (the server's or derived from the alpha),
   facts and download links; clearing it also un-marks the history's current item. Zoom, pan, split and
   view mode are viewer.js's; the request is run.js's. */
import { S } from "./state.js";
import { $, el, fmtBytes, fmtSeconds } from "./util.js";
import { setNatural, fitView, setMode, viewMode } from "./viewer.js";
import { deriveMask } from "./png.js";
import { updateSnippet } from "./snippets.js";

let derivedMaskUrl = null; // object URL of a mask made here from the alpha channel

export function setBefore(url) {
  const img = $("before-img");
  if (url) img.src = url;
  else img.removeAttribute("src");
  $("stage").classList.toggle("has-input", !!url);
  $("tab-compare").disabled = !url || !$("stage").classList.contains("has-result");
}

export function showInputOnly(url) {
  // A new input replaces the shown result until the next one arrives.
  clearResult();
  setBefore(url);
  const img = $("before-img");
  if (url) {
    const ready = () => {
      if (!$("stage").classList.contains("has-result")) setNatural(img.naturalWidth, img.naturalHeight);
    };
    if (img.complete && img.naturalWidth) ready();
    else img.addEventListener("load", ready, { once: true });
  }
}

function clearResult() {
  S.result = null;
  $("viewer").dataset.requestId = "";
  const stage = $("stage");
  stage.classList.remove("has-result", "has-mask");
  for (const id of ["result-img", "mask-img"]) $(id).removeAttribute("src");
  if (derivedMaskUrl) URL.revokeObjectURL(derivedMaskUrl);
  derivedMaskUrl = null;
  $("facts").hidden = true;
  for (const id of ["download-image", "download-mask"]) {
    $(id).removeAttribute("href");
    $(id).setAttribute("aria-disabled", "true");
  }
  $("tab-compare").disabled = true;
  $("tab-mask").disabled = true;
  for (const b of document.querySelectorAll("#history button[aria-current]")) b.removeAttribute("aria-current");
}

function extOf(file, fallback) {
  const name = (file && file.file_name) || "";
  const m = /\.([a-z0-9]+)$/i.exec(name);
  if (m) return m[1];
  const ct = (file && file.content_type) || "";
  return ct.split("/")[1] || fallback;
}

export function showResult(output, input, meta = {}) {
  clearResult();
  S.result = { output, input, meta };
  $("viewer").dataset.requestId = meta.requestId || "";
  const image = output.image || {};
  const stage = $("stage");
  const resultImg = $("result-img");
  resultImg.src = image.url;
  stage.classList.add("has-result");
  const before = meta.beforeUrl || (input && input[S.imageKey]);
  setBefore(before || null);
  $("before-img").onerror = () => ($("tab-compare").disabled = true);

  const dl = $("download-image");
  dl.href = image.url;
  dl.download = image.file_name || `result.${extOf(image, "png")}`;
  dl.removeAttribute("aria-disabled");

  // The mask: the server's file if asked for, the image itself for mask_only, else the cut-out's alpha.
  const maskOnly = input && input.mask_only;
  const serverMask = maskOnly ? image : output.mask_image;
  if (serverMask && serverMask.url) setMask(serverMask.url, serverMask.file_name || `mask.${extOf(serverMask, "png")}`, false);
  else {
    $("download-mask").title = "Derived from the cut-out's alpha channel (turn on “Output Mask” for the server's file)";
    const wanted = image.url;
    whenLoaded(resultImg)
      .then(() => deriveMask(resultImg))
      .then((url) => {
        if (!S.result || S.result.output.image.url !== wanted) return URL.revokeObjectURL(url);
        derivedMaskUrl = url;
        const stem = (image.file_name || "result").replace(/\.[^.]+$/, "");
        setMask(url, `${stem}-mask.png`, true);
      })
      .catch(() => {});
  }

  const w = image.width;
  const h = image.height;
  if (w && h) setNatural(w, h);
  whenLoaded(resultImg).then(() => setNatural(resultImg.naturalWidth, resultImg.naturalHeight), () => {});

  const facts = [
    ["Size", w && h ? `${w} × ${h}` : null],
    ["Format", image.content_type],
    ["File", image.file_size != null ? fmtBytes(image.file_size) : null],
    ["Inference", meta.inference != null ? fmtSeconds(meta.inference) : null],
    ["Total", meta.total != null ? fmtSeconds(meta.total) : null],
    ["Model", input && input.model],
    ["Request", meta.requestId],
  ].filter(([, v]) => v);
  $("facts").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v }))));
  $("facts").hidden = false;
  $("tab-mask").disabled = false;
  $("tab-compare").disabled = !before;
  if (viewMode() === "compare" && !before) setMode("result");
  else setMode(viewMode());
  fitView();
  updateSnippet(input);
}

function setMask(url, name, derived) {
  $("mask-img").src = url;
  $("stage").classList.add("has-mask");
  const a = $("download-mask");
  a.href = url;
  a.download = name;
  a.dataset.derived = String(derived);
  a.removeAttribute("aria-disabled");
  if (!derived) a.title = "The mask the server returned";
}

function whenLoaded(img) {
  return new Promise((resolve, reject) => {
    if (img.complete && img.naturalWidth) return resolve();
    img.addEventListener("load", () => resolve(), { once: true });
    img.addEventListener("error", () => reject(new Error("image failed to load")), { once: true });
  });
}
