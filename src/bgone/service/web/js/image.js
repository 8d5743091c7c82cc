/* The input widget: an image or a video, picked, dropped, pasted or given by URL; checks against the
   server's limits; the preview; the upload to the server's storage (or a data: URI) when a run needs the
   image_url / video_url. A file or URL of the other kind switches the mode (mode.js).
   Does not submit anything: run.js calls resolveSourceUrl. */
import { api, ApiError } from "./api.js";
import { S } from "./state.js";
import { $, fmtBytes, fmtSeconds, humanize } from "./util.js";
import { imageError } from "./errors.js";
import { setMode } from "./mode.js";
import { setStatus, addLocalLog } from "./status.js";
import { setBefore, showInputOnly, setMedia } from "./result.js";
import { updateSnippet } from "./snippets.js";

const VIDEO_NAME = /\.(mp4|m4v|webm|mov|mkv|avi|mpe?g|ogv|3gp|mts|m2ts|wmv|flv)$/i;
const IMAGE_NAME = /\.(png|jpe?g|jfif|webp|gif|bmp|tiff?|avif|heic|heif|ico)$/i;
const kindOfName = (name) => (VIDEO_NAME.test(name) ? "video" : IMAGE_NAME.test(name) ? "image" : null);
/** "image", "video" or null: what a file is, by its type, else its name. */
export function kindOfFile(file) {
  const type = file.type || "";
  if (type.startsWith("image/")) return "image";
  if (type.startsWith("video/")) return "video";
  return kindOfName(file.name || "");
}
/** The same for a URL: a data: URI by its type, others by the path's extension; null when it does not say. */
export function kindOfUrl(url) {
  const data = /^data:(image|video)\//i.exec(url);
  if (data) return data[1].toLowerCase();
  try {
    return kindOfName(new URL(url).pathname);
  } catch {
    return null;
  }
}

export function setPreview(src, name, info, kind = S.sourceKind) {
  $("dz-empty").hidden = !!src;
  $("dz-preview").hidden = !src;
  setMedia($("preview-img"), $("preview-video"), src, kind);
  $("preview-name").textContent = name || "";
  $("preview-info").textContent = info || "";
}

/** Drop the picked file (and its object URL); the URL field is the caller's. */
export function forgetFile() {
  S.file = null;
  if (S.fileUrl) URL.revokeObjectURL(S.fileUrl);
  S.fileUrl = null;
  $("file-input").value = "";
}

