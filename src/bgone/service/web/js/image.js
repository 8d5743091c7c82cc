/* The image input: pick, drop, paste or type a URL; checks against the server's limits; the preview;
   the upload to the server's storage (or a data: URI) when a run needs an image_url.
   Does not submit anything: run.js calls resolveImageUrl. */
import { api, ApiError } from "./api.js";
import { S } from "./state.js";
import { $, fmtBytes } from "./util.js";
import { imageError } from "./errors.js";
import { setStatus, addLocalLog } from "./status.js";
import { setBefore, showInputOnly } from "./result.js";
import { updateSnippet } from "./snippets.js";

export function setPreview(src, name, info) {
  $("dz-empty").hidden = !!src;
  $("dz-preview").hidden = !src;
  const img = $("preview-img");
  if (src) img.src = src;
  else img.removeAttribute("src");
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

/** What to call an image given by URL: its file name, or a data: URI as such. */
export function nameFromUrl(url) {
  return url.startsWith("data:") ? "Image from a data URI" : decodeURIComponent(url.split(/[?#]/)[0].split("/").pop() || url);
}

function clearImage() {
  forgetFile();
  $("image-url").value = "";
  setPreview(null);
  imageError("");
  setBefore(null);
  updateSnippet();
}

function setFile(file) {
  imageError("");
  if (!file) return;
  const type = file.type || "";
  if (!type.startsWith("image/")) {
    imageError(`“${file.name}” is not an image${type ? ` (${type})` : ""}. Choose a PNG, JPEG, WebP, GIF or another image file.`);
    return;
  }
  if (S.limits && file.size > S.limits.max_image_bytes) {
    imageError(`“${file.name}” is ${fmtBytes(file.size)}, over this server's limit of ${fmtBytes(S.limits.max_image_bytes)}.`);
    return;
  }
  if (S.fileUrl) URL.revokeObjectURL(S.fileUrl);
  S.file = file;
  S.fileUrl = URL.createObjectURL(file);
  $("image-url").value = "";
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
  setPreview(url, nameFromUrl(url), url.startsWith("data:") ? fmtBytes(url.length) : new URL(url).host);
  const img = $("preview-img");
  img.onerror = () => {
    if ($("image-url").value.trim() === url) $("preview-info").textContent = "No preview here; the server will fetch it";
  };
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
    const file = [...data.files].find((f) => f.type.startsWith("image/")) || [...data.files][0];
    if (file) {
      e.preventDefault();
      setFile(file.name ? file : new File([file], "pasted.png", { type: file.type }));
      return;
    }
    const target = e.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
    const text = (data.getData("text") || "").trim();
    if (!typing && /^(https?:\/\/|data:image\/)/i.test(text)) {
      e.preventDefault();
      $("image-url").value = text;
      setUrl(text);
    }
  });
}

/** The image_url to send: the typed URL, or the picked file uploaded to the server's storage. */
export async function resolveImageUrl(run) {
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
        "X-Fal-File-Name": encodeURIComponent(S.file.name || "image"),
      },
    });
    S.uploads.set(S.file, up.data.access_url);
    return up.data.access_url;
  } catch (err) {
    if (err.name === "AbortError" || (err instanceof ApiError && [401, 403, 413].includes(err.status))) throw err;
    // Storage unavailable: send the bytes inline instead (works everywhere, just bigger).
    addLocalLog("Upload failed; sending the image inline as a data: URI", "WARNING");
    return await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(S.file);
    });
  }
}
