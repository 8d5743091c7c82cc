// The stock @fal-ai/client against a running bgone, configured as a web app configures it
// (`proxyUrl` pointing at bgone's /api/fal/proxy; `when: "always"` because Node is not a browser).
// Every scenario runs in this one process; what happened is printed as one `REPORT {json}` line for
// tests/service/test_fal_js_client.py to check. Environment: BGONE_URL, BGONE_KEY, BGONE_PHOTO (a PNG),
// BGONE_CLIP (a short MP4).
import { createHash, randomFillSync } from "node:crypto";
import { readFile } from "node:fs/promises";

import { ApiError, ValidationError, createFalClient, fal } from "@fal-ai/client";

const base = process.env.BGONE_URL;
const key = process.env.BGONE_KEY;
const photo = await readFile(process.env.BGONE_PHOTO);
const clip = await readFile(process.env.BGONE_CLIP);
const proxyUrl = { url: `${base}/api/fal/proxy`, when: "always" };

// Every request the client makes, as it makes it (a pass-through `fetch`, the client's documented hook).
const sent = [];
async function recordingFetch(input, init = {}) {
  const headers = new Headers(init.headers);
  sent.push({
    method: init.method ?? "GET",
    url: String(input),
    target: headers.get("x-fal-target-url"),
    authorization: headers.get("authorization"),
  });
  return fetch(input, init);
}

fal.config({ credentials: key, proxyUrl, fetch: recordingFetch });

const report = {};
const pngBlob = () => new Blob([photo], { type: "image/png" });
const dataUri = `data:image/png;base64,${photo.toString("base64")}`;
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

function describe(error) {
  return {
    name: error.name,
    isApiError: error instanceof ApiError,
    isValidationError: error instanceof ValidationError,
    status: error.status,
    message: error.message,
    body: error.body,
    requestId: error.requestId,
    fieldErrors: error instanceof ValidationError ? error.fieldErrors : undefined,
    modelErrors: error instanceof ValidationError ? error.getFieldErrors("model") : undefined,
  };
}

async function failure(promise) {
  try {
    await promise;
  } catch (error) {
    return describe(error);
  }
  return null;
}

function watcher() {
  const seen = { statuses: [], logs: [] };
  seen.onQueueUpdate = (update) => {
    if (seen.statuses.at(-1) !== update.status) seen.statuses.push(update.status);
    if (Array.isArray(update.logs)) seen.logs = update.logs.map((entry) => entry.message);
  };
  return seen;
}

async function timed(name, scenario) {
  const started = Date.now();
  report[name] = await scenario();
  report[name].ms = Date.now() - started;
}

// subscribe: a Blob input (uploaded through the proxy's storage flow), logs, queue updates (polling).
await timed("subscribe", async () => {
  const seen = watcher();
  let enqueued = null;
  const result = await fal.subscribe("fal-ai/birefnet/v2", {
    input: { image_url: pngBlob(), output_mask: true },
    logs: true,
    pollInterval: 200,
    onEnqueue: (requestId) => (enqueued = requestId),
    onQueueUpdate: seen.onQueueUpdate,
  });
  return { data: result.data, requestId: result.requestId, enqueued, statuses: seen.statuses, logs: seen.logs };
});

// subscribe in streaming mode: the status arrives as server-sent events (…/status/stream) through the proxy.
await timed("subscribeStreaming", async () => {
  const seen = watcher();
  const result = await fal.subscribe("fal-ai/birefnet/v2", {
    input: { image_url: new File([photo], "photo.png", { type: "image/png" }) },
    mode: "streaming",
    logs: true,
    onQueueUpdate: seen.onQueueUpdate,
  });
  return { data: result.data, requestId: result.requestId, statuses: seen.statuses, logs: seen.logs };
});

// stream: POST …/stream, consumed as server-sent events.
await timed("stream", async () => {
  const stream = await fal.stream("fal-ai/birefnet/v2", { input: { image_url: pngBlob(), output_mask: true } });
  const events = [];
  for await (const event of stream) events.push(event);
  const done = await stream.done();
  const invalid = await fal.stream("fal-ai/birefnet/v2", { input: { image_url: dataUri, model: "Nope" } });
  return { events, done, requestId: stream.requestId, error: await failure(invalid.done()) };
});

// run (sync), on fal-ai/birefnet (v1) with an uploaded Blob.
await timed("run", async () => {
  const result = await fal.run("fal-ai/birefnet", { input: { image_url: pngBlob() } });
  return { data: result.data, requestId: result.requestId };
});

