"""camnet: a command-line raw photo developer built on CameraNet (Liang et al., IEEE TIP 2021)."""

import os
import sys

__version__ = "0.2.0"

# OpenMP threads that wait by spinning hold their cores between torch's parallel regions: beside
# another busy program, camnet's networks took 2-3x the time and the CPU (BENCHMARKS.md). OpenMP
# reads this once, when torch loads it: set here, before any module of camnet imports torch; a
# value the user set wins.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
