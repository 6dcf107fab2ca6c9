"""Sensor noise level: where it comes from and what the network is told.

All numbers are in normalised raw units: black-subtracted and divided by
(white - black), so full scale is 1. The noise model is Poissonian-Gaussian:
a pixel with true value x has variance ``shot * x + read**2``. CameraNet's
Restore-Net takes the scalar noise level ``omega = shot + read**2`` (paper Eq. 2),
the variance at full scale. ``NoiseProfile.variance`` keeps the per-pixel form.

Sources, in order of preference (``source`` field):
  ``user``      given on the command line;
  ``dng``       the file's DNG NoiseProfile tag (51041);
  ``table``     a per-camera calibration (``CALIBRATIONS``), interpolated over ISO;
  ``estimated`` fitted on the raw itself (``estimate_noise``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOISE_SOURCES = ("user", "dng", "table", "estimated")

# The most noise a photograph can have. omega is the noise variance at full scale: at 1 the noise's
# standard deviation equals the full scale (signal-to-noise 1 at white) and nothing is left to
# develop. Real cameras stay below 1e-2 even at their highest ISO (the a7R III at 25600: 5e-3).
# It bounds a raw as stored (training pairs amplified by their exposure ratio can exceed it).
MAX_OMEGA = 1.0


@dataclass(frozen=True)
class NoiseProfile:
    """Poissonian-Gaussian noise parameters in normalised raw units.

    Attributes:
        shot: variance per unit signal (lambda_shot).
        read: standard deviation of the signal-independent part (lambda_read).
        source: one of ``NOISE_SOURCES``.
    """

    shot: float
    read: float
    source: str

    @property
    def omega(self) -> float:
        """The paper's scalar noise level, lambda_shot + lambda_read**2 (Eq. 2)."""
        return self.shot + self.read**2

    def variance(self, x: np.ndarray) -> np.ndarray:
        """Per-pixel noise variance ``shot * x + read**2`` for true values ``x`` in [0, 1]."""
        return self.shot * np.clip(x, 0.0, None) + self.read**2


# --- (a) DNG NoiseProfile ----------------------------------------------------------------


def from_dng_noise_profile(values: tuple[float, ...]) -> NoiseProfile | None:
    """Read the DNG NoiseProfile tag (51041).

    The tag holds one (S, O) pair per colour plane, or one pair for all, with
    variance ``S * x + O`` on normalised values (DNG 1.6 spec, "NoiseProfile").
    Planes are averaged: Restore-Net takes one level for the frame. Returns None for a tag
    that is no noise level: not pairs, not finite, negative, zero or above ``MAX_OMEGA``.
    """
    if len(values) < 2 or len(values) % 2:
        return None
    pairs = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    shot, offset = pairs.mean(axis=0)
    if not (np.isfinite(shot) and np.isfinite(offset)) or shot < 0 or offset < 0 or not 0 < shot + offset <= MAX_OMEGA:
        return None
    return NoiseProfile(float(shot), float(math.sqrt(offset)), "dng")