// The queue by hand: submit, status (with and without logs), result.
await timed("queue", async () => {
  const submitted = await fal.queue.submit("fal-ai/birefnet/v2", { input: { image_url: dataUri } });
  const requestId = submitted.request_id;
  const first = await fal.queue.status("fal-ai/birefnet/v2", { requestId, logs: false });
  const completed = await fal.queue.subscribeToStatus("fal-ai/birefnet/v2", { requestId, pollInterval: 100 });
  const withLogs = await fal.queue.status("fal-ai/birefnet/v2", { requestId, logs: true });
  const result = await fal.queue.result("fal-ai/birefnet/v2", { requestId });
  return { submitted, first: first.status, completed, withLogs, result };
});

// cancel: a low-priority request queued behind several others is still waiting when cancelled.
await timed("cancel", async () => {
  const input = { image_url: dataUri };
  const ahead = [];
  for (let i = 0; i < 6; i++) ahead.push((await fal.queue.submit("fal-ai/birefnet/v2", { input })).request_id);
  const victim = (await fal.queue.submit("fal-ai/birefnet/v2", { input, priority: "low" })).request_id;
  const cancelled = await fal.queue.cancel("fal-ai/birefnet/v2", { requestId: victim });
  const final = await fal.queue.subscribeToStatus("fal-ai/birefnet/v2", { requestId: victim, pollInterval: 100 });
  const resultError = await failure(fal.queue.result("fal-ai/birefnet/v2", { requestId: victim }));
  const again = await failure(fal.queue.cancel("fal-ai/birefnet/v2", { requestId: victim }));
  let aheadDone = 0;
  for (const requestId of ahead) {
    await fal.queue.subscribeToStatus("fal-ai/birefnet/v2", { requestId, pollInterval: 100 });
    if ((await fal.queue.result("fal-ai/birefnet/v2", { requestId })).data.image) aheadDone++;
  }
  return { cancelled: cancelled ?? null, final: final.status, resultError, again, aheadDone };
});

// A 422 as the client's ValidationError, with the field it is about.
await timed("validation", async () => ({
  error: await failure(fal.run("fal-ai/birefnet/v2", { input: { image_url: dataUri, model: "Nope" } })),
}));

// The video endpoint: an uploaded clip, logs with progress, a mask video.
await timed("video", async () => {
  const seen = watcher();
  const result = await fal.subscribe("fal-ai/birefnet/v2/video", {
    input: { video_url: new Blob([clip], { type: "video/mp4" }), output_mask: true },
    logs: true,
    pollInterval: 200,
    onQueueUpdate: seen.onQueueUpdate,
  });
  return { data: result.data, statuses: seen.statuses, logs: seen.logs };
});

// A target bgone does not answer (another fal app) and a wrong key: errors, nothing fetched.
await timed("refused", async () => ({
  error: await failure(fal.run("fal-ai/flux/dev", { input: { prompt: "a cat" } })),
}));
await timed("wrongKey", async () => {
  const other = createFalClient({ credentials: "not-the-key", proxyUrl });
  return { error: await failure(other.run("fal-ai/birefnet/v2", { input: { image_url: dataUri } })) };
});

// fal.storage.upload: a small file in one PUT, then a file just over the client's 90 MiB threshold, which
// it sends in 10 MiB parts to {upload_url}/{n} and completes.
await timed("upload", async () => {
  const url = await fal.storage.upload(pngBlob());
  const stored = Buffer.from(await (await fetch(url)).arrayBuffer());
  return { url, same: sha256(stored) === sha256(photo) };
});
await timed("multipart", async () => {
  const big = randomFillSync(new Uint8Array(90 * 1024 * 1024 + 1));
  const before = sent.length;
  const url = await fal.storage.upload(new Blob([big], { type: "video/mp4" }));
  const requests = sent.slice(before).map(({ method, url: to, target, authorization }) => ({
    method,
    path: new URL(to).pathname,
    target,
    authorization: authorization !== null,
  }));
  const stored = Buffer.from(await (await fetch(url)).arrayBuffer());
  return { url, size: stored.length, same: sha256(stored) === sha256(big), requests };
});

report.sent = sent.map(({ method, url, target, authorization }) => ({
  method,
  path: new URL(url).pathname,
  target,
  authorization,
}));
console.log(`REPORT ${JSON.stringify(report)}`);
