import os

import exifread
import numpy as np
import pytest
import rawpy

from camnet_cli.dng import DngMetadata, to_dn, write_dng


def test_to_dn_per_site_black_and_clipping():
    x = np.array([[0.0, 0.5], [1.0, -1.0]])
    dn = to_dn(x, [100, 200, 300, 400], 1100)
    assert dn.dtype == np.uint16
    assert dn.tolist() == [[100, 650], [1100, 0]]  # -1.0 would be below 0 DN: clipped


def test_written_file_reads_in_libraw_and_exifread(tmp_path):
    dn = np.random.default_rng(0).integers(600, 15000, (32, 48), dtype=np.uint16)
    meta = DngMetadata(make="ACME", model="Cam 2", iso=400, exposure_time=0.004, f_number=4.0, date="2020:01:02 03:04:05")
    write_dng(tmp_path / "f.dng", dn, cfa_pattern="GRBG", noise_profile=(1e-4, 1e-6), metadata=meta)
    with rawpy.imread(str(tmp_path / "f.dng")) as raw:
        np.testing.assert_array_equal(raw.raw_image_visible, dn)
        assert raw.raw_colors_visible[0, 0] == 1  # green first
    with open(tmp_path / "f.dng", "rb") as f:
        tags = exifread.process_file(f, details=False)
    assert str(tags["Image Make"]) == "ACME" and str(tags["Image ISOSpeedRatings"]) == "400"
    assert str(tags["Image Software"]).startswith("camnet")


def test_write_is_atomic_and_readable(tmp_path):
    write_dng(tmp_path / "f.dng", np.full((8, 8), 1000, np.uint16))
    assert [p.name for p in tmp_path.iterdir()] == ["f.dng"]  # no temporary left behind
    assert os.stat(tmp_path / "f.dng").st_mode & 0o044  # not the 0600 of a temporary file


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_dng(tmp_path / "f.dng", np.full((8, 8), 1.0))  # float, not uint16
    with pytest.raises(ValueError, match="CFA"):
        write_dng(tmp_path / "f.dng", np.full((8, 8), 1000, np.uint16), cfa_pattern="RGB")
    assert list(tmp_path.iterdir()) == []
