"""rembg's server API (``rembg s``): its parameters, its model names, its mask options and PNG answers.

The routes (:mod:`bgone.service.routes.rembg`) turn ``GET /api/remove?url=…`` and ``POST /api/remove``
(multipart ``file``) into a :class:`RembgInput`, a job on the internal endpoint :data:`RembgAdapter.endpoint`
(never a fal route), so the queue, batching, URL rules, limits, metrics and crash recovery apply unchanged.
The worker runs the network with refinement off and the mask as output; :meth:`RembgAdapter.finish` then
applies rembg's options (``ppm`` → ``om`` → ``a`` → colours → ``bgc``), and the PNG is stored for the
route to read back. An upload is stored first and belongs to the request (deleted with it).
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, ClassVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from bgone.errors import UnknownModelError
from bgone.imaging.encode import encode_image
from bgone.imaging.frames import DecodedImage
from bgone.pipeline.options import RembgOptions, RemovalOptions
from bgone.pipeline.resolution import DEFAULT_NATIVE, Resolution
from bgone.service.protocols.base import Outputs, ProtocolAdapter, WorkItem
from bgone.service.protocols.fal_schemas import ImageFile
from bgone.settings import ServerSettings
from bgone.weights.registry import REGISTRY

logger = logging.getLogger("bgone.api")

DEFAULT_FAL_MODEL = "General Use (Light)"  # without `model`, the rembg routes use what this maps to on /v2
MAX_EXTRAS_SIDE = 2560  # an operating side asked for in `extras`: the zoo's largest native side (Light 2K)

DESCRIPTIONS = {
    "model": "rembg model name: birefnet-general, birefnet-general-lite, birefnet-portrait, birefnet-dis, "
    "birefnet-hrsod, birefnet-cod, birefnet-massive (or a bgone model name). Default: the server's "
    "'General Use (Light)' model.",
    "a": "Alpha matting: sure foreground (mask > af) and sure background (mask < ab), eroded by ae, become "
    "opaque and transparent; the model's soft alpha is kept between them, and colours are re-estimated.",
    "af": "Trimap foreground threshold (0-255).",
    "ab": "Trimap background threshold (0-255).",
    "ae": "Erosion size of the trimap's sure regions (0-255).",
    "om": "Return only the mask (greyscale PNG).",
    "ppm": "Post-process the mask: opening, Gaussian blur (sigma 2), threshold at 127 (a hard 0/255 mask).",
    "bgc": "Background colour R,G,B or R,G,B,A (0-255) under the cut-out.",
    "extras": 'JSON; bgone reads {"operating_resolution": "2048x2048", "refine_foreground": false}; other keys '
    "and invalid JSON are ignored.",
}


class RembgParams(BaseModel):
    """rembg's request parameters, the same for ``GET`` (query) and ``POST`` (form fields)."""

    model: str | None = Field(default=None, description=DESCRIPTIONS["model"])
    a: bool = Field(default=False, description=DESCRIPTIONS["a"])
    af: int = Field(default=240, ge=0, le=255, description=DESCRIPTIONS["af"])
    ab: int = Field(default=10, ge=0, le=255, description=DESCRIPTIONS["ab"])
    ae: int = Field(default=10, ge=0, le=255, description=DESCRIPTIONS["ae"])
    om: bool = Field(default=False, description=DESCRIPTIONS["om"])
    ppm: bool = Field(default=False, description=DESCRIPTIONS["ppm"])
    bgc: str | None = Field(default=None, description=DESCRIPTIONS["bgc"])
    extras: str | None = Field(default=None, description=DESCRIPTIONS["extras"])


class RembgInput(BaseModel):
    """The job payload behind the rembg routes (internal: built by the routes, never sent by clients)."""

    model_config = ConfigDict(extra="ignore", title="RembgInput")

    image_url: str = Field(description="http(s) URL, this server's own /files/ URL of an upload, or a data URI")
    model: str = Field(description="registry name or checkpoint path, resolved by the API from the rembg name")
    rembg_model: str | None = Field(default=None, description="the model name the client asked for")
    operating_resolution: str | None = Field(default=None, description="WxH, dynamic[:N], or None (native)")
    mask: RembgOptions = Field(default_factory=RembgOptions, description="rembg's mask options (a, af, ab, ae, om, ppm, bgc)")
    input_key: str | None = Field(default=None, description="storage key of the uploaded input, deleted with the job")


def _invalid(loc: list[str], message: str) -> RequestValidationError:
    """A 422 in FastAPI's shape (what rembg answers for bad parameters), naming the field."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error", "input": None}])


def resolve_rembg_model(settings: ServerSettings, name: str | None) -> str:
    """A rembg model name → what the worker loads (registry name, or checkpoint path from the server's
    model map). Also accepted: a fal /v2 name and a bgone registry name or alias; never a file path.
    Without a name: what ``General Use (Light)`` maps to in the server's model map."""
    if name is None or not name.strip():
        return settings.model_names("v2")[DEFAULT_FAL_MODEL]
    text = name.strip()
    rembg_names = {k.lower(): v for k, v in settings.model_names("rembg").items()}
    if text.lower() in rembg_names:
        return rembg_names[text.lower()]
    fal_names = settings.model_names("v2")
    if text in fal_names:
        return fal_names[text]
    variant = REGISTRY.find(text)
    if variant is not None:
        return variant.name
    raise UnknownModelError(
        f"model {text!r} is not available in bgone, which serves BiRefNet models only (rembg's u2net, isnet, "
        f"silueta, sam and other sessions are not provided). Use one of: "
        f"{', '.join(sorted(settings.model_names('rembg')))}; or a bgone model name (`bgone models list`), "
        "or leave `model` out for the server's default."
    )


