"""fal's ``fal-ai/birefnet`` (v1), ``fal-ai/birefnet/v2`` and ``fal-ai/birefnet/v2/video``: model enums to
checkpoints, the resolution enum to an operating resolution, results as fal ``File`` objects, bad inputs as
422 field errors.

Operating resolutions, as the hosted endpoints run them: Dynamic at the image's own size, the longer side
capped at the chosen resolution; Light 2K at its native 2560x1440 (turned for portraits); every other
model at the chosen square. The server's ``max_operating_side`` caps all of them (Light 2K then runs at the
capped square).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from bgone.errors import InputError
from bgone.imaging.colors import parse_color
from bgone.imaging.data_uri import to_data_uri
from bgone.imaging.encode import encode_image, mime_for
from bgone.imaging.video_formats import MIME_TYPES as VIDEO_MIME_TYPES
from bgone.imaging.video_formats import VideoEncoding
from bgone.pipeline.options import RemovalOptions
from bgone.pipeline.resolution import Resolution
from bgone.service.protocols.base import Failure, Outputs, ProtocolAdapter, WorkItem
from bgone.service.protocols.fal_schemas import (
    APP_ID,
    BirefnetInput,
    BirefnetOutput,
    BirefnetV2Input,
    BirefnetV2VideoInput,
    BirefnetVideoOutput,
    ImageFile,
    ModelEnumV2,
    VideoFile,
    VideoOutputType,
)
from bgone.settings import ServerSettings

FalInput = BirefnetInput | BirefnetV2Input


class FalAdapter(ProtocolAdapter[FalInput]):
    """Both image versions; ``version`` picks the schema and the model names ("v1" or "v2")."""

    app_id: ClassVar[str] = APP_ID
    version: ClassVar[str]
    output_model: ClassVar[type[BaseModel]] = BirefnetOutput
    source_field: ClassVar[str] = "image_url"  # the input field a bad input is reported on

    def __init__(self, settings: ServerSettings) -> None:
        self.models = settings.model_names(self.version)
        self.max_side = settings.max_operating_side

    def plan(self, request: FalInput) -> WorkItem[FalInput]:
        return WorkItem(
            request=request,
            model=self.models[str(request.model)],
            source_url=request.image_url,
            options=RemovalOptions(
                operating_resolution=self.resolution(request),
                refine_foreground=request.refine_foreground,
                output_mask=request.output_mask,
                mask_only=request.mask_only,
            ),
        )

    def resolution(self, request: FalInput) -> Resolution:
        side = int(str(request.operating_resolution).partition("x")[0])
        if request.model == ModelEnumV2.dynamic:
            wanted = Resolution.dynamic(side)
        elif request.model == ModelEnumV2.light_2k and not self.max_side:
            wanted = Resolution.native()
        else:
            wanted = Resolution.fixed(side)
        return wanted.capped(self.max_side)

    def keeps_history(self, request: FalInput) -> bool:
        return not request.sync_mode

    def render(self, item: WorkItem[FalInput], result: Any, outputs: Outputs) -> dict[str, Any]:
        request = item.request
        fmt = str(request.output_format)
        mime = mime_for(fmt)
        stem = (result.name or "birefnet").replace("/", "_")[:80]

        def image_file(frames: list[Any], name: str) -> dict[str, Any]:
            data = encode_image(frames, fmt, durations=result.durations, loop=result.loop)
            url = to_data_uri(data, mime) if request.sync_mode else outputs.save(data, name, mime).url
            width, height = frames[0].size
            file = ImageFile(url=url, content_type=mime, file_name=name, file_size=len(data), width=width, height=height)
            return file.model_dump()

        body = {"image": image_file(result.frames, f"{stem}-output.{fmt}")}
        if request.output_mask:
            body["mask_image"] = image_file(result.masks, f"{stem}-mask.{fmt}")
        return body

    def failure(self, exc: BaseException, request_id: str = "") -> Failure:
        """fal reports a bad input as a validation error of its field: 422 ``{"detail": [{"loc": ...}]}``."""
        if isinstance(exc, InputError):
            detail = [{"loc": ["body", self.source_field], "msg": str(exc), "type": exc.error_type}]
            return Failure(422, {"detail": detail}, exc.error_type, str(exc))
        return super().failure(exc, request_id)


class FalV1Adapter(FalAdapter):
    endpoint: ClassVar[str] = "fal-ai/birefnet"
    input_model: ClassVar[type[BaseModel]] = BirefnetInput
    version: ClassVar[str] = "v1"


class FalV2Adapter(FalAdapter):
    endpoint: ClassVar[str] = "fal-ai/birefnet/v2"
    input_model: ClassVar[type[BaseModel]] = BirefnetV2Input
    version: ClassVar[str] = "v2"


class FalV2VideoAdapter(FalAdapter):
    """``fal-ai/birefnet/v2/video``: the v2 models and resolutions on every frame of a video."""

    endpoint: ClassVar[str] = "fal-ai/birefnet/v2/video"
    input_model: ClassVar[type[BaseModel]] = BirefnetV2VideoInput
    output_model: ClassVar[type[BaseModel]] = BirefnetVideoOutput
    version: ClassVar[str] = "v2"
    source_field: ClassVar[str] = "video_url"

    def plan(self, request: BirefnetV2VideoInput) -> WorkItem[BirefnetV2VideoInput]:  # type: ignore[override]
        return WorkItem(
            request=request,
            model=self.models[str(request.model)],
            source_url=request.video_url,
            options=RemovalOptions(
                operating_resolution=self.resolution(request),  # type: ignore[arg-type]
                refine_foreground=request.refine_foreground,
                output_mask=request.output_mask,
            ),
            video=VideoEncoding(
                format=VIDEO_OUTPUT_FORMATS[request.video_output_type],
                quality=str(request.video_quality),
                write_mode=str(request.video_write_mode),
                background=_rgb(request.background_color),
            ),
        )

    def render(self, item: WorkItem[BirefnetV2VideoInput], result: Any, outputs: Outputs) -> dict[str, Any]:  # type: ignore[override]
        """``result`` is a :class:`~bgone.pipeline.video.VideoResult` (files on disk)."""
        encoding, info = result.encoding, result.info
        mime = VIDEO_MIME_TYPES[encoding.format]
        stem = (result.name or "birefnet").replace("/", "_")[:80]

        def video_file(path: Path, name: str) -> dict[str, Any]:
            data = path.read_bytes()
            url = to_data_uri(data, mime) if item.request.sync_mode else outputs.save(data, name, mime).url
            width, height = info.display_size
            fps = float(info.average_rate) if info.average_rate else None
            file = VideoFile(
                url=url,
                content_type=mime,
                file_name=name,
                file_size=len(data),
                width=width,
                height=height,
                fps=fps,
                duration=info.duration,
                num_frames=result.frames,
            )
            return file.model_dump()

        body = {"video": video_file(result.path, f"{stem}-output.{encoding.format}")}
        if result.mask_path is not None:
            body["mask_video"] = video_file(result.mask_path, f"{stem}-mask.{encoding.format}")
        return body


VIDEO_OUTPUT_FORMATS = {
    VideoOutputType.x264: "mp4",
    VideoOutputType.vp9: "webm",
    VideoOutputType.prores4444: "mov",
    VideoOutputType.gif: "gif",
}


def _rgb(text: str) -> tuple[int, int, int]:
    try:
        color = parse_color(text)
    except InputError as exc:
        raise RequestValidationError([{"loc": ["body", "background_color"], "msg": str(exc), "type": "value_error"}]) from None
    return color[:3]  # type: ignore[return-value]
