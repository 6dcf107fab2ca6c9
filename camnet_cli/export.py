"""Writing developed images: JPEG, PNG or TIFF, 8 or 16 bits, with EXIF and an ICC profile.

Every file is written to a temporary name in the target folder and renamed into place,
so an interrupted run never leaves a half-written file under the final name. Each carries an
XMP packet that says what made it (the raw it came from, the style, the noise level): the
batch reads it back to tell its own outputs from another raw's. Pixels
arrive upright (orientation already applied) and the EXIF orientation is 1.

JPEG goes through Pillow (EXIF and ICC built in). Pillow cannot write 16-bit RGB PNG, so
PNG has a small writer here (zlib, the Up filter, iCCP and eXIf chunks). TIFF goes
through tifffile, with the ICC profile in tag 34675 and the shot's tags in IFD0.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import struct
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from xml.sax.saxutils import escape, unescape

import numpy as np
import torch

from camnet_cli import __version__, color, files, metadata
from camnet_cli.raw import Metadata

FORMATS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif", "dng": ".dng"}  # dng: dng.linear_dng_writer
SOFTWARE = f"camnet {__version__}"

# sRGB primaries adapted to the ICC's D50 connection space (Bradford), columns R, G, B,
# as tabulated by B. Lindbloom (brucelindbloom.com, "RGB/XYZ Matrices").
_SRGB_D50 = np.array(
    [
        [0.4360747, 0.3850649, 0.1430804],
        [0.2225045, 0.7168786, 0.0606169],
        [0.0139322, 0.0971045, 0.7141733],
    ]
)
_D50 = (0.9642, 1.0, 0.8249)  # ICC profile connection space illuminant (ICC.1:2001-04)


# --- ICC profiles ----------------------------------------------------------------------------


_SPACE_NAMES = {"srgb": "camnet sRGB (IEC 61966-2.1)", "p3": "camnet Display P3", "adobe": "camnet Adobe RGB (1998) compatible"}


@functools.cache
def icc_profile(linear: bool = False, space: str = "srgb") -> bytes:
    """An ICC v2 display profile for an RGB space (``color.RGB_SPACES``): its curve, or linear (gamma 1).

    A matrix/TRC profile (ICC.1:2001-04): header, description, copyright, white point,
    three colorants and three tone curves (the sRGB curve as a 1024-entry table, a gamma as one value).
    """
    matrix, gamma = color.RGB_SPACES[space]
    colorants = _SRGB_D50 if space == "srgb" else color.BRADFORD_D65_TO_D50 @ matrix
    name = "camnet linear sRGB (D65, gamma 1.0)" if linear else _SPACE_NAMES[space]
    if linear:
        curve = _tag(b"curv", struct.pack(">I", 0))  # zero entries: identity
    elif gamma:
        curve = _tag(b"curv", struct.pack(">IH", 1, round(gamma * 256)) + b"\x00\x00")  # u8Fixed8 gamma
    else:
        x = np.linspace(0.0, 1.0, 1024)
        lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
        curve = _tag(b"curv", struct.pack(">I", 1024) + np.round(lin * 65535).astype(">u2").tobytes())
    tags = [
        (b"desc", _desc(name)),
        (b"cprt", _tag(b"text", b"No copyright, use freely\x00")),
        (b"wtpt", _xyz(color.D65)),
        (b"rXYZ", _xyz(colorants[:, 0])),
        (b"gXYZ", _xyz(colorants[:, 1])),
        (b"bXYZ", _xyz(colorants[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, data, seen = [], b"", {}
    for sig, body in tags:
        if body not in seen:  # the three curves share one copy
            seen[body] = offset + len(data)
            data += body + b"\x00" * (-len(body) % 4)
        table.append(struct.pack(">4sII", sig, seen[body], len(body)))
    size = offset + len(data)
    header = struct.pack(
        ">I4sI4s4s4s6H4sI4sII8sI12s4s16s28s",  # ICC.1 header: 128 bytes
        size, b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ", 2024, 1, 1, 0, 0, 0,
        b"acsp", 0, b"\x00" * 4, 0, 0, b"\x00" * 8, 0, _s15(_D50), b"\x00" * 4, b"\x00" * 16, b"\x00" * 28,
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


def _s15(values) -> bytes:
    return b"".join(struct.pack(">i", round(float(v) * 65536)) for v in values)


def _tag(kind: bytes, body: bytes) -> bytes:
    return kind + b"\x00" * 4 + body


def _xyz(values) -> bytes:
    return _tag(b"XYZ ", _s15(values))


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\x00"
    return _tag(b"desc", struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0) + b"\x00" * 3 + b"\x00" * 67)


# --- EXIF ------------------------------------------------------------------------------------


def exif_bytes(meta: Metadata, size: tuple[int, int], space: str = "srgb") -> bytes:
    """EXIF (with the ``Exif\\0\\0`` prefix) for a developed image of ``size`` = (width, height)."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    def rational(x: float) -> IFDRational:
        f = Fraction(x).limit_denominator(100_000)
        return IFDRational(f.numerator, f.denominator)

    exif = Image.Exif()
    if meta.make:
        exif[0x010F] = meta.make
    if meta.model:
        exif[0x0110] = meta.model
    exif[0x0112] = 1  # Orientation: the pixels are upright
    exif[0x0131] = SOFTWARE
    exif[0x0132] = dt.datetime.now().strftime("%Y:%m:%d %H:%M:%S")  # DateTime: when developed
    sub = exif.get_ifd(0x8769)
    if meta.exposure_time:
        sub[0x829A] = rational(meta.exposure_time)
    if meta.f_number:
        sub[0x829D] = rational(meta.f_number)
    if meta.iso:
        sub[0x8827] = int(round(meta.iso))
    if meta.date:
        shot = _exif_date(meta.date)
        sub[0x9003] = shot  # DateTimeOriginal
        sub[0x9004] = shot  # DateTimeDigitized
    if meta.focal_length:
        sub[0x920A] = rational(meta.focal_length)
    if meta.lens:
        sub[0xA434] = meta.lens
    sub[0xA001] = 1 if space == "srgb" else 0xFFFF  # ColorSpace: sRGB, or uncalibrated (the ICC says)
    sub[0xA002], sub[0xA003] = size
    # What EXIF 2.32 (CIPA DC-008) requires: its version, the FlashPix version, the resolution, and of
    # a JPEG the chroma siting (harmless in a PNG's eXIf). A JPEG's ComponentsConfiguration is left
    # to ExifTool (metadata.py): Pillow would write it as BYTE, not UNDEFINED.
    sub[0x9000], sub[0xA000] = b"0232", b"0100"
    exif[0x011A], exif[0x011B], exif[0x0128] = IFDRational(72, 1), IFDRational(72, 1), 2  # 72 pixels per inch
    exif[0x0213] = 1  # YCbCrPositioning: centred
    return exif.tobytes()


