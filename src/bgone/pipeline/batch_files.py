"""Many files from the command line: expand inputs (images and videos), plan outputs, run them.

Images go through the network in batches with decode and encode workers beside it; videos run one at a
time, their frames batched (:func:`bgone.pipeline.video.remove_video`). Every output is written under a
temporary name and renamed when complete, so ``skip_existing`` resumes an interrupted run."""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

from bgone.errors import BgoneError, ImageLoadError
from bgone.imaging.encode import extension_for
from bgone.imaging.fetch import fetch_to_file
from bgone.imaging.frames import DecodedImage
from bgone.imaging.video_formats import VIDEO_EXTENSIONS, VIDEO_FORMATS, VideoEncoding, is_video_name
from bgone.pipeline.options import RemovalOptions
from bgone.pipeline.remover import RemovalResult, Remover
from bgone.pipeline.video import VideoProgress, remove_video
from bgone.settings import DEFAULT_VIDEO_LIMITS

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".avif", ".tif", ".tiff", ".bmp", ".heic", ".heif"}
)
STDIO = "-"
DEFAULT_OUTPUT_DIR = "bgone-output"


@dataclass(frozen=True)
class InputItem:
    source: str  # a file path, a URL, or "-" for stdin
    relative: Path  # where its output goes, relative to the output folder (suffix replaced later)
    error: str | None = None  # an input that matched nothing


@dataclass(frozen=True)
class Job:
    item: InputItem
    output: Path | None  # None: standard output
    mask_output: Path | None = None

    @property
    def is_video(self) -> bool:
        return self.output is not None and is_video_name(self.item.source)


@dataclass
class Summary:
    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.done) / self.seconds if self.seconds else 0.0


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://", "data:"))


def _url_name(url: str, index: int) -> Path:
    if url.startswith("data:"):
        return Path(f"data-{index}")
    stem = Path(urlparse(url).path).stem
    return Path(stem or f"download-{index}")


