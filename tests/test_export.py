import io
import struct
import zlib

import exifread
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from camnet_cli import export
from camnet_cli.export import icc_profile, to_integers, write_image
from camnet_cli.raw import Metadata

META = Metadata(
    make="SONY", model="ILCE-7RM3", iso=3200, exposure_time=1 / 640, f_number=6.3, focal_length=129,
    lens="E 55-210mm F4.5-6.3 OSS", date="2018-07-11T01:18:47", orientation=6,
)


def read_png(path):
    """A PNG decoder independent of ours and of Pillow (which reads 16-bit RGB as 8-bit)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body, crc = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n], data[pos + 8 + n : pos + 12 + n]
        assert struct.unpack(">I", crc)[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + n
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert ctype == 2
    bpp = 3 * depth // 8
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + w * bpp)
    rows = np.zeros((h, w * bpp), np.uint8)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:]
        prev = rows[y - 1] if y else np.zeros_like(line)
        assert f in (0, 2)
        rows[y] = line if f == 0 else (line.astype(np.uint16) + prev) % 256
    pixels = rows.view(">u2" if depth == 16 else np.uint8).reshape(h, w, 3).astype(np.uint16 if depth == 16 else np.uint8)
    return pixels, chunks


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.random((48, 64, 3)).astype(np.float32)


def _exif(path):
    with open(path, "rb") as f:
        return {k: str(v) for k, v in exifread.process_file(f, details=False).items()}


@pytest.mark.parametrize("fmt, bits", [("jpeg", 8), ("png", 8), ("png", 16), ("tiff", 8), ("tiff", 16)])
def test_every_format_carries_exif_and_icc(tmp_path, image, fmt, bits):
    path = tmp_path / f"out.{fmt}"
    write_image(path, image, META, fmt=fmt, bits=bits)
    tags = _exif(path)
    prefix = "Image" if fmt == "tiff" else "EXIF"
    assert tags["Image Make"] == "SONY" and tags["Image Model"] == "ILCE-7RM3"
    assert tags[f"{prefix} ISOSpeedRatings"] == "3200"
    assert tags[f"{prefix} ExposureTime"] == "1/640"
    assert tags[f"{prefix} FNumber"] == "63/10"
    assert tags[f"{prefix} DateTimeOriginal"] == "2018:07:11 01:18:47"
    assert tags["Image Orientation"] == "Horizontal (normal)"  # pixels are written upright
    if fmt != "tiff":
        assert tags["Image Software"].startswith("camnet")
    icc = Image.open(path).info.get("icc_profile") if fmt != "tiff" else tifffile.TiffFile(path).pages[0].tags[34675].value
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc))))


@pytest.mark.parametrize("fmt, bits", [("png", 8), ("png", 16), ("tiff", 8), ("tiff", 16)])
def test_lossless_formats_round_trip_exactly(tmp_path, image, fmt, bits):
    path = tmp_path / f"out.{fmt}"
    write_image(path, image, META, fmt=fmt, bits=bits)
    pixels = read_png(path)[0] if fmt == "png" else tifffile.imread(path)
    np.testing.assert_array_equal(pixels, to_integers(image, bits))


def test_jpeg_is_close(tmp_path, image):
    smooth = np.broadcast_to(np.linspace(0, 1, 64)[None, :, None], (48, 64, 3)).astype(np.float32)
    write_image(tmp_path / "out.jpeg", smooth, META, quality=95)
    back = np.asarray(Image.open(tmp_path / "out.jpeg")).astype(np.float32) / 255
    assert np.abs(back - smooth).mean() < 0.01


def test_invalid_combinations(tmp_path, image):
    with pytest.raises(ValueError, match="16 bits"):
        write_image(tmp_path / "x.jpg", image, META, fmt="jpeg", bits=16)
    with pytest.raises(ValueError, match="format"):
        write_image(tmp_path / "x.webp", image, META, fmt="webp")
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, image, monkeypatch):
    write_image(tmp_path / "out.png", image, META, fmt="png")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    before = (tmp_path / "out.png").read_bytes()

    import camnet_cli.export as export

    def broken(tmp, *args):
        with open(tmp, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export, "_write_png", broken)
    with pytest.raises(OSError):
        write_image(tmp_path / "out.png", image, META, fmt="png")
    assert (tmp_path / "out.png").read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # and no temporary is left


@pytest.mark.parametrize("linear", [False, True])
def test_icc_profiles_are_valid_and_mean_what_they_say(linear):
    """LCMS reads our profiles and maps them onto its own sRGB as expected."""
    ours = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile(linear)))
    assert ("linear" in ImageCms.getProfileDescription(ours)) == linear
    lcms_srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    ramp = Image.fromarray(np.tile(np.arange(0, 256, 5, dtype=np.uint8)[None, :, None], (4, 1, 3)))
    out = np.asarray(ImageCms.applyTransform(ramp, ImageCms.buildTransform(ours, lcms_srgb, "RGB", "RGB"))).astype(float) / 255
    x = np.asarray(ramp).astype(float) / 255
    expected = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055) if linear else x
    assert np.abs(out - expected).max() < 0.01


@pytest.mark.parametrize("space", ["p3", "adobe"])
def test_other_colour_spaces_mean_the_same_colours_to_littlecms(tmp_path, space):
    """A photo written in Display P3 or Adobe RGB, turned back into sRGB by littleCMS (Pillow's
    ImageCms) through its embedded profile, gives the sRGB photo back."""
    rng = np.random.default_rng(0)
    srgb = np.clip(rng.random((32, 48, 3)) * 0.8 + 0.1, 0, 1).astype(np.float32)
    write_image(tmp_path / "x.png", srgb, Metadata(), fmt="png", space=space)
    write_image(tmp_path / "x16.png", srgb, Metadata(), fmt="png", space=space, bits=16)
    with Image.open(tmp_path / "x.png") as img:
        img.load()
        profile = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
        back = ImageCms.profileToProfile(img, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    stored = np.asarray(Image.open(tmp_path / "x.png"), dtype=np.float64) / 255
    assert np.abs(stored - srgb).mean() > 0.01  # the values did change
    assert np.abs(np.asarray(back, dtype=np.float64) / 255 - srgb).mean() < 1.5 / 255
    assert np.abs(read_png(tmp_path / "x16.png")[0] / 65535 - stored).max() <= 0.5 / 255 + 1e-6  # 16 bits: the same colours, finer


@pytest.mark.parametrize("bits", [8, 16])
def test_integers_round_half_to_even_and_clip(bits):
    """to_integers (in torch, in bands of rows) gives what NumPy's plain rule gives: clipped to [0, 1],
    scaled, rounded half to even; for float32 and float64, C-ordered or not, over several bands."""
    top = 255 if bits == 8 else 65535
    rng = np.random.default_rng(1)
    rows = export._BAND * 2 + 7
    image = rng.uniform(-0.2, 1.2, (rows, 9, 3)).astype(np.float32)
    image[0, :4, 0] = np.array([0.5, 1.5, 2.5, top - 0.5], np.float32) / top  # half-way values
    for x in (image, image.astype(np.float64), image.transpose(1, 0, 2)):
        expected = np.rint(np.clip(x, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)
        got = to_integers(x, bits)
        assert got.dtype == expected.dtype and got.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(got, expected)
    assert to_integers(image, bits)[0, :4, 0].tolist() == [0, 2, 2, top - 1]
