"""One exception hierarchy for every wing.

Each class carries two stable facts: ``error_type``, the string the API returns (``error_type`` in bodies,
the ``x-fal-error-type`` header) and the CLI prints, and ``http_status``, the status the service answers
with. The service renders every :class:`BgoneError` through one handler; a wire protocol may present an
error in its own body shape (fal reports a bad input as a 422 field error), never with its own table of
statuses. Imports nothing.
"""

from __future__ import annotations


class BgoneError(Exception):
    error_type = "bgone_error"
    http_status = 500


class SettingsError(BgoneError, ValueError):
    """A configuration value (flag, variable, config file) that cannot be used; the message names it."""

    error_type = "invalid_setting"


# -- models ----------------------------------------------------------------------------------------
class ModelError(BgoneError):
    error_type = "model_error"


class UnknownModelError(ModelError, LookupError):
    error_type = "unknown_model"
    http_status = 400


class CheckpointError(ModelError):
    """A checkpoint file that cannot be read, or that does not fit any known architecture."""

    error_type = "invalid_checkpoint"


class ModelNotAvailableError(ModelError):
    """Weights that are neither on disk nor downloadable (offline, no network, HTTP error)."""

    error_type = "model_not_available"


class ChecksumMismatchError(ModelError):
    error_type = "checksum_mismatch"


# -- inputs ----------------------------------------------------------------------------------------
class InputError(BgoneError):
    """A request's input that cannot be used: bad file, bad URL, too large, unsupported format."""

    error_type = "invalid_input"
    http_status = 400


class ImageLoadError(InputError):
    """Bytes that are not a readable image (corrupt, truncated, unsupported format)."""

    error_type = "image_load_error"
    http_status = 422


class ImageTooLargeError(InputError):
    """Over a configured limit: bytes, pixels, or animation frames."""

    error_type = "image_too_large"
    http_status = 413


class VideoLoadError(InputError):
    """Bytes that are not a readable video: unknown or broken container, no video stream, an
    undecodable codec."""

    error_type = "video_load_error"
    http_status = 422


class VideoTooLargeError(InputError):
    """A video over a configured limit: bytes, duration, frames, or pixels per frame."""

    error_type = "video_too_large"
    http_status = 413


class FileDownloadError(InputError):
    """A URL that could not be fetched (HTTP error, timeout, refused address, too large)."""

    error_type = "file_download_error"
    http_status = 400


# -- the service -----------------------------------------------------------------------------------
class StorageError(BgoneError):
    """An output that could not be stored (disk full, object store unreachable): the request failed
    through no fault of its input, and retrying later can succeed."""

    error_type = "storage_error"
    http_status = 503


class QueueUnavailableError(BgoneError):
    """The request queue cannot be reached (Redis restarting): nothing was accepted; retry shortly."""

    error_type = "queue_unavailable"
    http_status = 503


class BadRequestError(BgoneError):
    """A request the service cannot take as sent (a malformed header, an empty upload)."""

    error_type = "bad_request"
    http_status = 400


class UnauthorizedError(BgoneError):
    error_type = "unauthorized"
    http_status = 401


class ForbiddenError(BgoneError):
    """A request whose own credentials are refused: a signed URL that is forged, altered, expired or
    already used."""

    error_type = "forbidden"
    http_status = 403


class ProxyTargetError(BgoneError):
    """A server-proxy request (``x-fal-target-url``) whose target is not one of fal's URLs that this
    service answers itself: nothing is fetched."""

    error_type = "invalid_proxy_target"
    http_status = 400


class NotFoundError(BgoneError):
    error_type = "not_found"
    http_status = 404


class RequestTooLargeError(BgoneError):
    """A request body over the server's limit."""

    error_type = "request_too_large"
    http_status = 413


class RequestCancelledError(BgoneError):
    """The client cancelled the request (fal's 499 ``client_cancelled``)."""

    error_type = "client_cancelled"
    http_status = 499


def error_body(exc: BgoneError) -> dict[str, str]:
    """The JSON body every route answers a :class:`BgoneError` with."""
    return {"detail": str(exc), "error_type": exc.error_type}