def expand_inputs(inputs: Sequence[str]) -> list[InputItem]:
    """Files, folders (recursively, images and videos only), globs, URLs and "-" (stdin), in a stable order."""
    items: list[InputItem] = []
    folders = [Path(i) for i in inputs if not _is_url(i) and i != STDIO and Path(i).is_dir()]
    prefix_folders = len(folders) > 1  # several folders: keep them apart in the output tree
    for index, text in enumerate(inputs):
        if text == STDIO:
            items.append(InputItem(STDIO, Path("stdin")))
        elif _is_url(text):
            items.append(InputItem(text, _url_name(text, index)))
        elif Path(text).is_dir():
            root = Path(text)
            wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
            for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted):
                relative = path.relative_to(root)
                items.append(InputItem(str(path), Path(root.resolve().name) / relative if prefix_folders else relative))
        elif Path(text).is_file():
            items.append(InputItem(text, Path(Path(text).name)))
        else:
            matches = sorted(glob.glob(text, recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            if not files:
                items.append(InputItem(text, Path(text), error="no such file, folder or matching glob"))
            items.extend(InputItem(m, Path(Path(m).name)) for m in files)
    return items


def plan_jobs(
    items: Sequence[InputItem],
    output: str | None,
    fmt: str,
    *,
    write_mask: bool = False,
    video_format: str | None = None,
) -> list[Job]:
    """Map inputs to output paths: a folder mirrors the input tree; names never collide or overwrite inputs.

    Images get ``fmt``'s extension and a PNG mask beside them; videos get ``video_format``'s (default: the
    single output file's extension, else webm) and a mask video of the same format."""
    image_extension = extension_for(fmt)
    if output == STDIO or (output is None and [i.source for i in items] == [STDIO]):
        if len(items) != 1:
            raise ValueError("only one input can be written to standard output")
        if is_video_name(items[0].source):
            raise ValueError("a video cannot be written to standard output: name an output file with -o")
        return [Job(items[0], None)]
    single_file = (
        output is not None
        and len(items) == 1
        and not Path(output).is_dir()
        and not output.endswith(("/", os.sep))
        and Path(output).suffix != ""
    )
    if single_file:
        target = Path(output)  # type: ignore[arg-type]
        if is_video_name(items[0].source) and target.suffix.lower().lstrip(".") not in VIDEO_FORMATS:
            raise ValueError(f"{items[0].source} is a video: write it to a .webm, .mov, .mp4 or .gif file")
        mask_suffix = target.suffix if is_video_name(items[0].source) else ".png"
        return [Job(items[0], target, target.with_name(target.stem + ".mask" + mask_suffix) if write_mask else None)]
    video_extension = "." + (video_format or "webm")
    out_dir = Path(output or DEFAULT_OUTPUT_DIR)
    inputs = {Path(i.source).resolve() for i in items if not _is_url(i.source) and i.source != STDIO}
    extensions = [video_extension if is_video_name(i.source) else image_extension for i in items]
    wanted = [out_dir / i.relative.with_suffix(ext) for i, ext in zip(items, extensions, strict=True)]
    counts: dict[Path, int] = {}
    for path in wanted:
        counts[path] = counts.get(path, 0) + 1
    jobs = []
    for item, path, extension in zip(items, wanted, extensions, strict=True):
        if counts[path] > 1 or path.resolve() in inputs:
            # photo.jpg and photo.png in one folder: photo_jpg.png and photo_png.png
            tag = item.relative.suffix.lstrip(".") or "out"
            path = out_dir / item.relative.parent / f"{item.relative.stem}_{tag}{extension}"
        mask_suffix = extension if extension == video_extension and is_video_name(item.source) else ".png"
        jobs.append(Job(item, path, path.with_name(path.stem + ".mask" + mask_suffix) if write_mask else None))
    return jobs


def _read_source(item: InputItem, remover: Remover) -> DecodedImage:
    if item.error:
        raise ImageLoadError(f"{item.source}: {item.error}")
    if item.source == STDIO:
        return remover.load(sys.stdin.buffer.read())
    decoded = remover.load(item.source)
    return decoded


def _write(job: Job, result: RemovalResult, fmt: str) -> None:
    data = result.encode(fmt)
    if job.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    job.output.parent.mkdir(parents=True, exist_ok=True)
    partial = job.output.with_name(job.output.name + ".partial")
    partial.write_bytes(data)
    partial.replace(job.output)  # a run killed mid-write leaves no half file behind for --skip-existing
    if job.mask_output is not None:
        job.mask_output.write_bytes(result.encode_mask("png"))


def run_jobs(
    jobs: Sequence[Job],
    remover: Remover,
    options: RemovalOptions,
    fmt: str,
    *,
    workers: int = 2,
    skip_existing: bool = False,
    on_progress: Callable[[Job, str], None] | None = None,
    video_encoding: VideoEncoding | None = None,
    on_video_progress: Callable[[Job, VideoProgress], None] | None = None,
) -> Summary:
    """Images: decode ahead and encode behind on ``workers`` threads while the model runs on this one.
    Videos (after the images): one at a time, ``video_encoding`` with each job's own output format."""
    summary = Summary()
    started = time.perf_counter()
    todo = []
    for job in jobs:
        exists = (
            job.output is not None and job.output.exists() and (job.mask_output is None or job.mask_output.exists())
        )
        if skip_existing and exists:
            summary.skipped.append(job)
            if on_progress:
                on_progress(job, "skipped")
        else:
            todo.append(job)
    videos = [job for job in todo if job.is_video]
    todo = [job for job in todo if not job.is_video]

    def report_failure(job: Job, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, BgoneError | ValueError | OSError) else f"{type(exc).__name__}: {exc}"
        summary.failed.append((job.item.source, reason.splitlines()[0] if reason else type(exc).__name__))
        if on_progress:
            on_progress(job, "failed")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        decoding: Iterator[tuple[Job, Future[DecodedImage]]] = (
            (job, pool.submit(_read_source, job.item, remover)) for job in todo
        )
        # Keep a bounded number of decodes in flight so memory stays flat on huge folders.
        window: list[tuple[Job, Future[DecodedImage]]] = []
        writes: list[tuple[Job, Future[None]]] = []
        exhausted = False
        while not exhausted or window:
            while not exhausted and len(window) < remover.batch_size + max(1, workers):
                nxt = next(decoding, None)
                if nxt is None:
                    exhausted = True
                else:
                    window.append(nxt)
            batch: list[tuple[Job, DecodedImage]] = []
            while window and len(batch) < remover.batch_size:
                job, future = window.pop(0)
                try:
                    batch.append((job, future.result()))
                except Exception as exc:
                    report_failure(job, exc)
            if not batch:
                continue
            try:
                results = remover.process([decoded for _, decoded in batch], options)
            except Exception as exc:
                for job, _ in batch:
                    report_failure(job, exc)
                continue
            for (job, _), result in zip(batch, results, strict=True):
                writes.append((job, pool.submit(_write, job, result, fmt)))
            writes = _collect(writes, summary, report_failure, on_progress, wait=False)
        _collect(writes, summary, report_failure, on_progress, wait=True)
    encoding = video_encoding or VideoEncoding()
    for job in videos:
        _settle(
            job,
            lambda job=job: _run_video(job, remover, options, encoding, on_video_progress),
            summary,
            report_failure,
            on_progress,
        )
    summary.seconds = time.perf_counter() - started
    return summary


def _run_video(
    job: Job,
    remover: Remover,
    options: RemovalOptions,
    encoding: VideoEncoding,
    on_progress: Callable[[Job, VideoProgress], None] | None,
) -> None:
    """One video to its output file (and mask video), downloading a URL to a temporary file first."""
    assert job.output is not None  # plan_jobs never sends a video to standard output
    encoding = replace(encoding, format=job.output.suffix.lower().lstrip("."))
    job.output.parent.mkdir(parents=True, exist_ok=True)
    progress = (lambda p: on_progress(job, p)) if on_progress else None
    with contextlib.ExitStack() as stack:
        source: str | Path = job.item.source
        if _is_url(job.item.source):
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bgone-video-")))
            source = fetch_to_file(job.item.source, folder / (Path(urlparse(job.item.source).path).name or "video"), max_bytes=DEFAULT_VIDEO_LIMITS.max_bytes)
        remove_video(
            remover, source, job.output, options=options, encoding=encoding, mask_output=job.mask_output, progress=progress
        )


def _collect(
    writes: list[tuple[Job, Future[None]]],
    summary: Summary,
    report_failure: Callable[[Job, BaseException], None],
    on_progress: Callable[[Job, str], None] | None,
    *,
    wait: bool,
) -> list[tuple[Job, Future[None]]]:
    pending = []
    for job, future in writes:
        if not wait and not future.done():
            pending.append((job, future))
            continue
        _settle(job, future.result, summary, report_failure, on_progress)
    return pending


def _settle(
    job: Job,
    finish: Callable[[], object],
    summary: Summary,
    report_failure: Callable[[Job, BaseException], None],
    on_progress: Callable[[Job, str], None] | None,
) -> None:
    """Run a job's last step: a failure is reported, a success counted as done and announced."""
    try:
        finish()
    except Exception as exc:
        report_failure(job, exc)
    else:
        summary.done.append(job)
        if on_progress:
            on_progress(job, "done")
