/* The result on show: the input and the cut-out (images, or videos over the same backdrops; a GIF video
   shows as an image), the mask (the server's, or an image's derived from its alpha), facts and download
   links; clearing it also un-marks the history's current item. Zoom, pan, split, view mode and keeping the
   stage's videos in step are viewer.js's; the request is run.js's. */
import { S } from "./state.js";
import { $, el, fmtBytes, fmtSeconds, humanize } from "./util.js";
import { setNatural, fitView, setMode, viewMode } from "./viewer.js";
import { deriveMask } from "./png.js";
import { updateSnippet } from "./snippets.js";

let derivedMaskUrl = null; // object URL of a mask made here from the alpha channel

/** Show `url` in a slot's <img> or its <video> (by `kind`), the other emptied and hidden; null empties both. */
export function setMedia(img, video, url, kind) {
  const asVideo = kind === "video";
  img.hidden = asVideo;
  video.hidden = !asVideo;
  if (url && !asVideo) img.src = url;
  else img.removeAttribute("src");
  if (url && asVideo) {
    if (video.getAttribute("src") !== url) video.src = url;
  } else if (video.hasAttribute("src")) {
    video.removeAttribute("src");
    video.load(); // let go of the old file
  }
}

export function setBefore(url, kind = S.sourceKind) {
  const video = $("before-video");
  setMedia($("before-img"), video, url, kind);
  // An input video this browser cannot play (a ProRes MOV): no preview on the stage, no before / after.
  video.onerror = () => {
    if (video.getAttribute("src") !== url) return;
    $("stage").classList.remove("has-input");
    $("tab-compare").disabled = true;
  };
  const failed = kind === "video" && video.error; // the same unplayable file again
  $("stage").classList.toggle("has-input", !!url && !failed);
  $("tab-compare").disabled = !url || !!failed || !$("stage").classList.contains("has-result");
}

export function showInputOnly(url, kind = S.sourceKind) {
  // A new input replaces the shown result until the next one arrives.
  clearResult();
  setBefore(url, kind);
  if (!url) return;
  const idle = () => !$("stage").classList.contains("has-result");
  if (kind === "video") {
    const video = $("before-video");
    whenVideoReady(video).then(() => {
      if (!idle()) return;
      setNatural(video.videoWidth, video.videoHeight);
      video.play().catch(() => {});
    }, () => {});
    return;
  }
  const img = $("before-img");
  const ready = () => {
    if (idle()) setNatural(img.naturalWidth, img.naturalHeight);
  };
  if (img.complete && img.naturalWidth) ready();
  else img.addEventListener("load", ready, { once: true });
}

function clearResult() {
  S.result = null;
  $("viewer").dataset.requestId = "";
  const stage = $("stage");
  stage.classList.remove("has-result", "has-mask");
  setMedia($("result-img"), $("result-video"), null, "image");
  setMedia($("mask-img"), $("mask-video"), null, "image");
  $("video-note").hidden = true;
  if (derivedMaskUrl) URL.revokeObjectURL(derivedMaskUrl);
  derivedMaskUrl = null;
  $("facts").hidden = true;
  for (const id of ["download-image", "download-mask"]) {
    $(id).removeAttribute("href");
    $(id).removeAttribute("title");
    $(id).setAttribute("aria-disabled", "true");
  }
  $("download-image-label").textContent = humanize(S.sourceKind);
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

/** meta: {beforeUrl, inference, total, requestId, endpoint}; the output is an image's or a video's. */
export function showResult(output, input, meta = {}) {
  clearResult();
  const kind = output.video ? "video" : "image";
  S.result = { output, input, meta: { ...meta, kind } };
  $("viewer").dataset.requestId = meta.requestId || "";
  const file = output[kind] || {};
  const stage = $("stage");
  const resultImg = $("result-img");
  const resultVideo = $("result-video");
  // A GIF (an image type) shows as an image; a video this browser cannot play as a note and a download.
  const slot = kind === "video" && !String(file.content_type || "").startsWith("image/") ? "video" : "image";
  const playable = slot === "image" || canPlay(file.content_type);
  setMedia(resultImg, resultVideo, playable ? file.url : null, slot);
  if (!playable) cannotPlay(file);
  stage.classList.add("has-result");
  const before = meta.beforeUrl || (input && input[S.sourceKey]);
  setBefore(before || null, kind);
  $("before-img").onerror = () => ($("tab-compare").disabled = true);

  const dl = $("download-image");
  dl.href = file.url;
  dl.download = file.file_name || `result.${extOf(file, kind === "video" ? "mp4" : "png")}`;
  dl.removeAttribute("aria-disabled");
  $("download-image-label").textContent = humanize(kind);

  if (kind === "video") showVideoMask(output.mask_video, slot, playable);
  else showImageMask(output, input, file, resultImg);

  const w = file.width;
  const h = file.height;
  if (w && h) setNatural(w, h);
  if (slot === "video") {
    resultVideo.onerror = () => {
      if (S.result && S.result.output === output) cannotPlay(file, "The video did not load here (the file may have expired).");
    };
    whenVideoReady(resultVideo).then(() => setNatural(resultVideo.videoWidth, resultVideo.videoHeight), () => {});
  } else whenLoaded(resultImg).then(() => setNatural(resultImg.naturalWidth, resultImg.naturalHeight), () => {});

  const fps = file.fps ? `${Number(file.fps.toFixed(2))} fps` : null;
  const facts = [
    ["Size", w && h ? `${w} × ${h}` : null],
    ["Frames", file.num_frames != null ? String(file.num_frames) : null],
    ["Frame rate", fps],
    ["Duration", file.duration != null ? fmtSeconds(file.duration) : null],
    ["Format", file.content_type],
    ["File", file.file_size != null ? fmtBytes(file.file_size) : null],
    [kind === "video" ? "Processing" : "Inference", meta.inference != null ? fmtSeconds(meta.inference) : null],
    ["Total", meta.total != null ? fmtSeconds(meta.total) : null],
    ["Model", input && input.model],
    ["Request", meta.requestId],
  ].filter(([, v]) => v);
  $("facts").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v }))));
  $("facts").hidden = false;
  $("tab-compare").disabled = !before || !playable;
  if ((viewMode() === "compare" && $("tab-compare").disabled) || (viewMode() === "mask" && $("tab-mask").disabled)) setMode("result");
  else setMode(viewMode());
  fitView();
  updateSnippet(input);
}

