"""What an uploaded file is, and the copies of it that may be shown: judged from its bytes, never its name.

A phone says a file is ``IMG_0001.jpg`` of type ``image/jpeg`` whatever it holds, so neither is
believed: :func:`judge` reads the magic bytes (JPEG, PNG, WebP, HEIC, PDF and nothing else), and an
image must then decode whole with Pillow as that very format (a script named .jpg, a truncated or
corrupt photo, a decompression bomb are refused, each as :class:`MediaRefused`, an
:class:`~geodata.errors.Invalid` naming the field ``file``).

Location data never leaves in a served copy. A phone's photo carries its GPS position in EXIF
(and XMP): :func:`served_copy` re-encodes the image from its pixels alone — turned upright by its
EXIF orientation first, so nothing looks different — in the same format (HEIC becomes JPEG, which
every browser shows), with no EXIF, XMP or text chunks. A PDF cannot be re-encoded without a PDF
library, so its served copy blanks in place, byte for byte (offsets stay valid), the uncompressed
XMP packets and the EXIF segments of the JPEG images in it; metadata inside compressed streams is
not reached (say so where it matters: docs and README). Thumbnails (:func:`thumbnail`) are made
from the served copy, so they carry nothing either.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from geodata.errors import Invalid

register_heif_opener()  # Pillow opens HEIC/HEIF (phones' camera default) through pillow-heif

Kind = Literal["image", "pdf"]

MAX_PIXELS = 64_000_000  # a 48-megapixel phone photo passes; a decompression bomb does not
THUMB_EDGE = 320  # pixels of a thumbnail's longer side
JPEG_QUALITY = 88
# Pillow decodes a whole image into memory (about 4 bytes a pixel): at most this many at once per process.
_DECODING = threading.BoundedSemaphore(2)

_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_GENERIC = frozenset({b"mif1", b"msf1"})


class MediaRefused(Invalid):
    """An upload that is not one of the accepted types, or does not decode as the type it claims."""


@dataclass(frozen=True)
class Judged:
    """What a file is: its kind, its media type, and (images) its size in pixels."""

    kind: Kind
    media_type: str
    width: int | None = None
    height: int | None = None

    @property
    def pillow_format(self) -> str:
        return _PILLOW[self.media_type]


_PILLOW = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/heic": "HEIF"}
# The type a served copy has: the same as the original's, but HEIC (browsers other than Safari
# cannot show it), which is served as JPEG.
SERVED_TYPE = {
    "image/jpeg": "image/jpeg",
    "image/png": "image/png",
    "image/webp": "image/webp",
    "image/heic": "image/jpeg",
    "application/pdf": "application/pdf",
}
EXTENSION = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "application/pdf": "pdf",
}
ACCEPTED = "JPEG, PNG, WebP, HEIC or PDF"


def sniff(head: bytes) -> str | None:
    """The media type the first bytes of a file announce (None: none of the accepted ones)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and len(head) >= 16:
        box = int.from_bytes(head[:4], "big")
        major = head[8:12]
        compatible = {head[i : i + 4] for i in range(16, min(box, len(head)) - 3, 4)}
        if major in _HEIC_BRANDS or (major in _HEIF_GENERIC and compatible & _HEIC_BRANDS):
            return "image/heic"
        return None
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def judge(path: Path, label: str) -> Judged:
    """What the file at ``path`` is, from its bytes; :class:`MediaRefused` naming ``label`` when it
    is none of the accepted types, or does not decode whole as the type its first bytes announce."""
    with open(path, "rb") as f:
        head = f.read(64)
    media_type = sniff(head)
    if media_type is None:
        raise MediaRefused(f"{label} is not a {ACCEPTED} file (judged from its content, not its name)", field="file")
    if media_type == "application/pdf":
        _check_pdf(path, label)
        return Judged("pdf", media_type)
    width, height = _check_image(path, media_type, label)
    return Judged("image", media_type, width, height)


