"""Run by test_fal_client.py in a fresh interpreter: the stock fal_client reads its hosts at import.

Usage: python fal_client_script.py MODE IMAGE_PATH [BASE_URL]   (MODE: tls | http)
With FAL_TEST_VIDEO=path it also runs fal-ai/birefnet/v2/video (subscribe with logs; upload_file over http).
Prints one JSON line with what each call returned.
"""

from __future__ import annotations

import json
import os
import sys

MODE, IMAGE = sys.argv[1], sys.argv[2]

import fal_client  # noqa: E402

if MODE == "http":
    # The documented override for plain HTTP: the client's URL constants, set after import.
    import fal_client.client as c

    base = sys.argv[3]
    c.RUN_URL_FORMAT = f"{base}/"
    c.QUEUE_URL_FORMAT = f"{base}/queue/"
    c.REST_URL = base
    c.CDN_URL = base

report: dict[str, object] = {}
data_uri = fal_client.encode_file(IMAGE)
args = {"image_url": data_uri, "output_mask": True}

report["run"] = fal_client.run("fal-ai/birefnet/v2", arguments=args)

logs: list[str] = []
updates: list[str] = []


def on_update(update: object) -> None:
    updates.append(type(update).__name__)
    for log in getattr(update, "logs", None) or []:
        logs.append(log["message"])


report["subscribe"] = fal_client.subscribe(
    "fal-ai/birefnet/v2", arguments=args, with_logs=True, on_queue_update=on_update
)
report["subscribe_updates"] = sorted(set(updates))
report["subscribe_logs"] = logs

handle = fal_client.submit("fal-ai/birefnet", arguments={"image_url": data_uri})
report["submit_id"] = handle.request_id
report["status"] = type(handle.status(with_logs=True)).__name__
report["result"] = handle.get()
report["module_status"] = type(fal_client.status("fal-ai/birefnet", handle.request_id, with_logs=False)).__name__
report["module_result"] = fal_client.result("fal-ai/birefnet", handle.request_id)

# Cancel: a low-priority request queued behind several others is still waiting when cancelled.
ahead = [fal_client.submit("fal-ai/birefnet/v2", arguments=args) for _ in range(6)]
victim = fal_client.submit("fal-ai/birefnet/v2", arguments=args, priority="low")
victim.cancel()
try:
    victim.get()
except fal_client.client.FalClientHTTPError as exc:
    report["cancelled"] = {"status": exc.status_code, "message": exc.message}
report["ahead_done"] = sum(1 for h in ahead if "image" in h.get())

try:
    fal_client.run("fal-ai/birefnet/v2", arguments={"image_url": data_uri, "model": "Nope"})
except fal_client.client.FalClientHTTPError as exc:
    report["validation_error"] = {"status": exc.status_code, "message": exc.message}

try:
    fal_client.run("fal-ai/birefnet/v2", arguments={"image_url": "data:image/png;base64,AAAA"})
except fal_client.client.FalClientHTTPError as exc:
    report["bad_image"] = {"status": exc.status_code}

if MODE == "http":
    url = fal_client.upload_file(IMAGE)
    report["upload_url"] = url
    report["run_uploaded"] = fal_client.run("fal-ai/birefnet/v2", arguments={"image_url": url, "sync_mode": True})

VIDEO = os.environ.get("FAL_TEST_VIDEO")
if VIDEO:
    video_args = {"video_url": fal_client.encode_file(VIDEO), "video_output_type": "VP9 (.webm)", "output_mask": True}
    video_logs: list[str] = []

    def on_video_update(update: object) -> None:
        video_logs.extend(log["message"] for log in getattr(update, "logs", None) or [])

    report["video"] = fal_client.subscribe(
        "fal-ai/birefnet/v2/video", arguments=video_args, with_logs=True, on_queue_update=on_video_update
    )
    report["video_logs"] = video_logs
    if MODE == "http":
        uploaded = fal_client.upload_file(VIDEO)
        report["video_upload_url"] = uploaded
        report["video_uploaded"] = fal_client.run("fal-ai/birefnet/v2/video", arguments={"video_url": uploaded})

print("REPORT " + json.dumps(report))