// The mask of an image: the server's file if asked for, the image itself for mask_only, else the cut-out's alpha.
function showImageMask(output, input, image, resultImg) {
  const maskOnly = input && input.mask_only;
  const serverMask = maskOnly ? image : output.mask_image;
  $("tab-mask").disabled = false;
  if (serverMask && serverMask.url) return setMask(serverMask.url, serverMask.file_name || `mask.${extOf(serverMask, "png")}`, false, "image");
  $("download-mask").title = "Derived from the cut-out's alpha channel (turn on “Output Mask” for the server's file)";
  const wanted = image.url;
  whenLoaded(resultImg)
    .then(() => deriveMask(resultImg))
    .then((url) => {
      if (!S.result || S.result.output.image.url !== wanted) return URL.revokeObjectURL(url);
      derivedMaskUrl = url;
      const stem = (image.file_name || "result").replace(/\.[^.]+$/, "");
      setMask(url, `${stem}-mask.png`, true, "image");
    })
    .catch(() => {});
}

// The mask of a video: only the server's (output_mask), in the same format as the video.
function showVideoMask(mask, slot, playable) {
  const a = $("download-mask");
  if (!mask || !mask.url) {
    $("tab-mask").disabled = true;
    a.title = "Turn on “Output Mask” for a mask video";
    return;
  }
  setMask(mask.url, mask.file_name || `mask.${extOf(mask, "mp4")}`, false, slot, playable);
  $("tab-mask").disabled = !playable;
}

/** Whether this browser plays a video type (Chromium: MP4 and WebM, not ProRes MOV). */
function canPlay(type) {
  return !type || document.createElement("video").canPlayType(type) !== "";
}
/** The result as a one-line note instead of a player (the download links stay). */
function cannotPlay(file, why = null) {
  $("result-video").hidden = true;
  $("result-img").hidden = true;
  const note = $("video-note");
  note.textContent =
    why ||
    (file.content_type === "video/quicktime"
      ? "ProRes MOV does not play in browsers: download it below."
      : `This browser cannot play ${file.content_type}: download it below.`);
  note.hidden = false;
  $("tab-compare").disabled = true;
}

/** The mask's download link, and the mask view unless the browser cannot show it (`shown` false). */
function setMask(url, name, derived, slot, shown = true) {
  setMedia($("mask-img"), $("mask-video"), shown ? url : null, slot);
  $("stage").classList.toggle("has-mask", shown);
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

/** Resolves once a <video> knows its size (rejects if it cannot be played). */
function whenVideoReady(video) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= 1 && video.videoWidth) return resolve();
    video.addEventListener("loadedmetadata", () => resolve(), { once: true });
    video.addEventListener("error", () => reject(new Error("video failed to load")), { once: true });
  });
}
