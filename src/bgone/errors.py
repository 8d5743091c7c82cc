"""One exception hierarchy; ``error_type`` is the stable string the API returns and the CLI prints."""

from __future__ import annotations


class BgoneError(Exception):
    error_type = "bgone_error"


class ModelError(BgoneError):
    error_type = "model_error"


class UnknownModelError(ModelError, LookupError):
    error_type = "unknown_model"


class CheckpointError(ModelError):
    """A checkpoint file that cannot be read, or that does not fit any known architecture."""

    error_type = "invalid_checkpoint"


class ModelNotAvailableError(ModelError):
    """Weights that are neither on disk nor downloadable (offline, no network, HTTP error)."""

    error_type = "model_not_available"


class ChecksumMismatchError(ModelError):
    error_type = "checksum_mismatch"


class InputError(BgoneError):
    """A request's input that cannot be used: bad file, bad URL, too large, unsupported format."""

    error_type = "invalid_input"


class ImageLoadError(InputError):
    """Bytes that are not a readable image (corrupt, truncated, unsupported format)."""

    error_type = "image_load_error"


class ImageTooLargeError(InputError):
    """Over a configured limit: bytes, pixels, or animation frames."""

    error_type = "image_too_large"


class FileDownloadError(InputError):
    """A URL that could not be fetched (HTTP error, timeout, refused address, too large)."""

    error_type = "file_download_error"


class StorageError(BgoneError):
    """An output that could not be stored (disk full, object store unreachable): the request failed
    through no fault of its input, and retrying later can succeed."""

    error_type = "storage_error"
