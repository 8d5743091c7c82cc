"""Images in and out: decoding every input kind and format, encoding results, URL fetching, colours and
data URIs. Knows nothing about models; imports only :mod:`bgone.errors` and :mod:`bgone.settings`."""

from bgone.imaging.colors import Color, composite, parse_color
from bgone.imaging.data_uri import parse_data_uri, to_data_uri
from bgone.imaging.decode import ImageSource, Readable, load_image
from bgone.imaging.encode import (
    EXTENSIONS,
    MIME_TYPES,
    OUTPUT_FORMATS,
    encode_image,
    extension_for,
    mime_for,
    normalize_format,
)
from bgone.imaging.frames import DecodedImage

__all__ = [
    "EXTENSIONS",
    "MIME_TYPES",
    "OUTPUT_FORMATS",
    "Color",
    "DecodedImage",
    "ImageSource",
    "Readable",
    "composite",
    "encode_image",
    "extension_for",
    "load_image",
    "mime_for",
    "normalize_format",
    "parse_color",
    "parse_data_uri",
    "to_data_uri",
]
