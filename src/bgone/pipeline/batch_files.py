"""Many images from the command line: expand inputs, plan outputs, run with decode/encode workers."""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bgone.errors import BgoneError, ImageLoadError
from bgone.imaging.encode import extension_for
from bgone.imaging.frames import DecodedImage
from bgone.pipeline.options import RemovalOptions
from bgone.pipeline.remover import RemovalResult, Remover

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
    """Files, folders (recursively, images only), globs, URLs and "-" (stdin), in a stable order."""
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
            for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
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


def plan_jobs(items: Sequence[InputItem], output: str | None, fmt: str, *, write_mask: bool = False) -> list[Job]:
    """Map inputs to output paths: a folder mirrors the input tree; names never collide or overwrite inputs."""
    extension = extension_for(fmt)
    if output == STDIO or (output is None and [i.source for i in items] == [STDIO]):
        if len(items) != 1:
            raise ValueError("only one input can be written to standard output")
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
        return [Job(items[0], target, target.with_name(target.stem + ".mask.png") if write_mask else None)]
    out_dir = Path(output or DEFAULT_OUTPUT_DIR)
    inputs = {Path(i.source).resolve() for i in items if not _is_url(i.source) and i.source != STDIO}
    wanted = [out_dir / i.relative.with_suffix(extension) for i in items]
    counts: dict[Path, int] = {}
    for path in wanted:
        counts[path] = counts.get(path, 0) + 1
    jobs = []
    for item, path in zip(items, wanted, strict=True):
        if counts[path] > 1 or path.resolve() in inputs:
            # photo.jpg and photo.png in one folder: photo_jpg.png and photo_png.png
            tag = item.relative.suffix.lstrip(".") or "out"
            path = out_dir / item.relative.parent / f"{item.relative.stem}_{tag}{extension}"
        jobs.append(Job(item, path, path.with_name(path.stem + ".mask.png") if write_mask else None))
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
) -> Summary:
    """Decode ahead and encode behind on ``workers`` threads while the model runs on this one."""
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
    summary.seconds = time.perf_counter() - started
    return summary


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
        try:
            future.result()
        except Exception as exc:
            report_failure(job, exc)
        else:
            summary.done.append(job)
            if on_progress:
                on_progress(job, "done")
    return pending
