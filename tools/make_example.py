"""Recreate examples/sony_a7r3_iso3200_crop.dng from the shared Sony a7R III raw.

Usage: python tools/make_example.py PATH/TO/sony_ILCE-7RM3_iso3200_DSC2164.ARW

The crop keeps the camera's Bayer data untouched (RGGB phase, DN values) and its
metadata: levels, colour matrix, as-shot white balance and exposure tags.
"""

import sys
from pathlib import Path

import numpy as np
import rawpy

from camnet_cli.dng import DngMetadata, write_dng
from camnet_cli.raw import read_metadata

TOP, LEFT, HEIGHT, WIDTH = 1760, 1520, 640, 960  # the guitarist's hands and guitar body


def main(arw: str) -> None:
    meta = read_metadata(Path(arw))
    with rawpy.imread(arw) as raw:
        mosaic = raw.raw_image_visible[TOP : TOP + HEIGHT, LEFT : LEFT + WIDTH].copy()
        wb = np.asarray(raw.camera_whitebalance[:3], dtype=np.float64)
        xyz_to_cam = np.asarray(raw.rgb_xyz_matrix[:3], dtype=np.float64)
        black = [int(b) for b in raw.black_level_per_channel]
        white = int(raw.white_level)
    write_dng(
        Path(__file__).resolve().parents[1] / "examples" / "sony_a7r3_iso3200_crop.dng",
        mosaic,
        cfa_pattern="RGGB",
        black_level=[black[0], black[1], black[3], black[2]],  # per site: R, G1, G2, B
        white_level=white,
        xyz_to_cam=xyz_to_cam,
        as_shot_neutral=wb[1] / wb,
        metadata=DngMetadata(
            make=meta.make,
            model=meta.model,
            iso=int(meta.iso),
            exposure_time=meta.exposure_time,
            f_number=meta.f_number,
            focal_length=meta.focal_length,
            date=meta.date.replace("-", ":").replace("T", " "),
        ),
    )


if __name__ == "__main__":
    main(sys.argv[1])