/** What to call an input given by URL: its file name, or a data: URI as such. */
export function nameFromUrl(url, kind = S.sourceKind) {
  return url.startsWith("data:") ? `${humanize(kind)} from a data URI` : decodeURIComponent(url.split(/[?#]/)[0].split("/").pop() || url);
}

function clearImage() {
  forgetFile();
  $("image-url").value = "";
  setPreview(null);
  imageError("");
  setBefore(null);
  updateSnippet();
}

/** After a switch of mode: drop an input of the other kind, and a result of the other kind. */
export function inputSwitched(mode) {
  const typed = $("image-url").value.trim();
  const kind = S.file ? kindOfFile(S.file) : typed ? kindOfUrl(typed) : null;
  if (kind && kind !== mode) clearImage();
  else if (!kind && typed && !S.file) return setUrl(typed); // a URL that does not say: preview it as this mode's
  if (S.result && S.result.meta.kind !== mode) showInputOnly(S.fileUrl || null);
}

function setFile(file) {
  imageError("");
  if (!file) return;
  const type = file.type || "";
  const kind = kindOfFile(file);
  if (!kind) {
    imageError(
      `“${file.name}” is not an image or a video${type ? ` (${type})` : ""}. Choose a PNG, JPEG, WebP or GIF image, or an MP4, WebM or MOV video.`,
    );
    return;
  }
  if (!setMode(kind)) return;
  const maxBytes = S.limits && (kind === "video" ? S.limits.max_video_bytes : S.limits.max_image_bytes);
  if (maxBytes && file.size > maxBytes) {
    imageError(`“${file.name}” is ${fmtBytes(file.size)}, over this server's limit of ${fmtBytes(maxBytes)}.`);
    return;
  }
  if (S.fileUrl) URL.revokeObjectURL(S.fileUrl);
  S.file = file;
  S.fileUrl = URL.createObjectURL(file);
  $("image-url").value = "";
  if (kind === "video") return setVideoFile(file, type);
  setPreview(S.fileUrl, file.name, `${fmtBytes(file.size)} · ${type.replace("image/", "").toUpperCase()}`);
  const probe = new Image();
  const url = S.fileUrl;
  probe.onload = () => {
    if (S.fileUrl !== url) return;
    const px = probe.naturalWidth * probe.naturalHeight;
    $("preview-info").textContent = `${probe.naturalWidth} × ${probe.naturalHeight} · ${fmtBytes(file.size)} · ${type.replace("image/", "").toUpperCase()}`;
    if (S.limits && px > S.limits.max_image_pixels) {
      imageError(
        `This image has ${(px / 1e6).toFixed(1)} megapixels; the server accepts at most ${(S.limits.max_image_pixels / 1e6).toFixed(1)}.`,
      );
    }
  };
  probe.onerror = () => {
    if (S.fileUrl === url) $("preview-info").textContent = `${fmtBytes(file.size)} · this browser cannot preview it; the server may still read it`;
  };
  probe.src = url;
  showInputOnly(url);
  updateSnippet();
}

function setVideoFile(file, type) {
  const url = S.fileUrl;
  const format = ((/\.([a-z0-9]+)$/i.exec(file.name) || [])[1] || type.split("/")[1] || "video").toUpperCase();
  setPreview(url, file.name, `${fmtBytes(file.size)} · ${format}`, "video");
  const probe = $("preview-video");
  probe.onloadedmetadata = () => {
    if (S.fileUrl !== url) return;
    const { videoWidth: w, videoHeight: h, duration } = probe;
    const length = Number.isFinite(duration) ? ` · ${fmtSeconds(duration)}` : "";
    $("preview-info").textContent = `${w} × ${h}${length} · ${fmtBytes(file.size)} · ${format}`;
    // Checked here only where /api/limits tells the video limits; the server checks them all the same.
    const l = S.limits || {};
    if (l.max_video_pixels && w * h > l.max_video_pixels) {
      imageError(`This video's frames have ${((w * h) / 1e6).toFixed(1)} megapixels; the server accepts at most ${(l.max_video_pixels / 1e6).toFixed(1)}.`);
    } else if (l.max_video_seconds && duration > l.max_video_seconds) {
      imageError(`This video lasts ${fmtSeconds(duration)}; the server accepts at most ${fmtSeconds(l.max_video_seconds)}.`);
    }
  };
  probe.onerror = () => {
    // E.g. a ProRes MOV in Chromium: no preview, but the server may read it.
    if (S.fileUrl === url) $("preview-info").textContent = `${fmtBytes(file.size)} · ${format} · this browser cannot preview it; the server may still read it`;
  };
  showInputOnly(url, "video");
  updateSnippet();
}

function setUrl(value) {
  imageError("");
  const url = value.trim();
  if (!url) {
    if (!S.file) clearImage();
    return;
  }
  forgetFile();
  if (!/^(https?:|data:)/i.test(url)) {
    imageError("Enter an http(s) URL or a data: URI.");
    setPreview(null);
    return;
  }
  const kind = kindOfUrl(url);
  if (kind && !setMode(kind)) return;
  setPreview(url, nameFromUrl(url), url.startsWith("data:") ? fmtBytes(url.length) : new URL(url).host);
  const noPreview = () => {
    if ($("image-url").value.trim() === url) $("preview-info").textContent = "No preview here; the server will fetch it";
  };
  $("preview-img").onerror = noPreview;
  $("preview-video").onerror = noPreview;
  $("preview-video").onloadedmetadata = null;
  showInputOnly(url);
  updateSnippet();
}

export function initImageInput() {
  const dz = $("dropzone");
  const fileInput = $("file-input");
  dz.addEventListener("click", (e) => {
    if (e.target.closest("#clear-image")) return;
    fileInput.click();
  });
  // Like a native button: Enter / Space open the picker (on key up, so the chooser is not dismissed).
  let armed = false;
  dz.addEventListener("keydown", (e) => {
    if (e.target !== dz || (e.key !== "Enter" && e.key !== " ")) return;
    e.preventDefault();
    e.stopPropagation();
    armed = true;
  });
  dz.addEventListener("keyup", (e) => {
    if (e.target !== dz || (e.key !== "Enter" && e.key !== " ") || !armed) return;
    armed = false;
    e.preventDefault();
    fileInput.click();
  });
  fileInput.addEventListener("change", () => setFile(fileInput.files[0]));
  $("clear-image").addEventListener("click", (e) => {
    e.stopPropagation();
    clearImage();
    dz.focus();
  });
  let urlTimer = null;
  $("image-url").addEventListener("input", (e) => {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(() => setUrl(e.target.value), 350);
  });
  $("image-url").addEventListener("change", (e) => {
    clearTimeout(urlTimer);
    setUrl(e.target.value);
  });

  // Drag and drop anywhere on the page.
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].some((t) => t === "Files" || t === "text/uri-list");
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    depth++;
    document.body.classList.add("dragging");
    dz.classList.add("over");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) {
      document.body.classList.remove("dragging");
      dz.classList.remove("over");
    }
  });
  window.addEventListener("dragover", (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("dragging");
    dz.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) return setFile(file);
    const uri = (e.dataTransfer.getData("text/uri-list") || "").split("\n").find((l) => l && !l.startsWith("#"));
    if (uri) {
      $("image-url").value = uri.trim();
      setUrl(uri);
    }
  });

  // Paste an image (or an image URL) anywhere.
  document.addEventListener("paste", (e) => {
    const data = e.clipboardData;
    if (!data) return;
    const file = [...data.files].find((f) => kindOfFile(f)) || [...data.files][0];
    if (file) {
      e.preventDefault();
      setFile(file.name ? file : new File([file], "pasted.png", { type: file.type }));
      return;
    }
    const target = e.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
    const text = (data.getData("text") || "").trim();
    if (!typing && /^(https?:\/\/|data:(image|video)\/)/i.test(text)) {
      e.preventDefault();
      $("image-url").value = text;
      setUrl(text);
    }
  });
}

