/* bgone playground: a hand-written client for the fal-compatible queue API. No build step, no CDN. */
"use strict";

(() => {
  const ENDPOINT = "fal-ai/birefnet/v2";
  const SCHEMA_NAME = "BirefnetV2Input";
  const KEY_STORAGE = "bgone.apiKey";
  const $ = (id) => document.getElementById(id);

  const S = {
    limits: null,
    props: {}, // resolved JSON schema of each input field
    order: [],
    required: [],
    imageKey: "image_url",
    file: null,
    fileUrl: null,
    uploads: new WeakMap(), // File -> access_url, so a re-run does not upload again
    job: null, // the request being watched
    run: null, // the run being prepared (upload / submit), for Cancel before a request id exists
    result: null,
    maskUrl: null,
    derivedMaskUrl: null,
    timer: null,
    historyItems: [],
  };

  // ---------------------------------------------------------------------------------- helpers
  class ApiError extends Error {
    constructor(status, body, url) {
      super(`HTTP ${status}`);
      this.status = status;
      this.body = body;
      this.url = url;
    }
  }

  const apiKey = () => (localStorage.getItem(KEY_STORAGE) || "").trim();
  const authHeaders = () => (apiKey() ? { Authorization: `Key ${apiKey()}` } : {});

  async function api(url, { method = "GET", body, headers = {}, signal, auth = true } = {}) {
    let res;
    try {
      res = await fetch(url, { method, body, headers: { ...(auth ? authHeaders() : {}), ...headers }, signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, null, url);
    }
    const text = await res.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: keep the text */
    }
    if (!res.ok) throw new ApiError(res.status, data, url);
    return { status: res.status, data, headers: res.headers };
  }

  function fmtBytes(n) {
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
  const fmtSeconds = (s) => (s < 10 ? `${s.toFixed(2)} s` : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
  const humanize = (key) => key.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
  const toEpoch = (t) => (t == null ? null : typeof t === "number" ? t : Date.parse(t) / 1000);
  function ago(epoch) {
    const s = Math.max(0, Date.now() / 1000 - epoch);
    if (s < 45) return "just now";
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(epoch * 1000).toLocaleDateString();
  }
  function el(tag, attrs = {}, ...children) {
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
  const shortUrl = (u) => (u && u.startsWith("data:") ? `${u.slice(0, 32)}… (${fmtBytes(u.length)} data URI)` : u);

  let toastTimer = null;
  function toast(text, bad = false) {
    const t = $("toast");
    t.textContent = text;
    t.style.color = bad ? "var(--err)" : "";
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (t.textContent = ""), 3500);
  }

  // ---------------------------------------------------------------------------------- errors
  function fieldLabel(name) {
    const prop = S.props[name];
    if (name === S.imageKey) return "Image";
    return (prop && prop.title) || humanize(String(name));
  }

  /** Which fields a validation message names, when its loc is only ["body"]. */
  function fieldsNamedIn(msg) {
    const text = msg.toLowerCase();
    return S.order.filter((k) => text.includes(k.replace(/_/g, " ")) || text.includes(k));
  }

  function cleanMsg(msg) {
    return String(msg ?? "").replace(/^Value error,\s*/i, "");
  }

  /** Turn any failure into {title, lines[], fields[{name,msg}], neutral}. */
  function explain(err, context = "") {
    if (!(err instanceof ApiError)) {
      return { title: "Something went wrong", lines: [String(err && err.message ? err.message : err)] };
    }
    const body = err.body;
    const detail = body && typeof body === "object" ? body.detail : body;
    const where = context ? ` (${context})` : "";
    switch (err.status) {
      case 0:
        return {
          title: "Network error",
          lines: [`Could not reach the server at ${location.origin}${where}. Check that bgone is running and try again.`],
        };
      case 401:
      case 403:
        showKeyBox(true);
        return {
          title: "Unauthorized",
          lines: [
            typeof detail === "string" ? detail : "This server requires an API key.",
            apiKey() ? "The saved API key was rejected: check it in the field at the top." : "Enter your API key in the field at the top.",
          ],
          unauthorized: true,
        };
      case 413:
        return { title: "Image too large", lines: [typeof detail === "string" ? detail : "The server refused the upload."] };
      case 422: {
        const items = Array.isArray(detail) ? detail : [{ loc: ["body"], msg: typeof detail === "string" ? detail : JSON.stringify(detail) }];
        const fields = [];
        const lines = items.map((item) => {
          const loc = (item.loc || []).filter((p) => p !== "body");
          const msg = cleanMsg(item.msg);
          let names = loc.length ? [String(loc[0])] : fieldsNamedIn(msg);
          names = names.filter((n) => n in S.props || n === S.imageKey);
          for (const n of names) fields.push({ name: n, msg });
          const label = loc.length ? loc.map((p) => (typeof p === "number" ? `[${p}]` : fieldLabel(p))).join(" › ") : names.map(fieldLabel).join(", ") || "Input";
          return { label, msg };
        });
        return { title: "Invalid input", lines, fields };
      }
      case 499:
        return { title: "Cancelled", lines: ["The request was cancelled before it finished."], neutral: true };
      case 429:
      case 502:
      case 503:
        return {
          title: "Server busy",
          lines: [`The server is busy right now (HTTP ${err.status}). Try again in a moment.`, typeof detail === "string" ? detail : null].filter(Boolean),
        };
      case 504:
        return { title: "Timed out", lines: [typeof detail === "string" ? detail : "The request timed out."] };
      case 404:
        return { title: "Not found", lines: [typeof detail === "string" ? detail : `Nothing at ${err.url}.`] };
      default: {
        const type = body && body.error_type ? body.error_type : null;
        return {
          title: err.status >= 500 ? "Request failed" : `Request refused (HTTP ${err.status})`,
          lines: [typeof detail === "string" ? detail : JSON.stringify(detail)],
          type,
        };
      }
    }
  }

  function showError(info) {
    const box = $("error");
    box.classList.toggle("neutral", !!info.neutral);
    $("error-title").textContent = info.title;
    const body = $("error-body");
    body.replaceChildren();
    const lines = info.lines || [];
    if (lines.length === 1 && typeof lines[0] === "string") body.append(lines[0]);
    else {
      const ul = el("ul");
      for (const line of lines) {
        if (typeof line === "string") ul.append(el("li", { text: line }));
        else ul.append(el("li", {}, el("strong", { text: `${line.label}: ` }), line.msg));
      }
      body.append(ul);
    }
    if (info.type) body.append(" ", el("code", { "data-testid": "error-type", text: info.type }));
    box.hidden = false;
    for (const f of info.fields || []) markField(f.name, f.msg);
  }
  function clearError() {
    $("error").hidden = true;
    for (const node of document.querySelectorAll(".field.invalid")) unmarkField(node.dataset.field);
  }
  function markField(name, msg) {
    if (name === S.imageKey) return imageError(msg);
    const wrap = document.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (!wrap) return;
    wrap.classList.add("invalid");
    const input = wrap.querySelector("input, select");
    if (input) input.setAttribute("aria-invalid", "true");
    const errNode = wrap.querySelector(".field-error");
    if (errNode) {
      errNode.textContent = msg;
      errNode.hidden = false;
    }
  }
  function unmarkField(name) {
    const wrap = document.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (!wrap) return;
    wrap.classList.remove("invalid");
    const input = wrap.querySelector("input, select");
    if (input) input.removeAttribute("aria-invalid");
    const errNode = wrap.querySelector(".field-error");
    if (errNode) errNode.hidden = true;
  }
  function imageError(msg) {
    const node = $("image-error");
    node.textContent = msg;
    node.hidden = !msg;
    $("image-url").toggleAttribute("aria-invalid", !!msg);
    $("dropzone").toggleAttribute("aria-invalid", !!msg);
  }

  // ---------------------------------------------------------------------------------- API key
  function showKeyBox(needed) {
    const form = $("key-form");
    form.hidden = false;
    form.classList.toggle("needs", needed && !apiKey());
    const state = $("key-state");
    if (needed && !apiKey()) {
      state.textContent = "required";
      state.className = "key-state bad";
    }
  }
  function initKeyBox() {
    const input = $("api-key");
    input.value = apiKey();
    if (S.limits && S.limits.auth_required) {
      showKeyBox(true);
      if (apiKey()) {
        $("key-state").textContent = "saved";
        $("key-state").className = "key-state good";
      }
    }
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = input.value.trim();
      if (value) localStorage.setItem(KEY_STORAGE, value);
      else localStorage.removeItem(KEY_STORAGE);
      $("key-form").classList.toggle("needs", !value);
      $("key-state").textContent = value ? "saved" : "cleared";
      $("key-state").className = `key-state ${value ? "good" : ""}`;
      const err = $("error");
      if (!err.hidden && $("error-title").textContent === "Unauthorized") err.hidden = true;
      updateSnippet();
      refreshHistory();
    });
  }

  // ---------------------------------------------------------------------------------- schema form
  function resolveProp(schema, prop) {
    let out = { ...prop };
    const refs = [];
    if (prop.$ref) refs.push(prop.$ref);
    for (const part of prop.allOf || []) if (part.$ref) refs.push(part.$ref);
    for (const part of prop.anyOf || []) if (part.$ref) refs.push(part.$ref);
    for (const ref of refs) {
      const target = ref.split("/").slice(1).reduce((node, key) => (node ? node[key] : undefined), schema);
      if (target) out = { ...target, ...out, title: prop.title || undefined, description: prop.description || target.description };
    }
    if (!out.type && Array.isArray(prop.anyOf)) {
      const nonNull = prop.anyOf.find((p) => p.type && p.type !== "null");
      if (nonNull) out = { ...nonNull, ...out };
    }
    delete out.$ref;
    delete out.allOf;
    return out;
  }

  function findInputSchema(schema) {
    const comps = (schema.components && schema.components.schemas) || {};
    const path = schema.paths && schema.paths[`/queue/${ENDPOINT}`];
    const ref = path && path.post && path.post.requestBody && path.post.requestBody.content["application/json"].schema.$ref;
    if (ref) {
      const name = ref.split("/").pop();
      if (comps[name]) return comps[name];
    }
    return comps[SCHEMA_NAME];
  }

  function buildForm(schema) {
    const input = findInputSchema(schema);
    if (!input) throw new Error("the input schema was not found in /openapi.json");
    const keys = Object.keys(input.properties || {});
    const order = (input["x-fal-order-properties"] || []).filter((k) => keys.includes(k));
    for (const k of keys) if (!order.includes(k)) order.push(k);
    S.order = order;
    S.required = input.required || [];
    for (const k of order) S.props[k] = resolveProp(schema, input.properties[k]);
    S.imageKey = order.find((k) => S.props[k].ui && S.props[k].ui.field === "image") || "image_url";

    const imageProp = S.props[S.imageKey];
    if (imageProp && imageProp.description) $("image-help").textContent = imageProp.description + ".";

    const box = $("fields");
    box.replaceChildren();
    // The image (the one required input) has its own widget above; the rest follow in schema order.
    for (const key of order) {
      if (key === S.imageKey) continue;
      box.append(buildField(key, S.props[key]));
    }
  }

  function buildField(key, prop) {
    const id = `f-${key}`;
    const label = prop.title || humanize(key);
    const long = prop.description && prop.description.length > 110;
    const help = prop.description ? el("p", { class: long ? "help clamp" : "help", id: `help-${key}`, text: prop.description }) : null;
    let helpNode = help;
    if (long) {
      const more = el("button", { type: "button", class: "linkbtn more", "aria-expanded": "false", "aria-controls": `help-${key}`, text: "More" });
      more.addEventListener("click", () => {
        const open = help.classList.toggle("clamp");
        more.setAttribute("aria-expanded", String(!open));
        more.textContent = open ? "More" : "Less";
      });
      helpNode = el("div", { class: "help-wrap" }, help, more);
    }
    const error = el("p", { class: "field-error", id: `err-${key}`, "data-testid": `error-${key}`, hidden: true });
    const describedBy = [help ? `help-${key}` : null, `err-${key}`].filter(Boolean).join(" ");
    let control;
    if (prop.type === "boolean") {
      control = el("input", {
        type: "checkbox",
        class: "switch",
        role: "switch",
        id,
        name: key,
        "data-testid": `field-${key}`,
        "aria-describedby": describedBy,
      });
      control.checked = !!prop.default;
      return el(
        "div",
        { class: "field", "data-field": key },
        el("div", { class: "switch-row" }, el("div", { class: "switch-text" }, el("label", { for: id, text: label }), helpNode), control),
        error,
      );
    }
    if (Array.isArray(prop.enum)) {
      control = el("select", { id, name: key, "data-testid": `field-${key}`, "aria-describedby": describedBy });
      for (const value of prop.enum) control.append(el("option", { value: String(value), text: String(value) }));
      if (prop.default != null) control.value = String(prop.default);
    } else if (prop.type === "integer" || prop.type === "number") {
      control = el("input", {
        type: "number",
        id,
        name: key,
        "data-testid": `field-${key}`,
        "aria-describedby": describedBy,
        min: prop.minimum,
        max: prop.maximum,
        step: prop.type === "integer" ? 1 : "any",
      });
      if (prop.default != null) control.value = String(prop.default);
    } else {
      control = el("input", { type: "text", id, name: key, "data-testid": `field-${key}`, "aria-describedby": describedBy });
      if (prop.default != null) control.value = String(prop.default);
    }
    return el("div", { class: "field", "data-field": key }, el("label", { for: id, text: label }), control, helpNode, error);
  }

  function fieldControl(key) {
    return document.getElementById(`f-${key}`);
  }

  function formValues() {
    const values = {};
    for (const key of S.order) {
      if (key === S.imageKey) continue;
      const prop = S.props[key];
      const control = fieldControl(key);
      if (!control) continue;
      if (prop.type === "boolean") values[key] = control.checked;
      else if (prop.type === "integer" || prop.type === "number") {
        if (control.value !== "") values[key] = Number(control.value);
      } else if (Array.isArray(prop.enum)) {
        const match = prop.enum.find((v) => String(v) === control.value);
        values[key] = match === undefined ? control.value : match;
      } else if (control.value !== "" || S.required.includes(key)) values[key] = control.value;
    }
    return values;
  }

  function setFormValues(input) {
    for (const key of S.order) {
      if (key === S.imageKey || !(key in input)) continue;
      const control = fieldControl(key);
      if (!control) continue;
      if (control.type === "checkbox") control.checked = !!input[key];
      else control.value = String(input[key]);
    }
  }

  function resetForm() {
    for (const key of S.order) {
      if (key === S.imageKey) continue;
      const control = fieldControl(key);
      const prop = S.props[key];
      if (!control) continue;
      if (control.type === "checkbox") control.checked = !!prop.default;
      else control.value = prop.default == null ? "" : String(prop.default);
      unmarkField(key);
    }
    updateSnippet();
  }

  // ---------------------------------------------------------------------------------- image input
  function setPreview(src, name, info) {
    $("dz-empty").hidden = !!src;
    $("dz-preview").hidden = !src;
    const img = $("preview-img");
    if (src) img.src = src;
    else img.removeAttribute("src");
    $("preview-name").textContent = name || "";
    $("preview-info").textContent = info || "";
  }

  function clearImage() {
    S.file = null;
    if (S.fileUrl) URL.revokeObjectURL(S.fileUrl);
    S.fileUrl = null;
    $("image-url").value = "";
    $("file-input").value = "";
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
    S.file = null;
    if (S.fileUrl) URL.revokeObjectURL(S.fileUrl);
    S.fileUrl = null;
    $("file-input").value = "";
    if (!/^(https?:|data:)/i.test(url)) {
      imageError("Enter an http(s) URL or a data: URI.");
      setPreview(null);
      return;
    }
    const name = url.startsWith("data:") ? "Image from a data URI" : decodeURIComponent(url.split(/[?#]/)[0].split("/").pop() || url);
    setPreview(url, name, url.startsWith("data:") ? fmtBytes(url.length) : new URL(url).host);
    const img = $("preview-img");
    img.onerror = () => {
      if ($("image-url").value.trim() === url) $("preview-info").textContent = "No preview here; the server will fetch it";
    };
    showInputOnly(url);
    updateSnippet();
  }

  function initImageInput() {
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
  async function resolveImageUrl(run) {
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

  // ---------------------------------------------------------------------------------- status / timer
  function setStatus(state, label, text = "") {
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
  function startTimer(from) {
    stopTimer();
    const t0 = from || performance.now();
    const tick = () => ($("elapsed").textContent = fmtSeconds((performance.now() - t0) / 1000));
    tick();
    S.timer = setInterval(tick, 100);
    return t0;
  }
  function stopTimer() {
    if (S.timer) clearInterval(S.timer);
    S.timer = null;
  }

  // ---------------------------------------------------------------------------------- logs
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
  function addLocalLog(message, level = "INFO") {
    logLines.push({ message, level, timestamp: new Date().toISOString(), local: true });
    renderLogs(logLines);
  }
  function setServerLogs(lines) {
    const local = logLines.filter((l) => l.local);
    logLines.length = 0;
    logLines.push(...local, ...(lines || []));
    renderLogs(logLines);
  }

  // ---------------------------------------------------------------------------------- running
  async function runRequest() {
    if (S.run || (S.job && !S.job.done)) return; // one at a time
    clearError();
    imageError("");
    const typed = $("image-url").value.trim();
    if (!S.file && !typed) {
      imageError("Choose an image, or enter an image URL.");
      $("dropzone").focus();
      return;
    }
    if (!$("image-error").hidden) return;
    detachJob();
    logLines.length = 0;
    renderLogs(logLines);
    const run = new AbortController();
    S.run = run;
    const t0 = startTimer();
    setStatus("uploading", "Preparing");
    showInputOnly(S.fileUrl || typed);
    try {
      const imageUrl = await resolveImageUrl(run);
      const input = { ...formValues(), [S.imageKey]: imageUrl };
      updateSnippet(input);
      setStatus("queued", "Submitting");
      const { data } = await api(`/queue/${ENDPOINT}`, {
        method: "POST",
        body: JSON.stringify(input),
        headers: { "Content-Type": "application/json" },
        signal: run.signal,
      });
      const job = { ...data, input, t0, beforeUrl: S.fileUrl || imageUrl, done: false };
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

  function detachJob() {
    if (S.job && S.job.ctrl) S.job.ctrl.abort();
    if (S.job) S.job.detached = true;
    S.job = null;
    stopTimer();
  }

  function onStatus(job, st) {
    if (job !== S.job) return;
    if (Array.isArray(st.logs)) setServerLogs(st.logs);
    if (st.status === "IN_QUEUE") {
      const pos = st.queue_position;
      setStatus("queued", "In queue", pos == null ? "" : pos === 0 ? "next in line" : `${pos} ahead in the queue`);
    } else if (st.status === "IN_PROGRESS") {
      const last = (st.logs || []).filter((l) => l.message).pop();
      setStatus("running", "Running", last ? last.message : "removing the background");
    } else if (st.status === "COMPLETED") {
      setStatus("running", "Finishing", "fetching the result");
    }
  }

  async function watch(job) {
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
      setStatus("done", "Completed", inf != null ? `inference ${fmtSeconds(inf)}` : "");
      showResult(data, job.input, { beforeUrl: job.beforeUrl, inference: inf, total, requestId: job.request_id });
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
      refreshHistory();
    }
  }

  async function cancelRequest() {
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

  // ---------------------------------------------------------------------------------- result view
  const V = { mode: "result", z: 1, tx: 0, ty: 0, split: 50, natW: 0, natH: 0, fit: 1, fw: 0, fh: 0 };

  function setBefore(url) {
    const img = $("before-img");
    if (url) img.src = url;
    else img.removeAttribute("src");
    $("stage").classList.toggle("has-input", !!url);
    $("tab-compare").disabled = !url || !$("stage").classList.contains("has-result");
  }

  function showInputOnly(url) {
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
    if (S.derivedMaskUrl) URL.revokeObjectURL(S.derivedMaskUrl);
    S.derivedMaskUrl = null;
    S.maskUrl = null;
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

  function showResult(output, input, meta = {}) {
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
          S.derivedMaskUrl = url;
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
    if (V.mode === "compare" && !before) setMode("result");
    else setMode(V.mode);
    fitView();
    updateSnippet(input);
  }

  function setMask(url, name, derived) {
    S.maskUrl = url;
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

  async function deriveMask(img) {
    const w = img.naturalWidth;
    const h = img.naturalHeight;
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    const rgba = ctx.getImageData(0, 0, w, h).data;
    const gray = new Uint8Array(w * h);
    for (let i = 0; i < gray.length; i++) gray[i] = rgba[i * 4 + 3];
    return URL.createObjectURL(await encodeGrayPng(gray, w, h));
  }

  // A grayscale (PNG colour type 0) encoder: the mask downloads as a real 8-bit "L" PNG.
  const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();
  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }
  function pngChunk(type, data) {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  }
  async function encodeGrayPng(gray, w, h) {
    const raw = new Uint8Array((w + 1) * h);
    for (let y = 0; y < h; y++) raw.set(gray.subarray(y * w, (y + 1) * w), y * (w + 1) + 1); // filter byte 0
    const zipped = new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer());
    const ihdr = new Uint8Array(13);
    const v = new DataView(ihdr.buffer);
    v.setUint32(0, w);
    v.setUint32(4, h);
    ihdr.set([8, 0, 0, 0, 0], 8);
    const sig = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
    return new Blob([sig, pngChunk("IHDR", ihdr), pngChunk("IDAT", zipped), pngChunk("IEND", new Uint8Array())], { type: "image/png" });
  }

  // -- zoom / pan / compare
  function setNatural(w, h) {
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
  function fitView() {
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
  function setMode(mode) {
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

  function initViewer() {
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
      if (!V.natW) return;
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
  }

  // ---------------------------------------------------------------------------------- code snippets
  let snippetLang = "curl";
  function snippetInput(input) {
    if (input) return { input, pendingFile: null };
    const values = formValues();
    const typed = $("image-url").value.trim();
    const uploaded = S.file && S.uploads.get(S.file);
    const url = uploaded || typed || (S.file ? null : "https://example.com/photo.jpg");
    return { input: { ...values, [S.imageKey]: url }, pendingFile: url ? null : S.file };
  }
  function pyValue(v, indent) {
    if (v === true) return "True";
    if (v === false) return "False";
    if (v == null) return "None";
    if (typeof v === "object") return JSON.stringify(v, null, 4).replace(/\n/g, `\n${indent}`).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
    return JSON.stringify(v);
  }
  function curlSnippet(input, pendingFile) {
    const base = location.origin;
    const body = JSON.stringify({ ...input, [S.imageKey]: input[S.imageKey] ?? `${base}/files/… (upload ${pendingFile.name} first)` }, null, 2).replace(/'/g, "'\\''");
    const lines = [`curl -X POST "${base}/${ENDPOINT}"`];
    if (S.limits && S.limits.auth_required) lines.push(`  -H "Authorization: Key $FAL_KEY"`);
    lines.push(`  -H "Content-Type: application/json"`, `  -d '${body}'`);
    return lines.join(" \\\n");
  }
  function pythonSnippet(input, pendingFile) {
    const base = location.origin;
    const args = Object.entries(input).map(([k, v]) => {
      const value = k === S.imageKey && v == null ? `fal_client.upload_file(${JSON.stringify(pendingFile.name)})` : pyValue(v, "        ");
      return `        ${JSON.stringify(k)}: ${value},`;
    });
    const keyNote = S.limits && S.limits.auth_required ? "export FAL_KEY=<your key>" : "export FAL_KEY=anything (this server is open)";
    return [
      "import fal_client",
      "import fal_client.client as c",
      "",
      `# Point fal_client at this bgone server; ${keyNote}`,
      `c.RUN_URL_FORMAT, c.QUEUE_URL_FORMAT = "${base}/", "${base}/queue/"`,
      `c.REST_URL = c.CDN_URL = "${base}"`,
      "",
      "result = fal_client.subscribe(",
      `    "${ENDPOINT}",`,
      "    arguments={",
      ...args,
      "    },",
      "    with_logs=True,",
      "    on_queue_update=print,",
      ")",
      'print(result["image"]["url"])',
    ].join("\n");
  }
  function updateSnippet(input) {
    if (!S.order.length) return null;
    const { input: inp, pendingFile } = snippetInput(S.result ? S.result.input : input);
    const text = snippetLang === "curl" ? curlSnippet(inp, pendingFile) : pythonSnippet(inp, pendingFile);
    // Long data: URIs are copied whole but shown shortened.
    $("snippet").textContent = text.replace(/"data:[^"]{80,}"/g, (m) => `${m.slice(0, 60)}…"`);
    return { curl: curlSnippet(inp, pendingFile), python: pythonSnippet(inp, pendingFile) };
  }
  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      const ta = el("textarea", { style: "position:fixed;left:-9999px;top:0", "aria-hidden": "true" });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      let ok = false;
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
      ta.remove();
      return ok;
    }
  }
  function initSnippets() {
    const tabs = [$("code-tab-curl"), $("code-tab-python")];
    const pick = (lang) => {
      snippetLang = lang;
      for (const t of tabs) {
        const on = t.dataset.lang === lang;
        t.setAttribute("aria-selected", String(on));
        t.tabIndex = on ? 0 : -1;
      }
      updateSnippet();
    };
    for (const t of tabs) {
      t.addEventListener("click", () => pick(t.dataset.lang));
      t.addEventListener("keydown", (e) => {
        if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
          const other = tabs.find((x) => x !== t);
          other.focus();
          pick(other.dataset.lang);
        }
      });
    }
    for (const [id, lang, label] of [
      ["copy-curl", "curl", "curl command"],
      ["copy-python", "python", "Python snippet"],
    ]) {
      $(id).addEventListener("click", async () => {
        const texts = updateSnippet();
        pick(lang);
        $("code").open = true;
        const ok = await copyText(texts[lang]);
        toast(ok ? `Copied the ${label} to the clipboard.` : "Could not copy: select the snippet below and copy it.", !ok);
      });
    }
  }

  // ---------------------------------------------------------------------------------- history
  function historyState(item) {
    if (item.status === "IN_QUEUE") return ["queued", "Queued"];
    if (item.status === "IN_PROGRESS") return ["running", "Running"];
    if (item.error_type === "client_cancelled") return ["cancelled", "Cancelled"];
    if (item.error || item.error_type || !item.result) return ["failed", "Failed"];
    return ["done", "Done"];
  }
  async function refreshHistory() {
    const note = $("history-note");
    if (S.limits && S.limits.auth_required && !apiKey()) {
      note.textContent = "Enter the API key to see recent requests.";
      $("history").replaceChildren();
      return;
    }
    try {
      const { data } = await api("/api/history?limit=20");
      S.historyItems = data;
      renderHistory(data);
      note.textContent = data.length ? "" : "No requests yet. Finished runs appear here.";
    } catch (err) {
      const info = explain(err, "loading the history");
      note.textContent = `${info.title}: ${info.lines.map((l) => (typeof l === "string" ? l : `${l.label}: ${l.msg}`)).join(" ")}`;
    }
  }
  function renderHistory(items) {
    const current = S.result && S.result.meta.requestId;
    $("history").replaceChildren(
      ...items.map((item) => {
        const [state, label] = historyState(item);
        const thumbUrl = item.result && item.result.image && item.result.image.url;
        const thumb = el("div", { class: "thumb" });
        if (thumbUrl) {
          const img = el("img", { src: thumbUrl, alt: "", loading: "lazy", decoding: "async" });
          img.addEventListener("error", () => img.replaceWith(el("span", { text: "expired" })));
          thumb.append(img);
        } else thumb.append(el("span", { text: label }));
        const created = toEpoch(item.created_at);
        const model = item.input && item.input.model ? String(item.input.model).replace("General Use ", "") : item.endpoint;
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
    logLines.length = 0;
    renderLogs(logLines);
    const input = item.input || {};
    setFormValues(input);
    const url = input[S.imageKey] || "";
    S.file = null;
    if (S.fileUrl) URL.revokeObjectURL(S.fileUrl);
    S.fileUrl = null;
    $("file-input").value = "";
    $("image-url").value = url;
    imageError("");
    if (url) {
      const name = url.startsWith("data:") ? "Image from a data URI" : decodeURIComponent(url.split(/[?#]/)[0].split("/").pop() || url);
      setPreview(url, name, `from request ${item.request_id.slice(0, 8)}…`);
    }
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
      showResult(item.result, input, { beforeUrl: url, requestId: item.request_id, total, inference });
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

  // ---------------------------------------------------------------------------------- start-up
  async function boot() {
    initImageInput();
    initViewer();
    initSnippets();
    $("cancel").addEventListener("click", cancelRequest);
    $("history-refresh").addEventListener("click", refreshHistory);
    $("reset-settings").addEventListener("click", resetForm);

    const form = $("run-form");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      runRequest();
    });
    // Enter submits from any control of the form (selects and switches too); Ctrl/⌘+Enter from anywhere.
    form.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || e.isComposing) return;
      const t = e.target;
      if (t.matches("select, input[type=checkbox]")) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("change", (e) => {
      const wrap = e.target.closest(".field[data-field]");
      if (wrap) unmarkField(wrap.dataset.field);
      updateSnippet();
    });

    try {
      const [{ data: limits }, { data: schema }] = await Promise.all([api("/api/limits", { auth: false }), api("/openapi.json", { auth: false })]);
      S.limits = limits;
      $("dz-limits").textContent = `PNG, JPEG, WebP, GIF… up to ${fmtBytes(limits.max_image_bytes)} and ${Math.round(limits.max_image_pixels / 1e6)} MP`;
      buildForm(schema);
      document.body.dataset.ready = "true";
    } catch (err) {
      $("fields").replaceChildren(el("p", { class: "field-error", text: "Could not load the input schema from the server." }));
      showError(explain(err, "loading the playground"));
      return;
    }
    initKeyBox();
    updateSnippet();
    refreshHistory();
    api("/health", { auth: false })
      .then(({ data }) => ($("server-info").textContent = `bgone ${data.version}`))
      .catch(() => {});
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