def parse_bgcolor(value: str | None, loc: list[str]) -> tuple[int, int, int, int] | None:
    """rembg's ``bgc``: ``R,G,B`` or ``R,G,B,A``, integers 0..255 (alpha 255 when left out)."""
    if value is None or not value.strip():
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (3, 4) or not all(0 <= n <= 255 for n in numbers):
        raise _invalid(loc, f"bgc must be R,G,B or R,G,B,A with integers 0..255, got {value[:60]!r}")
    return (numbers[0], numbers[1], numbers[2], numbers[3] if len(numbers) == 4 else 255)


def parse_extras(value: str | None, loc: list[str]) -> dict[str, Any]:
    """rembg's ``extras`` JSON. Invalid JSON, or JSON that is not an object, is ignored as rembg ignores
    it; of the keys, bgone honours ``operating_resolution`` and ``refine_foreground`` and ignores the rest."""
    if value is None or not value.strip():
        return {}
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):  # JSONDecodeError, and ints beyond Python's digit limit
        logger.info("rembg extras ignored: not valid JSON")
        return {}
    if not isinstance(data, dict):
        logger.info("rembg extras ignored: not a JSON object")
        return {}
    honoured: dict[str, Any] = {}
    if data.get("operating_resolution") is not None:
        resolution = data["operating_resolution"]
        try:
            if not isinstance(resolution, str | int) or isinstance(resolution, bool):
                raise ValueError("expected a string such as '2048x2048', a number, or 'dynamic'")
            parsed = Resolution.parse(resolution)
            if parsed.size is not None and max(parsed.size) > MAX_EXTRAS_SIDE:
                raise ValueError(f"each side can be at most {MAX_EXTRAS_SIDE}")
        except ValueError as exc:
            raise _invalid(loc, f"extras.operating_resolution: {exc}") from None
        honoured["operating_resolution"] = None if parsed.is_native else str(parsed)
    if "refine_foreground" in data:
        if not isinstance(data["refine_foreground"], bool):
            raise _invalid(loc, "extras.refine_foreground must be true or false")
        honoured["refine_foreground"] = data["refine_foreground"]
    return honoured


def build_input(
    settings: ServerSettings, params: RembgParams, *, image_url: str, bgc_loc: list[str], extras_loc: list[str]
) -> RembgInput:
    """The job payload for a request's parameters (``bgc_loc``/``extras_loc``: where those came from, for
    error messages). Raises 422 validation errors and :class:`UnknownModelError` (400)."""
    bgcolor = parse_bgcolor(params.bgc, bgc_loc)
    honoured = parse_extras(params.extras, extras_loc)
    model = params.model.strip() if params.model and params.model.strip() else None
    mask = RembgOptions(
        alpha_matting=params.a,
        foreground_threshold=params.af,
        background_threshold=params.ab,
        erode_size=params.ae,
        only_mask=params.om,
        post_process_mask=params.ppm,
        bgcolor=bgcolor,
        refine_foreground=honoured.get("refine_foreground", True),
    )
    return RembgInput(
        image_url=image_url,
        model=resolve_rembg_model(settings, model),
        rembg_model=model,
        operating_resolution=honoured.get("operating_resolution"),
        mask=mask,
    )


class RembgAdapter(ProtocolAdapter[RembgInput]):
    endpoint: ClassVar[str] = "bgone/rembg"
    app_id: ClassVar[str] = "bgone/rembg"
    input_model: ClassVar[type[BaseModel]] = RembgInput
    accepts_webhooks: ClassVar[bool] = False

    def __init__(self, settings: ServerSettings) -> None:
        self.max_side = settings.max_operating_side

    def plan(self, request: RembgInput) -> WorkItem[RembgInput]:
        variant = REGISTRY.find(request.model)
        native = DEFAULT_NATIVE if variant is None else variant.resolution
        resolution = Resolution.parse(request.operating_resolution).capped(self.max_side, native)
        return WorkItem(
            request=request,
            model=request.model,
            source_url=request.image_url,
            # The pipeline stops at the alpha (times any input alpha); finish() does the rest.
            options=RemovalOptions(operating_resolution=resolution, refine_foreground=False, mask_only=True),
            owned_keys=(request.input_key,) if request.input_key else (),
        )

    def keeps_history(self, request: RembgInput) -> bool:
        return False

    def finish(
        self, item: WorkItem[RembgInput], decoded: DecodedImage, result: Any, *, refine_device: object = None
    ) -> Any:
        # Imported here, not above: it brings PyTorch (colour refinement), which only workers load.
        from bgone.pipeline.rembg_mask import rembg_cutout

        result.frames = [
            rembg_cutout(frame, mask, item.request.mask, refine_device=refine_device)
            for frame, mask in zip(decoded.frames, result.masks, strict=True)
        ]
        return result

    def render(self, item: WorkItem[RembgInput], result: Any, outputs: Outputs) -> dict[str, Any]:
        """Always PNG, as rembg; a still image keeps its mode (RGBA, or "L" for a mask) like rembg's."""
        if len(result.frames) == 1:
            buffer = io.BytesIO()
            result.frames[0].save(buffer, "PNG")
            data = buffer.getvalue()
        else:  # an animation: APNG, every frame
            data = encode_image(result.frames, "png", durations=result.durations, loop=result.loop)
        stem = (result.name or "rembg").replace("/", "_")[:80]
        name = f"{stem}-{'mask' if item.request.mask.only_mask else 'output'}.png"
        stored = outputs.save(data, name, "image/png")
        width, height = result.frames[0].size
        image = ImageFile(
            url=stored.url, content_type="image/png", file_name=name, file_size=len(data), width=width, height=height
        )
        return {"image": image.model_dump(), "storage_key": stored.key}
