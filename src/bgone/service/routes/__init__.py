"""The HTTP routes, one module per resource: ``fal`` (fal's run and queue-submit endpoints), ``requests``
(status, stream, result, cancel of any queued request), ``files`` (fal's upload flow and stored files),
``rembg`` (rembg's ``/api/remove``), ``ops`` (health, readiness, metrics, history, limits) and
``playground`` (the web UI). Routes parse, call :mod:`bgone.service.submission`, and answer; errors
are raised, never rendered here."""
