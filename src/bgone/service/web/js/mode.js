/* The Image / Video switch: which endpoint the playground runs and which input schema the form is built
   from, the input widget's words for each, and the form values of each mode kept across switches.
   Listeners (main.js) refresh what depends on the mode; the widget itself (files, URLs) is image.js's. */
import { ENDPOINTS } from "./api.js";
import { S } from "./state.js";
import { $, toast, fmtBytes, fmtSeconds } from "./util.js";
import { buildForm, formValues, setFormValues } from "./form.js";

export const MODES = {
  image: {
    label: "Image",
    endpoint: ENDPOINTS.image,
    output: "image", // the result's file field
    a: "an image",
    placeholder: "https://example.com/photo.jpg",
    missing: "Choose an image, or enter an image URL.",
    formats: (l) => `PNG, JPEG, WebP, GIF… up to ${fmtBytes(l.max_image_bytes)} and ${Math.round(l.max_image_pixels / 1e6)} MP`,
  },
  video: {
    label: "Video",
    endpoint: ENDPOINTS.video,
    output: "video",
    a: "a video",
    placeholder: "https://example.com/clip.mp4",
    missing: "Choose a video, or enter a video URL.",
    // Video limits only where the server tells them (/api/limits); else the server's 4xx explains.
    formats: (l) =>
      [
        "MP4, WebM, MOV, MKV…",
        l.max_video_bytes ? `up to ${fmtBytes(l.max_video_bytes)}` : null,
        l.max_video_seconds ? `and ${fmtSeconds(l.max_video_seconds)}` : null,
      ]
        .filter(Boolean)
        .join(" "),
  },
};

const saved = {}; // mode -> its form values when it was left
const listeners = [];
/** fn(mode) runs after every switch, once the form of the new mode is built. */
export function onModeChange(fn) {
  listeners.push(fn);
}

/** Whether the server's /openapi.json has the mode's endpoint (a server without videos has no switch). */
const offered = (mode) => !!(S.schema && S.schema.paths && S.schema.paths[`/queue/${MODES[mode].endpoint}`]);

/** Switch to "image" or "video" (rebuilding the form); false when refused (a run is being prepared, or the
   server does not run that kind). */
export function setMode(mode) {
  if (!MODES[mode]) return false;
  if (mode === S.mode) return true;
  if (S.mode && !offered(mode)) {
    toast(`This server does not run ${mode}s.`, true);
    return false;
  }
  if (S.run) {
    toast("Wait for the current upload to finish.", true);
    return false;
  }
  const carry = S.mode ? formValues() : {};
  if (S.mode) saved[S.mode] = carry;
  S.mode = mode;
  S.endpoint = MODES[mode].endpoint;
  buildForm(S.schema, S.endpoint);
  // The mode's own values from last time, and the settings both share as they were just now.
  setFormValues({ ...saved[mode], ...carry });
  showMode(mode);
  for (const fn of listeners) fn(mode);
  return true;
}

function showMode(mode) {
  const m = MODES[mode];
  document.body.dataset.mode = mode;
  $("mode-switch").hidden = !Object.keys(MODES).every(offered);
  for (const radio of document.querySelectorAll("#mode-switch [role=radio]")) {
    const on = radio.dataset.mode === mode;
    radio.setAttribute("aria-checked", String(on));
    radio.tabIndex = on ? 0 : -1;
  }
  $("endpoint").textContent = m.endpoint;
  $("source-name").textContent = m.label;
  $("dz-what").textContent = `Drop ${m.a}`;
  $("url-label").textContent = `or ${m.a} URL`;
  $("image-url").placeholder = m.placeholder;
  $("empty-what").textContent = m.a;
  $("drop-what").textContent = `Drop the ${mode} anywhere`;
  $("clear-image").setAttribute("aria-label", `Remove the ${mode}`);
  if (S.limits) $("dz-limits").textContent = m.formats(S.limits);
}

/** The switch: a radio group (arrow keys move and choose, as the background swatches do). */
export function initModeSwitch() {
  const radios = [...document.querySelectorAll("#mode-switch [role=radio]")];
  const steps = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
  for (const radio of radios) {
    radio.addEventListener("click", () => setMode(radio.dataset.mode));
    radio.addEventListener("keydown", (e) => {
      if (!(e.key in steps)) return;
      e.preventDefault();
      const next = radios[(radios.indexOf(radio) + steps[e.key] + radios.length) % radios.length];
      if (setMode(next.dataset.mode)) next.focus();
    });
  }
}