def _check_pdf(path: Path, label: str) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 1024))
        tail = f.read()
    if b"%%EOF" not in tail:
        raise MediaRefused(f"{label} is not a whole PDF (no end-of-file marker: cut off or corrupt)", field="file")


def _check_image(path: Path, media_type: str, label: str) -> tuple[int, int]:
    fmt = _PILLOW[media_type]
    try:
        with _DECODING, Image.open(path, formats=[fmt]) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise MediaRefused(
                    f"{label} is {width}×{height} pixels: more than {MAX_PIXELS // 1_000_000} megapixels", field="file"
                )
            im.load()  # decodes every pixel: a truncated or corrupt image fails here
    except MediaRefused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaRefused(
            f"{label} does not decode as a {fmt} image (corrupt or cut off): {str(exc)[:120]}", field="file"
        ) from None
    return width, height


def _flattened(im: Image.Image, keep_alpha: bool) -> Image.Image:
    """The pixels only, upright, in a mode the target format writes (no metadata travels along)."""
    im = ImageOps.exif_transpose(im)  # the photo as it looks, before its EXIF orientation goes
    if keep_alpha and im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
    elif im.mode not in ("RGB", "L"):
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            white = Image.new("RGB", rgba.size, (255, 255, 255))
            white.paste(rgba, mask=rgba.getchannel("A"))
            im = white
        else:
            im = im.convert("RGB")
    clean = Image.frombytes(im.mode, im.size, im.tobytes())  # a new image: no info, no EXIF, no XMP
    return clean


def served_copy(path: Path, judged: Judged) -> tuple[bytes, str]:
    """The copy of the file that is shown, location data gone, and its media type."""
    served = SERVED_TYPE[judged.media_type]
    if judged.kind == "pdf":
        return scrub_pdf(path.read_bytes()), served
    with _DECODING, Image.open(path, formats=[judged.pillow_format]) as im:
        im.seek(0)  # an animated WebP or PNG: its first frame
        clean = _flattened(im, keep_alpha=served in ("image/png", "image/webp"))
    out = io.BytesIO()
    if served == "image/jpeg":
        clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    elif served == "image/png":
        clean.save(out, format="PNG", optimize=True)
    else:
        clean.save(out, format="WEBP", quality=JPEG_QUALITY)
    return out.getvalue(), served


def thumbnail(served: bytes) -> bytes:
    """A JPEG of at most THUMB_EDGE pixels a side, made from the served (clean) copy."""
    with _DECODING, Image.open(io.BytesIO(served)) as im:
        im.draft("RGB", (THUMB_EDGE * 2, THUMB_EDGE * 2))  # JPEG: decode at a fraction of the size
        small = _flattened(im, keep_alpha=False)
    small.thumbnail((THUMB_EDGE, THUMB_EDGE))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80, optimize=True)
    return out.getvalue()


# --- PDF: blank the location-bearing metadata in place ------------------------------------------------

_XMP = re.compile(rb"<\?xpacket begin=.*?<\?xpacket end=[^>]*\?>", re.DOTALL)
_JPEG_EXIF = re.compile(rb"\xff\xe1(..)Exif\x00\x00", re.DOTALL)


def scrub_pdf(data: bytes) -> bytes:
    """``data`` with its uncompressed XMP packets and its embedded JPEGs' EXIF blanked, byte for byte.

    The length of every stream and the offsets of the cross-reference table stay as they were, so
    the PDF stays valid: an XMP packet becomes spaces (XML whitespace outside any element), and an
    EXIF segment keeps its marker and length with zeros for content (decoders skip it).
    """
    buf = bytearray(data)
    for m in _XMP.finditer(data):
        buf[m.start() : m.end()] = b" " * (m.end() - m.start())
    for m in _JPEG_EXIF.finditer(data):
        length = int.from_bytes(m.group(1), "big")
        start, end = m.start() + 4, min(len(buf), m.start() + 2 + length)
        buf[start:end] = b"\x00" * (end - start)
    return bytes(buf)
