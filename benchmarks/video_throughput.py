"""Frames per second and peak memory for a video through bgone, against the official-style image pipeline
run frame by frame on the same clip in the same run.

    .venv/bin/python benchmarks/video_throughput.py                 # throughput; rewrites its RESULTS.md part
    .venv/bin/python benchmarks/video_throughput.py --memory        # peak RSS, 1080p clips of 5 s and 20 s
    .venv/bin/python benchmarks/video_throughput.py --quick         # smoke run, prints only

Rows of the throughput run, every one on the same synthetic clip (H.264 + AAC, made with PyAV: moving
shapes over a gradient) or on ``--clip``, encoded into the same output format (``--format``, default webm)
with the same encoder settings and the source's audio:

- ``official, frame by frame``: the baseline every ratio is against. Each decoded frame goes through the
  image pipeline on its own (batch 1): the official-style network (float32, eager, NCHW, ``grid_sample``
  deformable sampling, concatenated ASPP: ``set_fast_paths(False)``; allocator not tuned), the official
  pre-processing and mask resize, foreground refinement, then the frame is encoded.
- ``bgone remove_video``: :func:`bgone.pipeline.video.remove_video` with a fast-path :class:`Remover` in
  float32 and in the default dtype (``auto``: bfloat16 only where the CPU computes it natively), at each
  ``--batch-sizes`` (frames per forward pass).

Each configuration runs in its own subprocess (the script re-invokes itself with a hidden ``--worker``),
so that its peak RSS (``VmHWM`` from ``/proc/self/status``; ``ru_maxrss`` would carry over exec) is its own.
Times are end to end (decode + inference + refinement + encode) after one untimed warm-up batch at the
operating size; ``network`` is the share of that time inside the network's forward passes, ``refine`` the
share in the per-frame finish (foreground refinement at the frame's full size and alpha). Weights are
seeded stand-ins (real checkpoints cannot be downloaded here; speed and memory do not depend on values).

``--memory`` runs ``remove_video`` with the defaults of ``bgone.remove_video_background`` and the server
(``dtype=auto``, batch 4, webm at quality high, write mode balanced, refinement on) on a 1080p clip of 5 s
and of 20 s (25 fps), each in its own subprocess, and reports the RSS as the clip goes on and the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpu_latency import DEFAULT_OUTPUT, REPO, RESULTS_TITLE, results_section, update_results

sys.path.insert(0, str(REPO / "tests"))

SECTION_TITLE = "## Video (benchmarks/video_throughput.py)"
THROUGHPUT_TITLE = "### Throughput"
MEMORY_TITLE = "### Memory: a 1080p clip of 5 s and of 20 s (--memory)"
RESULT_PREFIX = "BGONE_VIDEO_BENCH "
IDLE_BUSY = 0.25  # a configuration starts when other processes use less than this share of the CPUs
IDLE_SAMPLE_S = 3.0
OTHERS_MAX = 0.05  # a timed pass during which other processes used more of the CPUs than this is repeated
KEY_LISTS = {"lite": "swin_v1_t.json", "general": "swin_v1_l.json"}
MODEL_LABELS = {"lite": "lite (Swin-T)", "general": "general (Swin-L)"}


# ---------------------------------------------------------------------------------------------- helpers


def proc_status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (the kernel reports kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_flags_note() -> str:
    """The instruction sets bf16 and fp32 speed hinge on, as /proc/cpuinfo lists them."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    names = [("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"), ("AMX-BF16", "amx_bf16")]
    return "CPU flags: " + ", ".join(f"{label} {'yes' if flag in flags else 'no'}" for label, flag in names)


def make_clip(path: Path, size: tuple[int, int], seconds: float, rate: int) -> Path:
    """An H.264 + AAC clip of moving shapes over a gradient (the video tests' generator)."""
    from video_clips import write_clip

    frames = max(1, round(seconds * rate))
    return write_clip(path, size=size, frames=frames, rate=rate, audio="aac", options={"preset": "veryfast"})


