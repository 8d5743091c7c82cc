"""A wire protocol as an adapter: parse a request once into a typed :class:`WorkItem`, give its batch key,
shape the pipeline's result into the protocol's response body, and present failures in its body shape.

The routes hand an adapter the request body FastAPI has validated (:meth:`ProtocolAdapter.plan`); the
worker hands it the JSON the queue carried (:meth:`ProtocolAdapter.parse`). Everything between, queueing,
batching, decoding, the network, storing, is shared and knows no protocol. Statuses come from the
exceptions themselves (:mod:`bgone.errors`); an adapter only chooses the body's shape.

No torch here: the API-only node (``--role api``) plans and queues requests without loading PyTorch.
"""

from __future__ import annotations

import logging
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from bgone.errors import BgoneError, error_body
from bgone.imaging.frames import DecodedImage
from bgone.imaging.video_formats import VideoEncoding
from bgone.pipeline.options import RemovalOptions

logger = logging.getLogger("bgone.worker")

RequestT = TypeVar("RequestT", bound=BaseModel)


@dataclass(frozen=True)
class WorkItem(Generic[RequestT]):
    """One request as the worker runs it."""

    request: RequestT  # the protocol's typed input, for rendering the result
    model: str  # registry name or checkpoint path
    source_url: str  # the image or video: http(s) URL, data URI, or this server's own /files/ URL of an upload
    options: RemovalOptions
    owned_keys: tuple[str, ...] = ()  # stored inputs that belong to the request and go with it
    video: VideoEncoding | None = None  # a video request: how to encode its output

    @property
    def batch_key(self) -> str:
        """Images with equal keys can share a forward pass: same model, same operating resolution. A video
        batches its own frames, so it shares nothing ("" is never batched)."""
        return "" if self.video is not None else f"{self.model}|{self.options.operating_resolution}"


@dataclass(frozen=True)
class StoredOutput:
    key: str
    url: str


class Outputs(Protocol):
    """Where an adapter puts a request's output files: stored, and addressed as the client will fetch them."""

    def save(self, data: bytes, file_name: str, content_type: str) -> StoredOutput: ...


@dataclass(frozen=True)
class Failure:
    """A failed request as its protocol answers it: the status and body the result replays."""

    status: int
    body: Any
    error_type: str
    message: str


class ProtocolAdapter(ABC, Generic[RequestT]):
    """One wire protocol. Subclasses set the class attributes and implement :meth:`plan` and :meth:`render`."""

    endpoint: ClassVar[str]  # the job endpoint the queue records, e.g. "fal-ai/birefnet/v2"
    app_id: ClassVar[str]  # owner/alias in status, result and cancel URLs, e.g. "fal-ai/birefnet"
    input_model: ClassVar[type[BaseModel]]
    accepts_webhooks: ClassVar[bool] = True

    @abstractmethod
    def plan(self, request: RequestT) -> WorkItem[RequestT]:
        """The work item for a validated request: model, image, options. No I/O."""

    def parse(self, payload: dict[str, Any]) -> WorkItem[RequestT]:
        """The work item for the JSON a job carries (validated once, here)."""
        return self.plan(self.input_model.model_validate(payload))  # type: ignore[arg-type]

    def keeps_history(self, request: RequestT) -> bool:
        """Whether the request and its result appear in the history (``/api/history``)."""
        return True

    def finish(
        self, item: WorkItem[RequestT], decoded: DecodedImage, result: Any, *, refine_device: object = None
    ) -> Any:
        """The protocol's own steps after the pipeline's, given the decoded input (nothing by default)."""
        return result

    @abstractmethod
    def render(self, item: WorkItem[RequestT], result: Any, outputs: Outputs) -> dict[str, Any]:
        """The response body for a finished result, storing its files through ``outputs``."""

    def failure(self, exc: BaseException, request_id: str = "") -> Failure:
        """How this protocol answers an exception (:func:`default_failure` unless overridden)."""
        return default_failure(exc, request_id)


def default_failure(exc: BaseException, request_id: str = "") -> Failure:
    """A :class:`BgoneError` with its own status and body ``{"detail", "error_type"}``; anything else a 500
    ``internal_error`` (logged with its traceback: it is a bug, not the client's doing)."""
    if isinstance(exc, BgoneError):
        return Failure(exc.http_status, error_body(exc), exc.error_type, str(exc))
    logger.error("request %s failed:\n%s", request_id, "".join(traceback.format_exception(exc)))
    message = "Internal Server Error"
    return Failure(500, {"detail": message, "error_type": "internal_error"}, "internal_error", message)
