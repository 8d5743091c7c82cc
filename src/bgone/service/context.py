"""Everything a route needs, in one object built by :func:`bgone.service.app.create_app` and kept on
``app.state.service``: settings, the job store, the file storage, the protocol adapters, webhooks,
metrics, upload tokens, the signing keys and, on nodes that run models, the inference worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from bgone.service.auth import UploadTokens
from bgone.service.jobs import JobStore
from bgone.service.prometheus import Metrics
from bgone.service.protocols import ProtocolAdapter
from bgone.service.signing import SigningKeys
from bgone.service.storage import Storage
from bgone.service.webhooks import WebhookSender
from bgone.settings import ServerSettings

if TYPE_CHECKING:  # the worker brings PyTorch; API-only nodes never import it
    from bgone.service.worker import InferenceWorker


@dataclass
class Service:
    settings: ServerSettings
    store: JobStore
    storage: Storage
    adapters: dict[str, ProtocolAdapter]
    webhooks: WebhookSender
    metrics: Metrics
    upload_tokens: UploadTokens
    signing: SigningKeys  # signs webhooks (published at /.well-known/jwks.json) and short-lived URLs
    worker: InferenceWorker | None = None  # None on an API-only node (--role api)

    def notify(self) -> None:
        """A request was queued or cancelled: wake this node's worker now rather than at its next poll."""
        if self.worker is not None:
            self.worker.notify()


def get_service(request: Request) -> Service:
    """A route dependency: the service the request arrived at."""
    return request.app.state.service