def make_checkpoint(root: Path, model: str) -> Path:
    """Seeded stand-in weights (seed 0) for ``model``'s architecture, as the other benchmarks use."""
    from safetensors.torch import save_file

    from seeded import seeded_state_dict

    checkpoint = root / f"{model}.safetensors"
    spec = json.loads((REPO / "tests/data/parity/keys" / KEY_LISTS[model]).read_text())["keys"]
    save_file(seeded_state_dict(spec, 0), str(checkpoint))
    return checkpoint


# ---------------------------------------------------------------------------------------------- worker


class _Timer:
    """Seconds spent inside a wrapped callable."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def run_worker(config: dict[str, Any]) -> dict[str, Any]:
    """In the subprocess: load, warm up, run the clip ``runs`` times, report times and memory."""
    import torch
    from PIL import Image

    from bgone.imaging.frames import DecodedImage
    from bgone.imaging.video import VideoEncoding, VideoWriter, open_video
    from bgone.pipeline.remover import RemovalOptions, Remover
    from bgone.pipeline.runtime import ModelCache
    from bgone.pipeline.video import VideoProgress, remove_video
    from bgone.weights.placement import dtype_name

    official = config["pipeline"] == "official"
    remover = Remover(
        config["checkpoint"],
        device="cpu",
        dtype=config["dtype"],
        batch_size=config["batch"],
        progress=False,
        cache=ModelCache(),
    )
    if official:
        remover.net.set_fast_paths(False)
        remover.net.to(memory_format=torch.contiguous_format)
        remover.memory_format = torch.contiguous_format
    rss_after_load = proc_status_mb("VmRSS")
    options = RemovalOptions(operating_resolution=config["resolution"], refine_foreground=True)
    encoding = VideoEncoding(format=config["format"])
    with open_video(config["clip"]) as reader:
        info = reader.info
    # One untimed batch at the operating size (the first pass at a shape sets up oneDNN's primitives).
    warm = [DecodedImage(frames=[Image.new("RGB", (info.width, info.height), (90, 120, 150))])] * config["batch"]
    remover.predict(warm, options.operating_resolution)

    net, finish = _Timer(remover.net), _Timer(remover.finish)
    remover.net, remover.finish = net, finish  # type: ignore[assignment,method-assign]
    runs: list[dict[str, Any]] = []
    rss: list[tuple[int, float]] = []  # (frames done, VmRSS MiB) after every batch, last pass
    out_dir = Path(config["out_dir"])
    cpus = len(os.sched_getaffinity(0))
    # A pass during which other processes used the CPUs is repeated (up to `retries` more passes).
    while sum(not r["disturbed"] for r in runs) < config["runs"] and len(runs) < config["runs"] + config["retries"]:
        net.seconds = finish.seconds = 0.0
        rss.clear()
        target = out_dir / f"pass{len(runs)}.{config['format']}"
        started, cpu_started, machine_started = time.perf_counter(), _cpu_seconds(), machine_cpu_seconds()
        if official:
            # The image pipeline by hand, one frame at a time: decode, predict + refine (batch 1), encode.
            with (
                open_video(config["clip"]) as reader,
                VideoWriter(target, encoding, like=reader.info, audio_from=reader) as writer,
            ):
                for frame in reader.frames():
                    result = remover.process([DecodedImage(frames=[frame.image])], options)[0]
                    writer.write(result.frames[0], frame)
                    rss.append((writer.frames_written, proc_status_mb("VmRSS")))
                frames = writer.frames_written
        else:

            def on_progress(progress: VideoProgress) -> None:
                rss.append((progress.done, proc_status_mb("VmRSS")))

            frames = remove_video(
                remover, config["clip"], target, options=options, encoding=encoding, progress=on_progress
            ).frames
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started
        others = max(0.0, machine_cpu_seconds() - machine_started - cpu) / (seconds * cpus)
        runs.append(
            {
                "seconds": seconds,
                "frames": frames,
                "network_s": net.seconds,
                "finish_s": finish.seconds,
                "cpu_s": cpu,
                "others_cpu": others,
                "disturbed": others > OTHERS_MAX,
            }
        )
        target.unlink(missing_ok=True)
    counted = [r for r in runs if not r["disturbed"]] or runs  # every pass was disturbed: say so in the table
    fastest = min(counted, key=lambda r: r["seconds"])
    total = sum(r["seconds"] for r in counted)
    return {
        **{k: v for k, v in config.items() if k not in ("checkpoint", "out_dir")},
        "dtype": config["dtype"],
        "resolved_dtype": dtype_name(remover.dtype),
        "clip_size": f"{info.width}x{info.height}",
        "clip_seconds": info.duration,
        "frames": fastest["frames"],
        "seconds": fastest["seconds"],
        "fps": fastest["frames"] / fastest["seconds"],
        "passes": runs,
        "disturbed": fastest["disturbed"],
        # Shares and CPU use over the passes counted.
        "network_share": sum(r["network_s"] for r in counted) / total,
        "finish_share": sum(r["finish_s"] for r in counted) / total,
        # CPU time of this process / of other processes over what the usable CPUs offered in the same wall time.
        "cpu_used": sum(r["cpu_s"] for r in counted) / (total * cpus),
        "others_cpu": max(r["others_cpu"] for r in counted),
        "rss_after_load_mb": round(rss_after_load, 1),
        "rss_samples_mb": [(done, round(mb, 1)) for done, mb in rss],
        "peak_rss_mb": round(proc_status_mb("VmHWM"), 1),
        "threads": torch.get_num_threads(),
        "loadavg_1m": os.getloadavg()[0],
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def machine_busy(seconds: float = IDLE_SAMPLE_S) -> float:
    """Fraction of the usable CPUs busy over ``seconds``: other work, when nothing of ours runs."""
    before = machine_cpu_seconds()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / (seconds * len(os.sched_getaffinity(0)))


def wait_until_idle(max_wait: float) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) for other processes to leave the CPUs; (busy fraction, seconds waited)."""
    started = time.perf_counter()
    busy = machine_busy()
    while busy >= IDLE_BUSY and time.perf_counter() - started < max_wait:
        time.sleep(10)
        busy = machine_busy()
    return busy, time.perf_counter() - started


