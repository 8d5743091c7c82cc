"""The hosted endpoints' schemas, field for field and in fal's field order: ``fal-ai/birefnet`` (v1),
``fal-ai/birefnet/v2`` and ``fal-ai/birefnet/v2/video``. Pure data: the adapter (:mod:`bgone.service.protocols.fal`) gives them meaning."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

EXAMPLE_INPUT = "https://storage.googleapis.com/falserverless/example_inputs/birefnet-input.jpeg"
EXAMPLE_VIDEO = "https://storage.googleapis.com/falserverless/example_inputs/birefnet-video-input.mp4"


class ModelEnumV1(StrEnum):
    light = "General Use (Light)"
    heavy = "General Use (Heavy)"
    portrait = "Portrait"


class ModelEnumV2(StrEnum):
    light = "General Use (Light)"
    light_2k = "General Use (Light 2K)"
    heavy = "General Use (Heavy)"
    matting = "Matting"
    portrait = "Portrait"
    dynamic = "General Use (Dynamic)"


class OperatingResolutionV1(StrEnum):
    r1024 = "1024x1024"
    r2048 = "2048x2048"


class OperatingResolutionV2(StrEnum):
    r1024 = "1024x1024"
    r2048 = "2048x2048"
    r2304 = "2304x2304"


class VideoOutputType(StrEnum):
    x264 = "X264 (.mp4)"
    vp9 = "VP9 (.webm)"
    prores4444 = "PRORES4444 (.mov)"
    gif = "GIF (.gif)"


class VideoQuality(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    maximum = "maximum"


class VideoWriteMode(StrEnum):
    fast = "fast"
    balanced = "balanced"
    small = "small"


class OutputFormat(StrEnum):
    webp = "webp"
    png = "png"
    gif = "gif"


# Fields both endpoints share, declared once; each model lists them itself because the order of the
# fields is part of the schema (x-fal-order-properties).
OUTPUT_MASK = Field(default=False, description="Whether to output the mask used to remove the background")
REFINE_FOREGROUND = Field(default=True, description="Whether to refine the foreground using the estimated mask")
SYNC_MODE = Field(
    default=False,
    description="If True, the media will be returned as a data URI and the output data won't be available in the "
    "request history.",
)
IMAGE_URL = Field(
    description="URL of the image to remove background from",
    examples=[EXAMPLE_INPUT],
    json_schema_extra={"ui": {"field": "image"}},
)
OUTPUT_FORMAT = Field(default=OutputFormat.png, description="The format of the output image")


class BirefnetInput(BaseModel):
    """Input of ``fal-ai/birefnet`` (v1)."""

    model_config = ConfigDict(extra="ignore", title="Input")

    model: ModelEnumV1 = Field(
        default=ModelEnumV1.light,
        description="Model to use for background removal. 'General Use (Light)': BiRefNet-DIS_ep580.pth; "
        "'General Use (Heavy)': BiRefNet-massive-epoch_240.pth; 'Portrait': BiRefNet-portrait-TR_P3M_10k-epoch_120.pth.",
    )
    operating_resolution: OperatingResolutionV1 = Field(
        default=OperatingResolutionV1.r1024,
        description="The resolution to operate on. The higher the resolution, the more accurate the output will be "
        "for high res input images.",
    )
    output_mask: bool = OUTPUT_MASK
    refine_foreground: bool = REFINE_FOREGROUND
    sync_mode: bool = SYNC_MODE
    image_url: str = IMAGE_URL
    output_format: OutputFormat = OUTPUT_FORMAT

    @property
    def mask_only(self) -> bool:
        return False


MODEL_V2 = Field(
    default=ModelEnumV2.light,
    description="Model to use for background removal. The 'General Use (Light)' model is the original model used "
    "in the BiRefNet repository. The 'General Use (Light 2K)' model is the original model used in the BiRefNet "
    "repository but trained with 2K images. The 'General Use (Heavy)' model is a slower but more accurate model. "
    "The 'Matting' model is a model trained specifically for matting images. The 'Portrait' model is a model "
    "trained specifically for portrait images. The 'General Use (Dynamic)' model supports dynamic resolutions from "
    "256x256 to 2304x2304. The 'General Use (Light)' model is recommended for most use cases. The corresponding "
    "models are as follows: 'General Use (Light)': BiRefNet; 'General Use (Light 2K)': BiRefNet_lite-2K; "
    "'General Use (Heavy)': BiRefNet_lite; 'Matting': BiRefNet-matting; 'Portrait': BiRefNet-portrait; "
    "'General Use (Dynamic)': BiRefNet_dynamic.",
)
OPERATING_RESOLUTION_V2 = Field(
    default=OperatingResolutionV2.r1024,
    description="The resolution to operate on. The higher the resolution, the more accurate the output will be "
    "for high res input images. The '2304x2304' option is only available for the 'General Use (Dynamic)' model.",
)


class _DynamicOnly2304:
    """The v2 rule: 2304x2304 only with the Dynamic model."""

    model: ModelEnumV2
    operating_resolution: OperatingResolutionV2

    @model_validator(mode="after")
    def _resolution_fits_model(self):  # type: ignore[no-untyped-def]
        if self.operating_resolution == OperatingResolutionV2.r2304 and self.model != ModelEnumV2.dynamic:
            raise ValueError(
                "The '2304x2304' operating resolution is only available for the 'General Use (Dynamic)' model."
            )
        return self


class BirefnetV2Input(_DynamicOnly2304, BaseModel):
    """Input of ``fal-ai/birefnet/v2``."""

    model_config = ConfigDict(extra="ignore", title="InputV2")

    model: ModelEnumV2 = MODEL_V2
    operating_resolution: OperatingResolutionV2 = OPERATING_RESOLUTION_V2
    output_mask: bool = OUTPUT_MASK
    refine_foreground: bool = REFINE_FOREGROUND
    sync_mode: bool = SYNC_MODE
    image_url: str = IMAGE_URL
    output_format: OutputFormat = OUTPUT_FORMAT
    mask_only: bool = Field(
        default=False,
        description="Whether to output only the mask. If True, the image output is the segmentation mask and "
        "foreground refinement is skipped.",
    )


class BirefnetV2VideoInput(_DynamicOnly2304, BaseModel):
    """Input of ``fal-ai/birefnet/v2/video``. ``background_color`` is bgone's own (fal clients never send it):
    what transparent pixels become in formats without alpha (MP4), black by default."""

    model_config = ConfigDict(extra="ignore", title="VideoInputV2")

    model: ModelEnumV2 = MODEL_V2
    operating_resolution: OperatingResolutionV2 = OPERATING_RESOLUTION_V2
    output_mask: bool = OUTPUT_MASK
    refine_foreground: bool = REFINE_FOREGROUND
    sync_mode: bool = SYNC_MODE
    video_url: str = Field(
        description="URL of the video to remove background from",
        examples=[EXAMPLE_VIDEO],
        json_schema_extra={"ui": {"field": "video"}},
    )
    video_output_type: VideoOutputType = Field(
        default=VideoOutputType.x264,
        description="The output type of the video: X264 (.mp4) has no alpha channel (transparent pixels become the "
        "background colour); VP9 (.webm) and PRORES4444 (.mov) keep the alpha channel; GIF (.gif) keeps binary "
        "transparency.",
    )
    video_quality: VideoQuality = Field(default=VideoQuality.high, description="The quality of the output video.")
    video_write_mode: VideoWriteMode = Field(
        default=VideoWriteMode.balanced,
        description="The write mode of the output video: fast encodes quickly, small makes smaller files.",
    )
    background_color: str = Field(
        default="#000000",
        description="What transparent pixels become where the output has no alpha channel (X264 (.mp4)).",
        json_schema_extra={"x-bgone": True},
    )


class ImageFile(BaseModel):
    url: str = Field(description="The URL where the file can be downloaded from.")
    content_type: str | None = Field(default=None, description="The mime type of the file.")
    file_name: str | None = Field(default=None, description="The name of the file.")
    file_size: int | None = Field(default=None, description="The size of the file in bytes.")
    width: int | None = Field(default=None, description="The width of the image in pixels.")
    height: int | None = Field(default=None, description="The height of the image in pixels.")


class VideoFile(BaseModel):
    url: str = Field(description="The URL where the file can be downloaded from.")
    content_type: str | None = Field(default=None, description="The mime type of the file.")
    file_name: str | None = Field(default=None, description="The name of the file.")
    file_size: int | None = Field(default=None, description="The size of the file in bytes.")
    width: int | None = Field(default=None, description="The width of the video in pixels.")
    height: int | None = Field(default=None, description="The height of the video in pixels.")
    fps: float | None = Field(default=None, description="The frame rate of the video.")
    duration: float | None = Field(default=None, description="The duration of the video in seconds.")
    num_frames: int | None = Field(default=None, description="The number of frames in the video.")


class BirefnetVideoOutput(BaseModel):
    model_config = ConfigDict(title="VideoOutput")

    video: VideoFile = Field(description="Video with background removed.")
    mask_video: VideoFile | None = Field(default=None, description="Mask used to remove the background")


class BirefnetOutput(BaseModel):
    model_config = ConfigDict(title="Output")

    image: ImageFile = Field(
        description="Image with background removed. When mask_only is True, this contains the segmentation mask instead."
    )
    mask_image: ImageFile | None = Field(default=None, description="Mask used to remove the background")


APP_ID = "fal-ai/birefnet"  # owner/alias: what status, result and cancel URLs use (no /v2)


def field_order(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)
