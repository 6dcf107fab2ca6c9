"""camnet: a command-line raw photo developer built on CameraNet (Liang et al., IEEE TIP 2021)."""

__version__ = "0.2.0"