def run_config(config: dict[str, Any], max_wait: float) -> dict[str, Any]:
    """One configuration in a fresh interpreter; the allocator is tuned only for bgone's pipeline."""
    env = {**os.environ, "BGONE_MALLOC_TUNING": "0" if config["pipeline"] == "official" else "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(config)]
    busy, waited = wait_until_idle(max_wait)  # other work on the machine slows every row
    proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**config, "error": tail[0]}
    return {**json.loads(line[len(RESULT_PREFIX) :]), "machine_busy_before": busy, "waited_for_idle_s": waited}


# ---------------------------------------------------------------------------------------------- tables


def _label(row: dict[str, Any]) -> str:
    if row["pipeline"] == "official":
        return "official-style image pipeline, frame by frame (float32)"
    dtype = row.get("resolved_dtype", row["dtype"])
    return f"bgone remove_video, {'auto → ' + dtype if row['dtype'] == 'auto' else dtype}"


def throughput_table(rows: list[dict[str, Any]], model: str) -> list[str]:
    base = next((r["fps"] for r in rows if r["pipeline"] == "official" and "fps" in r), None)
    table = [
        "| model | clip | operating res. | pipeline | batch | frames | seconds | frames/s | network | refine "
        "| vs official | peak RSS MB | CPU: this / others |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            table.append(
                f"| {MODEL_LABELS[model]} | | {r['resolution']}² | {_label(r)} | {r['batch']} | error: "
                f"{r['error']} | | | | | | | |"
            )
            continue
        ratio = f"{r['fps'] / base:.2f}x" if base else "n/a"
        busy = " (disturbed)" if r["disturbed"] else ""
        table.append(
            f"| {MODEL_LABELS[model]} | {r['clip_size']}, {r['clip_seconds']:.3g} s | {r['resolution']}² | "
            f"{_label(r)} | {r['batch']} | {r['frames']} | {r['seconds']:.1f} | {r['fps']:.2f} | "
            f"{r['network_share']:.0%} | {r['finish_share']:.0%} | {ratio} | {r['peak_rss_mb']:.0f} | "
            f"{r['cpu_used']:.0%} / {r['others_cpu']:.0%}{busy} |"
        )
    return table


