/* The playground's shared state: what the server told us (limits, input schema), the chosen image,
   the request being prepared or watched, and the result on show. Plain data: no DOM, no behaviour.
   State that only one module uses lives in that module (the view in viewer.js, the timer and logs in status.js). */

export const S = {
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
  result: null, // {output, input, meta} of the result on show
};
