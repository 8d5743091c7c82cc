"""The hosted endpoints' schemas, field for field and in fal's field order: ``fal-ai/birefnet`` (v1) and
``fal-ai/birefnet/v2``. Pure data: the adapter (:mod:`bgone.service.protocols.fal`) gives them meaning."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

EXAMPLE_INPUT = "https://storage.googleapis.com/falserverless/example_inputs/birefnet-input.jpeg"


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


class BirefnetV2Input(BaseModel):
    """Input of ``fal-ai/birefnet/v2``."""

    model_config = ConfigDict(extra="ignore", title="InputV2")

    model: ModelEnumV2 = Field(
        default=ModelEnumV2.light,
        description="Model to use for background removal. 'General Use (Light)' is recommended for most use cases; "
        "'General Use (Light 2K)' was trained with 2K images; 'General Use (Heavy)' is slower but more accurate; "
        "'Matting' gives soft alpha; 'Portrait' is trained for portraits; 'General Use (Dynamic)' supports dynamic "
        "resolutions from 256x256 to 2304x2304.",
    )
    operating_resolution: OperatingResolutionV2 = Field(
        default=OperatingResolutionV2.r1024,
        description="The resolution to operate on. The higher the resolution, the more accurate the output will be "
        "for high res input images. The '2304x2304' option is only available for the 'General Use (Dynamic)' model.",
    )
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

    @model_validator(mode="after")
    def _resolution_fits_model(self) -> BirefnetV2Input:
        if self.operating_resolution == OperatingResolutionV2.r2304 and self.model != ModelEnumV2.dynamic:
            raise ValueError(
                "The '2304x2304' operating resolution is only available for the 'General Use (Dynamic)' model."
            )
        return self


class ImageFile(BaseModel):
    url: str = Field(description="The URL where the file can be downloaded from.")
    content_type: str | None = Field(default=None, description="The mime type of the file.")
    file_name: str | None = Field(default=None, description="The name of the file.")
    file_size: int | None = Field(default=None, description="The size of the file in bytes.")
    width: int | None = Field(default=None, description="The width of the image in pixels.")
    height: int | None = Field(default=None, description="The height of the image in pixels.")


class BirefnetOutput(BaseModel):
    model_config = ConfigDict(title="Output")

    image: ImageFile = Field(
        description="Image with background removed. When mask_only is True, this contains the segmentation mask instead."
    )
    mask_image: ImageFile | None = Field(default=None, description="Mask used to remove the background")


APP_ID = "fal-ai/birefnet"  # owner/alias: what status, result and cancel URLs use (no /v2)


def field_order(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)
