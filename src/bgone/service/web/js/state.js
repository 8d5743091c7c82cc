/* The playground's shared state: what the server told us (limits, the OpenAPI document, the input schema of
   the current mode), the chosen input, the request being prepared or watched, and the result on show.
   Plain data: no DOM, no behaviour. State that only one module uses lives in that module (the view in
   viewer.js, the timer and logs in status.js, the saved form values of each mode in mode.js). */

export const S = {
  limits: null,
  models: null, // /api/models: what each fal model name runs on this server
  schema: null, // /openapi.json, kept to build the form of either mode
  mode: null, // "image" or "video": which endpoint the form and Run use (mode.js)
  endpoint: null,
  props: {}, // resolved JSON schema of each input field
  order: [],
  required: [],
  sourceKey: "image_url", // the input field the image / video widget fills (image_url, video_url)
  sourceKind: "image", // what that field takes: its schema's ui.field ("image" or "video")
  file: null,
  fileUrl: null,
  uploads: new WeakMap(), // File -> access_url, so a re-run does not upload again
  job: null, // the request being watched
  run: null, // the run being prepared (upload / submit), for Cancel before a request id exists
  result: null, // {output, input, meta} of the result on show
};