/** The image_url / video_url to send: the typed URL, or the picked file uploaded to the server's storage. */
export async function resolveSourceUrl(run) {
  const typed = $("image-url").value.trim();
  if (!S.file) return typed;
  const cached = S.uploads.get(S.file);
  if (cached) return cached;
  setStatus("uploading", "Uploading", `${S.file.name} · ${fmtBytes(S.file.size)}`);
  try {
    const token = await api("/storage/auth/token", {
      method: "POST",
      body: "{}",
      headers: { "Content-Type": "application/json" },
      signal: run.signal,
    });
    const up = await api("/files/upload", {
      method: "POST",
      body: S.file,
      auth: false,
      signal: run.signal,
      headers: {
        Authorization: `Bearer ${token.data.token}`,
        "Content-Type": S.file.type || "application/octet-stream",
        "X-Fal-File-Name": encodeURIComponent(S.file.name || S.sourceKind),
      },
    });
    S.uploads.set(S.file, up.data.access_url);
    return up.data.access_url;
  } catch (err) {
    if (err.name === "AbortError" || (err instanceof ApiError && [401, 403, 413].includes(err.status))) throw err;
    // Storage unavailable: send the bytes inline instead (works everywhere, just bigger).
    addLocalLog(`Upload failed; sending the ${S.sourceKind} inline as a data: URI`, "WARNING");
    return await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(S.file);
    });
  }
}
