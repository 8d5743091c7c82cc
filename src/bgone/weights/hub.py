"""Getting the weights: find a checkpoint on this machine, or download it (Hugging Face hub, then the
GitHub release), verify its published checksum, and explain what to do when neither works.

Where to look comes from :mod:`bgone.settings` (``BGONE_MODEL_DIR``, the Hugging Face cache, offline
mode). A machine without network access fails at once, with a message that names the file to put where;
nothing here retries a host that does not even resolve.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

from bgone import settings
from bgone.errors import ChecksumMismatchError, ModelNotAvailableError
from bgone.weights.variants import Variant


def local_candidates(variant: Variant) -> list[Path]:
    if variant.path:
        return [Path(variant.path)]
    directory = settings.model_dir()
    names = [variant.local_filename, f"{variant.name}.safetensors", f"{variant.name}.pth"]
    if variant.release_filename:
        names.append(variant.release_filename)
    if variant.hf_repo:
        names.append(f"{variant.hf_repo.split('/')[-1]}.safetensors")
    return [directory / n for n in dict.fromkeys(names)]


def _hf_cached(variant: Variant) -> Path | None:
    if not variant.hf_repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        variant.hf_repo, variant.hf_filename, revision=variant.hf_revision, cache_dir=settings.hf_cache_dir()
    )
    return Path(found) if isinstance(found, str) else None


def find_local(variant: Variant) -> Path | None:
    """A checkpoint for ``variant`` already on this machine (model dir or Hugging Face cache)."""
    for candidate in local_candidates(variant):
        if candidate.is_file():
            return candidate
    return _hf_cached(variant)


def missing_weights_message(variant: Variant, reason: str) -> str:
    directory = settings.model_dir()
    lines = [f"weights for model {variant.name!r} ({variant.title}) are not on this machine: {reason}.", ""]
    lines.append(f"To use it without network access, download one of these files into {directory}/ :")
    if variant.hf_url:
        lines.append(f"    {variant.local_filename}  <- {variant.hf_url}")
        if variant.sha256:
            lines.append(f"    (SHA-256 {variant.sha256})")
    if variant.release_url:
        lines.append(f"    {variant.release_filename}  <- {variant.release_url}")
    lines.append(
        "Or copy it into the Hugging Face cache on a machine with network (`bgone models pull "
        f"{variant.name}`, then copy ~/.cache/huggingface), set BGONE_MODEL_DIR to use another folder, or pass "
        "the file's path wherever a model is named (bgone.load_model('/path/to/file.pth'), --model /path/to/file.pth)."
    )
    return "\n".join(lines)


def sha256_of(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _verified_cache_file() -> Path:
    return settings.model_dir() / ".verified.json"


def verify_checksum(variant: Variant, path: Path, *, force: bool = False) -> bool | None:
    """True if the file matches the recorded SHA-256, None if none is recorded for a file of this
    kind; raises on mismatch. A match is remembered by (path, size, mtime): big files hash once."""
    # The recorded hash is that of the Hugging Face file; a release .pth in its place has another.
    if not variant.sha256 or path.suffix.lower() != Path(variant.hf_filename).suffix.lower():
        return None
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"
    cache_file = _verified_cache_file()
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}
    if not force and cache.get(key) == variant.sha256:
        return True
    _check(variant, path)
    cache[key] = variant.sha256
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return True


def _check(variant: Variant, path: Path) -> bool:
    actual = sha256_of(path)
    if actual != variant.sha256:
        raise ChecksumMismatchError(
            f"{path} does not match the published checksum of {variant.name!r}: SHA-256 {actual}, expected "
            f"{variant.sha256}. The file is corrupt, truncated, or a different checkpoint; delete it and "
            "run `bgone models pull` again, or pass the file's path directly to use it as a custom checkpoint."
        )
    return True


def fetch_weights(variant: Variant, *, progress: bool = True, verify: bool = True) -> Path:
    """Return a local path to the weights of ``variant``, downloading them if needed and allowed."""
    local = find_local(variant)
    if local is not None:
        if verify:
            verify_checksum(variant, local)
        return local
    if variant.path:
        raise ModelNotAvailableError(f"the checkpoint registered as {variant.name!r} is missing: {variant.path}")
    if settings.offline():
        raise ModelNotAvailableError(
            missing_weights_message(variant, "offline mode (HF_HUB_OFFLINE / BGONE_OFFLINE) is on")
        )
    errors: list[str] = []
    if variant.hf_repo:
        if (problem := _unresolvable(variant.hf_url)) is not None:  # type: ignore[arg-type]
            errors.append(f"Hugging Face: {problem}")
        else:
            try:
                path = _download_from_hub(variant, progress=progress)
            except Exception as exc:
                errors.append(f"Hugging Face ({variant.hf_repo}): {type(exc).__name__}: {exc}".splitlines()[0])
            else:
                if verify:
                    verify_checksum(variant, path)
                return path
    if variant.release_url:
        if (problem := _unresolvable(variant.release_url)) is not None:
            errors.append(f"GitHub release: {problem}")
        else:
            target = settings.model_dir() / variant.release_filename  # type: ignore[operator]
            try:
                return download_url(variant.release_url, target, progress=progress)
            except Exception as exc:
                errors.append(f"GitHub release: {type(exc).__name__}: {exc}".splitlines()[0])
    raise ModelNotAvailableError(missing_weights_message(variant, "download failed (" + "; ".join(errors) + ")"))


def _unresolvable(url: str) -> str | None:
    """Why ``url``'s host cannot be reached at all (its name does not resolve: no network, no DNS), or None.

    Checked before a download so that an offline machine gets its answer at once instead of after the
    hub client's retries and back-off (about 20 s per source)."""
    host = urlsplit(url).hostname or ""
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return f"cannot resolve {host} ({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}); is this machine offline?"
    return None


def _download_from_hub(variant: Variant, *, progress: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if not progress:
        disable_progress_bars()
    try:
        # The shared HF cache: resumable, deduplicated with other tools, honours HF_HOME/HF_HUB_OFFLINE.
        return Path(
            hf_hub_download(
                variant.hf_repo,  # type: ignore[arg-type]
                variant.hf_filename,
                revision=variant.hf_revision,
                cache_dir=settings.hf_cache_dir(),
            )
        )
    finally:
        if not progress:
            enable_progress_bars()


def download_url(url: str, target: Path, *, progress: bool = True, timeout: float = 30.0) -> Path:
    """Resumable HTTP download to ``target`` (a ``.part`` file is kept between attempts)."""
    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as response:
        if response.status_code == 416:  # already complete
            part.rename(target)
            return target
        response.raise_for_status()
        if start and response.status_code != 206:
            start = 0  # server ignored the range: start over
        total = int(response.headers.get("content-length", 0)) + start
        with (
            part.open("ab" if start else "wb") as fh,
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                disable=not progress,
            ) as bar,
        ):
            task = bar.add_task(target.name, total=total or None, completed=start)
            for block in response.iter_bytes(1 << 20):
                fh.write(block)
                bar.update(task, advance=len(block))
    part.rename(target)
    return target