# --- (b) per-camera calibration tables ---------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Noise of one camera model over its ISO range.

    Attributes:
        isos: ascending ISO settings.
        shot: normalised shot parameter at each ISO.
        read: normalised read-noise standard deviation at each ISO.
        source: where the numbers come from (shown in the docs, not to users).
    """

    isos: tuple[float, ...]
    shot: tuple[float, ...]
    read: tuple[float, ...]
    source: str


def _from_dn(rows: tuple[tuple[float, float, float], ...], full_scale: float, source: str) -> Calibration:
    """Build a Calibration from (ISO, gain K in DN per electron, read noise in DN) rows.

    In DN the variance is ``K * s + sigma**2`` for a signal of ``s`` DN; dividing by
    the full scale ``R = white - black`` gives shot = K / R and read = sigma / R.
    """
    return Calibration(
        isos=tuple(r[0] for r in rows),
        shot=tuple(r[1] / full_scale for r in rows),
        read=tuple(r[2] / full_scale for r in rows),
        source=source,
    )


# Sony A7S II (ILCE-7SM2), the SID dataset's camera; 14-bit, black 512, white 16383.
# (ISO, K [DN/e-], Gaussian read noise sigma [DN]): the per-ISO calibration released
# with PMN (Feng et al., "Learnability Enhancement for Low-light Raw Denoising",
# ACM MM 2022), megvii-research/PMN, data_process/process.py,
# get_camera_noisy_params_max ('Kmax' and 'sigGs' of 'SonyA7S2_<ISO>').
# The step between ISO 1600 and 2000 is the sensor's switch to high conversion gain.
_SONY_A7S2 = _from_dn(
    (
        (100, 0.09563, 1.0067395),
        (200, 0.19126, 1.2926387),
        (400, 0.38252, 2.0595572),
        (800, 0.76504, 3.5475867),
        (1600, 1.53008, 6.29925),
        (2000, 1.9126, 2.653871),
        (3200, 3.06016, 3.9193838),
        (6400, 6.12032, 7.1163535),
        (12800, 12.24064, 14.245901),
        (25600, 24.48128, 25.853043),
    ),
    full_scale=16383 - 512,
    source="PMN (Feng et al. 2022) per-ISO calibration of the Sony A7S II",
)

# Sony a7R III (ILCE-7RM3): 14-bit, black 512, white 16383. Its 42 MP BSI sensor is the
# generation of the A7R II's, which switches to high conversion gain (x6.35) at ISO 640
# (the a7R III too: J. Kasson, "More Sony a7RIII PTCs", blog.kasson.com, 2017).
# (ISO, K [DN/e-], read noise [DN]); K = conversion gain DN/e- times conversion gain e-/e-:
_SONY_A7R3 = _from_dn(
    (
        # B. Claff, "Sony A7RM2 DR-Pix Read Noise", photonstophotos.net, 2015: the A7R II's
        # measured read noise and conversion gains.
        (100, 0.315, 1.413),
        (200, 0.630, 2.329),
        (400, 1.260, 4.045),
        (500, 1.587, 4.918),
        (640, 2.000, 2.418),
        (800, 2.521, 2.940),
        (1600, 5.042, 5.318),
        # Our measurement on the a7R III itself: estimate_noise on the shared raw
        # sony_ILCE-7RM3_iso3200_DSC2164.ARW gave shot 6.25e-4, read 6.97e-4 (normalised);
        # Claff's A7R II model predicts 6.35e-4 and 6.60e-4 (K 10.08 DN/e-, read 10.47 DN).
        (3200, 9.922, 11.056),
        # Claff's DR-Pix model carried past his last measured setting: K proportional to ISO,
        # read = sqrt((6.553 e- * K_intermediate)^2 + 1.223 DN^2).
        (6400, 20.155, 20.835),
        (12800, 40.31, 41.616),
        (25600, 80.62, 83.206),
    ),
    full_scale=16383 - 512,
    source="Claff's A7R II read-noise model with our a7R III measurement at ISO 3200",
)

# Keyed by (EXIF Make upper-cased, EXIF Model).
CALIBRATIONS: dict[tuple[str, str], Calibration] = {
    ("SONY", "ILCE-7SM2"): _SONY_A7S2,
    ("SONY", "ILCE-7RM3"): _SONY_A7R3,
}


def from_table(make: str | None, model: str | None, iso: float | None) -> NoiseProfile | None:
    """Look a camera up in ``CALIBRATIONS`` and interpolate at ``iso``.

    Interpolation is linear in log(ISO) for log(shot) and log(read): shot noise is
    proportional to analogue gain, hence to ISO, so the log-log curve is close to a
    line between calibrated settings. Outside the calibrated ISO range there is no
    entry (the caller estimates instead of extrapolating), so no result exceeds the
    table's own levels, all below ``MAX_OMEGA``.
    """
    if not make or not model or not iso or iso <= 0:
        return None
    cal = CALIBRATIONS.get((make.strip().upper(), model.strip()))
    if cal is None or not cal.isos[0] <= iso <= cal.isos[-1]:
        return None
    log_iso = np.log(cal.isos)
    shot = float(np.exp(np.interp(math.log(iso), log_iso, np.log(cal.shot))))
    read = float(np.exp(np.interp(math.log(iso), log_iso, np.log(cal.read))))
    return NoiseProfile(shot, read, "table")


# --- (c) estimation from the raw ---------------------------------------------------------

_TILE = 8  # tile side in 2x2 cells; one tile covers 32x32 sensor pixels
_MIN_TILES = 16
_LEVEL_QUANTILE = 0.2
# The 0.2 quantile of chi2(k) / k for k = _TILE**2, by the Wilson-Hilferty approximation.
_CHI2_QUANTILE = (1 - 2 / (9 * _TILE**2) - 0.8416 * math.sqrt(2 / (9 * _TILE**2))) ** 3


def estimate_noise(packed: np.ndarray) -> NoiseProfile:
    """Fit shot and read noise on the smooth parts of one raw frame.

    After Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for
    single-image raw-data", IEEE TIP 2008: local means and local noise variances are
    measured on smooth regions, grouped into level sets by mean, and the line
    ``var = shot * mean + read**2`` is fitted to the level sets.

    Each packed plane is split into 2x2 cells and Haar-transformed. The diagonal
    detail ``(a - b - c + d) / 2`` carries the noise variance and cancels constant
    and linear signal; it is the only coefficient used for the variance. Tiles are
    judged smooth on the other coefficients, which for Gaussian noise are
    independent of the diagonal one, so the selection does not bias the variance:
    the cell means must vary no more than noise explains, and the horizontal and
    vertical details of the two green planes must be uncorrelated (sensor noise is
    independent from pixel to pixel; image texture shows in both greens).

    Args:
        packed: (4, H, W) black-subtracted, normalised planes (R, G1, G2, B),
            *not* clipped at 0.

    Returns:
        The fitted profile, ``source="estimated"``, omega at most ``MAX_OMEGA``.
    """
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise ValueError(f"expected packed planes shaped (4, H, W), got {packed.shape}")
    rows, cols = packed.shape[1] // (2 * _TILE), packed.shape[2] // (2 * _TILE)
    if rows * cols == 0:
        raise ValueError(f"frame too small to estimate noise: packed shape {packed.shape}")
    p = packed[:, : rows * 2 * _TILE, : cols * 2 * _TILE].astype(np.float64)
    a, b, c, d = p[:, 0::2, 0::2], p[:, 0::2, 1::2], p[:, 1::2, 0::2], p[:, 1::2, 1::2]

    def tiles(x: np.ndarray) -> np.ndarray:
        # (4, cell rows, cell cols) -> (4, tiles, cells per tile)
        return x.reshape(4, rows, _TILE, cols, _TILE).transpose(0, 1, 3, 2, 4).reshape(4, rows * cols, -1)

    approx = tiles((a + b + c + d) / 4)
    diag = tiles((a - b - c + d) / 2)
    hv = np.concatenate([tiles((a + b - c - d) / 2), tiles((a - b + c - d) / 2)], axis=2)
    peak = tiles(np.maximum(np.maximum(a, b), np.maximum(c, d))).max(axis=2)

    mean = approx.mean(axis=2)
    spread = approx.var(axis=2)  # ~ var / 4 for pure noise
    detail = (hv**2).mean(axis=2)  # ~ var for pure noise
    g1, g2 = hv[1] - hv[1].mean(axis=1, keepdims=True), hv[2] - hv[2].mean(axis=1, keepdims=True)
    corr = (g1 * g2).sum(axis=1) / np.sqrt((g1**2).sum(axis=1) * (g2**2).sum(axis=1) + 1e-30)
    # |corr| < 0.25 keeps ~99.5% of pure-noise tiles (its spread is 1/sqrt(128)).
    smooth = (spread <= 0.4 * detail) & (np.abs(corr) < 0.25)[None, :] & (peak < 0.95)

    mean, var, ok = mean.ravel(), (diag**2).mean(axis=2).ravel(), smooth.ravel()
    if ok.sum() < _MIN_TILES:
        # Nothing looks smooth (a tiny or fully textured frame): use every tile and let
        # the per-level median reject texture as best it can.
        ok = np.ones_like(ok)
    shot, read_var = _fit_levels(mean[ok], var[ok])
    if shot + read_var > MAX_OMEGA:
        # Levels garbled in the header make the normalised data, and what is measured on it,
        # arbitrarily large: keep the proportion, cap the level.
        scale = MAX_OMEGA / (shot + read_var)
        shot, read_var = shot * scale, read_var * scale
    return NoiseProfile(shot, math.sqrt(read_var), "estimated")


def _fit_levels(mean: np.ndarray, var: np.ndarray, n_bins: int = 24) -> tuple[float, float]:
    """Fit ``var = shot * mean + read_var`` over level sets (quantile bins of the mean)."""
    order = np.argsort(mean)
    groups = [g for g in np.array_split(order, min(n_bins, max(1, len(order) // 4))) if len(g)]
    m = np.array([np.median(mean[g]) for g in groups])
    # Texture only ever adds variance, so a low quantile of each level set is closer to
    # the noise than its median; divide by the same quantile of a pure-noise tile
    # (variance ~ chi2 with _TILE**2 degrees of freedom) to remove the bias.
    v = np.array([np.quantile(var[g], _LEVEL_QUANTILE) for g in groups]) / _CHI2_QUANTILE
    n = np.array([len(g) for g in groups], dtype=np.float64)
    shot, read_var = 0.0, float(np.median(v))
    for _ in range(4):
        # The spread of a median of variances grows with the variance: weight by n / var^2.
        model = np.maximum(shot * np.clip(m, 0, None) + read_var, 1e-12)
        w = n / model**2
        shot, read_var = _weighted_line(m, v, w)
    return shot, read_var


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares ``y = slope * x + intercept`` with both kept non-negative."""
    sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = sw * sxx - sx * sx
    if det > 0:
        slope = (sw * sxy - sx * sy) / det
        intercept = (sy - slope * sx) / sw
        if slope >= 0 and intercept >= 0:
            return float(slope), float(intercept)
    # Constrained fits: a line through the origin, or a constant.
    through_origin = sxy / sxx if sxx > 0 else 0.0
    constant = sy / sw
    cost_origin = (w * (y - through_origin * x) ** 2).sum() if through_origin > 0 else np.inf
    cost_constant = (w * (y - constant) ** 2).sum()
    if cost_origin < cost_constant:
        return float(through_origin), 0.0
    return 0.0, float(max(constant, 0.0))


# --- (d) user override -------------------------------------------------------------------

# Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019), fitted on
# real camera data: log(read variance) = 2.18 * log(shot) + 1.20 (google-research/
# google-research, unprocessing/unprocess.py, random_noise_levels).
_BROOKS_SLOPE, _BROOKS_INTERCEPT = 2.18, 1.20


def read_variance_for_shot(shot: float) -> float:
    """The read-noise variance that typically goes with a shot parameter (Brooks et al. 2019)."""
    return math.exp(_BROOKS_SLOPE * math.log(shot) + _BROOKS_INTERCEPT)


def split_omega(omega: float) -> NoiseProfile:
    """Split a scalar noise level into shot and read parts using the Brooks et al. relation."""
    if not omega > 0:
        raise ValueError(f"noise level must be positive, got {omega}")
    lo, hi = math.log(omega) - 40, math.log(omega)
    for _ in range(100):  # bisection on log(shot); shot + read_var(shot) is increasing
        mid = (lo + hi) / 2
        if math.exp(mid) + read_variance_for_shot(math.exp(mid)) > omega:
            hi = mid
        else:
            lo = mid
    shot = math.exp(lo)
    return NoiseProfile(shot, math.sqrt(max(omega - shot, 0.0)), "user")