def _rss_at(row: dict[str, Any], fraction: float) -> float:
    samples = row["rss_samples_mb"]
    want = fraction * row["frames"]
    return next((mb for done, mb in samples if done >= want), samples[-1][1])


def memory_table(rows: list[dict[str, Any]], model: str) -> list[str]:
    table = [
        "| model | clip | frames | operating res. | dtype | batch | seconds | frames/s | RSS after load MB "
        "| RSS at 25% / 50% / 75% / end MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            table.append(f"| {MODEL_LABELS[model]} | error: {r['error']} | | | | | | | | | |")
            continue
        marks = " / ".join(f"{_rss_at(r, f):.0f}" for f in (0.25, 0.5, 0.75, 1.0))
        table.append(
            f"| {MODEL_LABELS[model]} | {r['clip_size']}, {r['clip_seconds']:.3g} s | {r['frames']} | "
            f"{r['resolution']}² | auto → {r['resolved_dtype']} | {r['batch']} | {r['seconds']:.0f} | "
            f"{r['fps']:.2f} | {r['rss_after_load_mb']:.0f} | {marks} | {r['peak_rss_mb']:.0f} |"
        )
    return table


def speed_note(rows: list[dict[str, Any]]) -> str:
    """Where the time of bgone's fastest row goes, from its own measurements."""
    done = [r for r in rows if r["pipeline"] == "video" and "fps" in r]
    if not done:
        return "no bgone row finished"
    best = max(done, key=lambda r: r["fps"])
    per_frame = best["seconds"] / best["frames"]
    rest = 1 - best["network_share"] - best["finish_share"]
    note = (
        f"What limits the speed: in the fastest bgone row ({_label(best)}, batch {best['batch']}: "
        f"{per_frame:.2f} s a frame) the network takes {best['network_share']:.0%} of the time, the per-frame "
        f"finish (foreground refinement at the full {best['clip_size']} frame, NumPy on the CPU) "
        f"{best['finish_share']:.0%}, decode + resizing + encoding the rest ({rest:.0%})"
    )
    same = sorted((r for r in done if r["dtype"] == best["dtype"]), key=lambda r: r["batch"])
    if len(same) > 1 and same[0]["batch"] != same[-1]["batch"]:
        gain = f"{same[-1]['fps'] / same[0]['fps'] - 1:+.0%}".replace("+0%", "±0%").replace("-0%", "±0%")
        note += (
            f". Batch {same[-1]['batch']} over batch {same[0]['batch']}: {gain} frames/s, as only the "
            "forward pass is batched; refinement and the codecs work frame by frame"
        )
    return note


# ---------------------------------------------------------------------------------------------- RESULTS.md


def _split_subsections(path: Path) -> dict[str, str]:
    """The ``### `` parts of this script's section in ``path`` (title line → its text), to keep the part a
    run did not measure."""
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION_TITLE), None)
    if start is None:
        return {}
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    fenced = False
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"^#{1,2} ", line):
            break
        if not fenced and line.startswith("### "):
            current = parts.setdefault(line.strip(), [])
        if current is not None:
            current.append(line)
    return {title: "\n".join(text).rstrip("\n") + "\n" for title, text in parts.items()}


