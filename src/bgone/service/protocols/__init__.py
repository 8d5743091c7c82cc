"""Wire protocols as adapters, one module each (``fal``, ``rembg``), behind :class:`ProtocolAdapter`.

:func:`adapters_for` is the explicit endpoint → adapter map that the routes and the worker share; the next
protocol is one new adapter module, an entry here, and its routes.
"""

from __future__ import annotations

from bgone.service.protocols.base import ProtocolAdapter
from bgone.service.protocols.fal import FalV1Adapter, FalV2Adapter, FalV2VideoAdapter
from bgone.service.protocols.rembg import RembgAdapter
from bgone.settings import ServerSettings

ADAPTER_TYPES: tuple[type[ProtocolAdapter], ...] = (FalV1Adapter, FalV2Adapter, FalV2VideoAdapter, RembgAdapter)


def adapters_for(settings: ServerSettings) -> dict[str, ProtocolAdapter]:
    """Every protocol this server speaks, by the job endpoint its requests are queued under."""
    return {adapter.endpoint: adapter(settings) for adapter in ADAPTER_TYPES}  # type: ignore[call-arg]