def _exif_date(iso: str) -> str:
    return iso.replace("-", ":").replace("T", " ")[:19]


# --- writers ---------------------------------------------------------------------------------


_BAND = 256  # rows of an image to_integers converts at once


def to_integers(rgb: np.ndarray, bits: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> uint8 or uint16, rounded half to even (as ``np.rint``).

    In torch, in bands of rows, in place: NumPy's clip, scale, round and cast took 0.6 s on an
    18 MP frame, each pass a new float image on one core.
    """
    top = 255 if bits == 8 else 65535
    x = torch.as_tensor(rgb)
    out = torch.empty(x.shape, dtype=torch.uint8 if bits == 8 else torch.uint16)
    for rows in range(0, x.shape[0], _BAND):
        out[rows : rows + _BAND] = x[rows : rows + _BAND].clamp(0.0, 1.0).mul_(top).round_()
    return out.numpy()


def image_writer(
    rgb: np.ndarray,
    meta: Metadata,
    *,
    fmt: str = "jpeg",
    quality: int = 92,
    bits: int = 8,
    linear: bool = False,
    provenance: dict[str, str] | None = None,
    source: Path | None = None,
    space: str = "srgb",
) -> Callable[[str], None]:
    """What writes an upright (H, W, 3) float image in [0, 1] with EXIF, ICC and XMP to a path
    (for ``files.atomic_write``, which gives it a temporary one).

    Args:
        fmt: "jpeg", "png" or "tiff".
        quality: JPEG quality, 1-100.
        bits: 8 or 16 (PNG and TIFF), or 32 (float TIFF).
        linear: the pixels are linear sRGB primaries (for ``--save-linear``); the ICC says so.
        provenance: ``camnet:`` fields for the XMP packet (``xmp_packet``): what made the file.
        source: the raw file, whose whole metadata is copied in where ExifTool is installed
            (``metadata.copy_from_raw``).
        space: the colour space to write (``color.RGB_SPACES``); ``rgb`` is sRGB (or linear sRGB).
    """
    if fmt not in FORMATS or fmt == "dng":
        raise ValueError(f"unknown image format {fmt!r}")
    if bits not in (8, 16, 32) or (fmt == "jpeg" and bits != 8) or (bits == 32 and fmt != "tiff"):
        raise ValueError(f"{fmt} cannot hold {bits} bits")
    if space != "srgb":
        rgb = color.srgb_to_space(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1), space).permute(1, 2, 0).numpy()
    # 32: float TIFF (SampleFormat IEEE float), the values as they are, beyond [0, 1] too.
    pixels = np.ascontiguousarray(rgb, dtype=np.float32) if bits == 32 else to_integers(rgb, bits)
    exif = exif_bytes(meta, (pixels.shape[1], pixels.shape[0]), space)
    icc = icc_profile(linear, space)
    xmp = xmp_packet(provenance or {})

    def write(tmp: str) -> None:
        if fmt == "jpeg":
            _write_jpeg(tmp, pixels, exif, icc, xmp, quality)
        elif fmt == "png":
            _write_png(tmp, pixels, exif, icc, xmp)
        else:
            _write_tiff(tmp, pixels, meta, icc, xmp)
        if source is not None:
            metadata.copy_from_raw(source, tmp, fmt=fmt, size=(pixels.shape[1], pixels.shape[0]), srgb=space == "srgb")

    return write


def write_image(path: Path, rgb: np.ndarray, meta: Metadata, **options) -> None:
    """Write an image atomically; ``options`` as ``image_writer``'s."""
    files.atomic_write(path, image_writer(rgb, meta, **options))


# --- XMP: what made the file -------------------------------------------------------------------

XMP_NAMESPACE = "https://camnet.invalid/ns/1.0/"  # camnet's own fields; no such host, as the XMP spec allows


def xmp_packet(fields: dict[str, str]) -> bytes:
    """An XMP packet (Adobe XMP Specification Part 1) with xmp:CreatorTool and ``camnet:<name>`` fields."""
    attrs = "".join(f' camnet:{k}="{escape(str(v), {chr(34): "&quot;"})}"' for k, v in fields.items())
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:camnet="{XMP_NAMESPACE}"'
        f' xmp:CreatorTool="{SOFTWARE}"{attrs}/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def read_provenance(path: Path) -> dict[str, str]:
    """The ``camnet:`` fields of a file camnet wrote (``xmp_packet``); empty for any other file."""
    packet = b""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get(700) if tif.pages else None
                packet = bytes(tag.value) if tag is not None else b""
        else:
            with open(path, "rb") as f:
                packet = f.read(1 << 16)  # JPEG's APP1 and PNG's iTXt come before the pixels
    except Exception:  # unreadable, or not an image: nothing recorded
        return {}
    start = packet.find(f'xmlns:camnet="{XMP_NAMESPACE}"'.encode())
    if start < 0:
        return {}
    end = packet.find(b"/>", start)
    text = packet[start:end].decode("utf-8", "replace")
    return {k: unescape(v) for k, v in re.findall(r'camnet:(\w+)="([^"]*)"', text)}


def _write_jpeg(tmp: str, pixels: np.ndarray, exif: bytes, icc: bytes, xmp: bytes, quality: int) -> None:
    from PIL import Image

    Image.fromarray(pixels, "RGB").save(
        tmp, "JPEG", quality=quality, exif=exif, icc_profile=icc, xmp=xmp, subsampling=0 if quality >= 90 else 2
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png(tmp: str, pixels: np.ndarray, exif: bytes, icc: bytes, xmp: bytes) -> None:
    """PNG (ISO/IEC 15948, with the eXIf chunk of PNG 1.5 extensions): 8 or 16-bit RGB."""
    h, w, _ = pixels.shape
    depth = pixels.dtype.itemsize * 8
    rows = pixels.astype(pixels.dtype.newbyteorder(">")).view(np.uint8).reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[0, 0], filtered[1:, 0] = 0, 2  # first row unfiltered, then Up
    filtered[0, 1:] = rows[0]
    filtered[1:, 1:] = rows[1:] - rows[:-1]  # wraps modulo 256, as the Up filter is defined
    with open(tmp, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 2, 0, 0, 0)))
        f.write(_png_chunk(b"iCCP", b"camnet\x00\x00" + zlib.compress(icc)))
        f.write(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
        f.write(_png_chunk(b"tEXt", b"Software\x00" + SOFTWARE.encode()))
        f.write(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))  # uncompressed, no language
        f.write(_png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)))
        f.write(_png_chunk(b"IEND", b""))