def write_results(path: Path, throughput: str | None, memory: str | None) -> None:
    kept = _split_subsections(path)
    parts = [
        throughput or kept.get(THROUGHPUT_TITLE),
        memory or kept.get(MEMORY_TITLE),
    ]
    body = "\n".join(p.rstrip("\n") + "\n" for p in parts if p)
    update_results(path, f"{SECTION_TITLE}\n\n{body}")
    text = path.read_text()
    assert text.startswith(RESULTS_TITLE), path


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lite", choices=sorted(KEY_LISTS), help="seeded stand-in architecture")
    p.add_argument("--resolution", type=int, default=512, help="operating resolution (square side, multiple of 32)")
    p.add_argument("--clip", type=Path, default=None, help="a video to use instead of the synthetic clip")
    p.add_argument("--size", default="1280x720", help="synthetic clip size WxH (throughput run)")
    p.add_argument("--seconds", type=float, default=2.0, help="synthetic clip length (throughput run)")
    p.add_argument("--rate", type=int, default=25, help="synthetic clip frame rate")
    p.add_argument("--format", default="webm", choices=("webm", "mp4", "mov", "gif"), help="output format")
    p.add_argument("--batch-sizes", default="1,4", help="frames per forward pass for bgone's rows")
    p.add_argument("--dtypes", default="float32,auto", help="dtypes of bgone's rows (the baseline is float32)")
    p.add_argument("--runs", type=int, default=2, help="timed passes over the clip per configuration (fastest)")
    p.add_argument("--memory", action="store_true", help="the memory run: 1080p clips of --memory-seconds")
    p.add_argument("--memory-size", default="1920x1080")
    p.add_argument("--memory-seconds", default="5,20", help="clip lengths of the memory run")
    p.add_argument("--memory-batch", type=int, default=4, help="batch of the memory run (the API's default)")
    p.add_argument("--retries", type=int, default=2, help="extra passes allowed to replace disturbed ones")
    p.add_argument("--max-wait", type=float, default=300, help="seconds to wait for an idle machine per configuration")
    p.add_argument("--json", action="store_true", help="print one JSON object per configuration, not the table")
    p.add_argument("--output", type=Path, default=None, help=f"results file to update (default {DEFAULT_OUTPUT})")
    p.add_argument("--quick", action="store_true", help="320x180, 8 frames, 256², 1 run; writes no file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.seconds, args.resolution, args.runs = "320x180", 8 / args.rate, 256, 1
        args.memory_size, args.memory_seconds = "320x180", "0.32,1.28"
    return args


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker is not None:
        print(RESULT_PREFIX + json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return 0
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    common = {"resolution": args.resolution, "format": args.format, "runs": args.runs}
    throughput_part = memory_part = None
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bgone-video-bench-") as tmp:
        root = Path(tmp)
        checkpoint = str(make_checkpoint(root, args.model))
        base = {**common, "checkpoint": checkpoint, "out_dir": tmp, "retries": args.retries}
        if not args.memory:
            clip = args.clip or make_clip(root / "clip.mp4", _size(args.size), args.seconds, args.rate)
            configs = [{**base, "clip": str(clip), "pipeline": "official", "dtype": "float32", "batch": 1}]
            configs += [
                {**base, "clip": str(clip), "pipeline": "video", "dtype": dtype, "batch": int(batch)}
                for dtype in args.dtypes.split(",")
                for batch in args.batch_sizes.split(",")
            ]
            rows = []
            for config in configs:
                rows.append(run_config(config, args.max_wait))
                print(_progress_line(rows[-1]), file=sys.stderr, flush=True)
            results += rows
            table = throughput_table(rows, args.model)
            source = (
                f"`{args.clip.name}`"
                if args.clip
                else (
                    f"a synthetic {args.size} clip of {args.seconds:g} s at {args.rate} fps (H.264 + AAC, moving "
                    "shapes over a gradient, made with PyAV)"
                )
            )
            notes = [
                cpu_flags_note(),
                f"{MODEL_LABELS[args.model]}, seeded stand-in weights; {source}; operating resolution "
                f"{args.resolution}²; output {args.format} at quality high, write mode balanced, with the "
                "source's audio; refinement on; each configuration in a fresh subprocess; "
                f"{args.runs} timed pass{'es' if args.runs != 1 else ''} over the clip after one untimed warm-up "
                "batch: seconds and frames/s of the fastest pass, shares over the passes counted; each configuration "
                "starts once the machine is idle "
                f"(under {IDLE_BUSY:.0%} busy over {IDLE_SAMPLE_S:g} s)",
                "Baseline (vs official = 1.00x): each decoded frame through the image pipeline on its own "
                "(`Remover.process`, batch 1) with the official-style network (float32, eager, NCHW, "
                "`set_fast_paths(False)`, allocator not tuned), then encoded into the same format as bgone's rows",
                "frames/s = frames / wall seconds end to end (decode + inference + refinement + encode); network = "
                "share of that time in the network's forward passes; refine = share in the per-frame finish "
                "(foreground refinement at full frame size, alpha); peak RSS = VmHWM of the configuration's process; "
                f"CPU = CPU time of this process / of all other processes over (wall time x usable CPUs) in the timed "
                f"passes; a pass in which other processes used over {OTHERS_MAX:.0%} was repeated (up to "
                f"{args.retries} more passes) and left out; '(disturbed)' marks a row with no undisturbed pass",
                speed_note(rows),
                "Ratios compare the rows of this table, measured in one run on the machine above; sections "
                "of this file from other machines are not comparable figure for figure",
            ]
            throughput_part = results_section(THROUGHPUT_TITLE, notes, table, argv)
        else:
            rows = []
            for seconds in (float(s) for s in args.memory_seconds.split(",")):
                clip = make_clip(root / f"clip-{seconds:g}s.mp4", _size(args.memory_size), seconds, args.rate)
                config = {**base, "clip": str(clip), "pipeline": "video", "dtype": "auto", "batch": args.memory_batch}
                rows.append(run_config({**config, "runs": 1, "retries": 0}, args.max_wait))
                print(_progress_line(rows[-1]), file=sys.stderr, flush=True)
                clip.unlink()
            results += rows
            table = memory_table(rows, args.model)
            ok = [r for r in rows if "peak_rss_mb" in r]
            notes = [
                cpu_flags_note(),
                f"`remove_video` with the defaults of `bgone.remove_video_background` (dtype auto, "
                f"batch {args.memory_batch}, {args.format} at quality high, write mode balanced, refinement on, "
                "the source's audio) at operating resolution "
                f"{args.resolution}² to keep the run short on this CPU; synthetic {args.memory_size} clips at "
                f"{args.rate} fps; {MODEL_LABELS[args.model]}, seeded stand-in weights; each clip in a fresh "
                "subprocess; RSS = VmRSS after each batch, peak = VmHWM of the whole process (model load included)",
            ]
            if len(ok) >= 2:
                short, long = min(ok, key=lambda r: r["frames"]), max(ok, key=lambda r: r["frames"])
                growth = long["peak_rss_mb"] - short["peak_rss_mb"]
                flat = abs(growth) <= max(50.0, 0.05 * short["peak_rss_mb"])
                notes.append(
                    f"Peak RSS for the {long['clip_size']} clip of {long['clip_seconds']:.3g} s ({long['frames']} "
                    f"frames): **{long['peak_rss_mb']:.0f} MB**; for {short['clip_seconds']:.3g} s "
                    f"({short['frames']} frames): {short['peak_rss_mb']:.0f} MB ({growth:+.0f} MB for "
                    f"{long['frames'] / short['frames']:.0f}x the frames): "
                    + ("memory does not grow with the clip's length" if flat else "**memory grows with the clip**")
                )
            memory_part = results_section(MEMORY_TITLE, notes, table, argv)
    if args.json:
        for row in results:
            print(json.dumps(row))
    else:
        print(throughput_part or memory_part)
    if output is not None:
        write_results(output, throughput_part, memory_part)
        print(f"wrote {output}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


def _progress_line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['pipeline']} {row['dtype']} batch {row['batch']}: error {row['error']}"
    return (
        f"{_label(row)} batch {row['batch']}: {row['frames']} frames in {row['seconds']:.1f} s "
        f"({row['fps']:.2f} fps), peak RSS {row['peak_rss_mb']:.0f} MB; passes (s, others' CPU): "
        + ", ".join(f"{p['seconds']:.1f} {p['others_cpu']:.0%}" for p in row["passes"])
    )


if __name__ == "__main__":
    raise SystemExit(main())
