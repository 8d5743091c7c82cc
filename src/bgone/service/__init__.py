"""The HTTP service: fal's wire protocol (so fal's own clients work unmodified), rembg's API, files and the
playground, over a durable queue and a file store.

``app`` assembles it; ``routes/`` has one router per resource; ``protocols/`` one adapter per wire protocol;
``submission`` queues requests and answers from the queue; ``worker`` runs them; ``jobs/`` (SQLite, Redis)
and ``storage/`` (local files, S3) are the backends behind complete protocols; ``webhooks``, ``auth``,
``urls``, ``uploads``, ``body_limit``, ``error_handlers`` and ``prometheus`` are the rest of the edge.
Imports ``nn``, ``weights``, ``imaging`` and ``pipeline``; only the worker loads PyTorch."""