def _write_tiff(tmp: str, pixels: np.ndarray, meta: Metadata, icc: bytes, xmp: bytes) -> None:
    import tifffile

    def rational(x: float) -> tuple[int, int]:
        f = Fraction(x).limit_denominator(100_000)
        return (f.numerator, f.denominator)

    # ICC (UNDEFINED, as TIFF/EP and ICC.1 Annex B have it), Orientation, XMP
    tags = [(34675, 7, len(icc), icc, True), (274, "H", 1, 1, True), (700, "B", len(xmp), xmp, True)]
    if meta.make:
        tags.append((271, "s", 0, meta.make, True))
    if meta.model:
        tags.append((272, "s", 0, meta.model, True))
    if meta.exposure_time:
        tags.append((33434, 5, 1, rational(meta.exposure_time), True))
    if meta.f_number:
        tags.append((33437, 5, 1, rational(meta.f_number), True))
    if meta.iso:
        tags.append((34855, "H", 1, int(round(meta.iso)), True))
    if meta.date:
        tags.append((36867, "s", 0, _exif_date(meta.date), True))
    if meta.focal_length:
        tags.append((37386, 5, 1, rational(meta.focal_length), True))
    # Uncompressed: Deflate (8) is no TIFF 6.0 compression, and exiftool -validate flags it.
    tifffile.imwrite(tmp, pixels, photometric="rgb", software=SOFTWARE, metadata=None, extratags=tags)
