"""The option values commands share (``camnet_cli.commands``): each parser takes what the help
says and refuses the rest with a message that names the option."""

import pytest

from camnet_cli import noise
from camnet_cli.commands import parse_chroma, parse_noise, parse_wb
from tests.conftest import OMEGAS


@pytest.mark.parametrize("text, expected", [("camera", "camera"), ("auto", "auto"), ("2,1,1.5", (2.0, 1.0, 1.5)), ("4,2,3", (2.0, 1.0, 1.5))])
def test_parse_wb(text, expected):
    assert parse_wb(text) == expected


@pytest.mark.parametrize("text", ["daylight", "1,2", "1,0,1", "a,b,c", "nan,1,1", "inf,1,1", "1,1e-320,1"])
def test_parse_wb_rejects(text):
    with pytest.raises(ValueError, match="--wb"):
        parse_wb(text)


@pytest.mark.parametrize("text, expected", [("auto", None), ("off", 0.0), ("0", 0.0), ("2.5", 2.5)])
def test_parse_chroma(text, expected):
    assert parse_chroma(text) == expected


@pytest.mark.parametrize("text", ["strong", "-1", "100", "nan"])
def test_parse_chroma_rejects(text):
    with pytest.raises(ValueError, match="--chroma-nr"):
        parse_chroma(text)


@pytest.mark.parametrize("text, shot, read", [("0.002,0.01", 0.002, 0.01), (" 1e-3 , 0 ", 1e-3, 0.0)])
def test_parse_noise_pair(text, shot, read):
    p = parse_noise(text)
    assert (p.shot, p.read, p.source) == (pytest.approx(shot), pytest.approx(read), "user")


@pytest.mark.parametrize("omega", OMEGAS)
def test_parse_noise_omega_splits_like_real_cameras(omega):
    p = parse_noise(str(omega))
    assert p.omega == pytest.approx(omega, rel=1e-6)
    assert p.read**2 == pytest.approx(noise.read_variance_for_shot(p.shot), rel=1e-3)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "0", "-1", "1,2,3", "-1,0.1", "0,0", "nan", "inf", "1e300", "1e9", "2", "1e-3,nan", "1e300,1e300", "0.5,1"],
)
def test_parse_noise_rejects(text):
    """Including levels beyond noise.MAX_OMEGA (noise as large as the full scale), which once overflowed
    (1e300) or sized a filter of gigabytes (1e9)."""
    with pytest.raises(ValueError, match="--noise") as info:
        parse_noise(text)
    assert "\n" not in str(info.value)


def test_parse_noise_takes_the_ceiling_itself():
    assert parse_noise(str(noise.MAX_OMEGA)).omega == pytest.approx(noise.MAX_OMEGA)
    assert parse_noise("0,1").omega == noise.MAX_OMEGA
