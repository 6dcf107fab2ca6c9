"""A seeded fuzz harness for what camnet reads: mutated DNGs through ``camnet develop`` and
``camnet inspect``, mutated weight files through ``load_weights`` (and ``develop --style``).

    python -m tests.fuzz --count 1000 --seed 1 [--keep DIR]

Every run is a subprocess with a timeout, its whole process tree's peak memory measured, and
what the README promises checked: exit codes 0, 1 or 2, no traceback, one JSON record per
input, one ``error: <path>: <reason>`` line per failed input and nothing else on stderr but
warnings and the summary, good copies developed. Problems are returned as findings (one line
each, naming the mutant and how it was made), not raised, so that one run reports them all.

Mutant ``i`` of a seed is the same whatever ``--count``, so a long run's finding reproduces in a
shorter one of the same seed; ``--keep DIR`` keeps the files (``DIR/raw``, ``DIR/weights``), how each
was made (``DIR/corpus.jsonl``) and the logs of every run (``DIR/logs``) to rerun by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import reprlib
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from camnet_cli.dng import DngMetadata
from tests.conftest import EXAMPLE_DNG, save_tiny_weights, synthetic_raw, write_synthetic_dng

MEMORY_BOUND_MB = 2048  # no camnet process may peak above this on these small files
KILL_MB = 2 * MEMORY_BOUND_MB  # a tree with a process this large is killed: the finding is made, the machine kept
POLL_S = 0.02
GOOD_EVERY = 10  # every tenth mutant is an unmutated copy, which must still develop
DECODE_TIMEOUT_S = 20  # camnet's own per-file decoder timeout; a tiny file that needs it hung
EXIT_CODES = (0, 1, 2)  # 3 is camnet's internal error, negative a signal
_SUMMARY = re.compile(r"developed \d+, skipped \d+, failed \d+ in ")
INSPECT_KEYS = {
    "path", "make", "model", "iso", "exposure_time", "f_number", "focal_length", "lens", "date", "cfa_pattern", "width", "height",
    "black_level", "white_level", "wb", "orientation", "noise",
}


@dataclass(frozen=True)
class Mutant:
    """One input of the corpus.

    Attributes:
        how: what was done to which seed, enough to make it again.
        expect: "ok" (must be developed / loaded), "refused" (must fail with one line),
            "any" (either, cleanly) or "folder" (an input that expands to no file).
    """

    path: Path
    how: str
    expect: str = "any"

    @property
    def name(self) -> str:
        """The path as given on camnet's command line (undecodable bytes as surrogates)."""
        return os.fsdecode(self.path)


@dataclass
class Run:
    """A finished subprocess: what it printed and what it cost."""

    label: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timeout: float
    peak_mb: float = 0.0
    timed_out: bool = False
    over_memory: bool = False
    leftovers: int = 0  # processes of its session still alive after it exited


@dataclass
class Report:
    """What a harness run found, and what it ran: the findings and the summary's numbers."""

    findings: list[str] = field(default_factory=list)
    files: int = 0
    developed: int = 0
    refused: int = 0
    peak_mb: float = 0.0
    seconds: float = 0.0


# --- running a watched subprocess ---------------------------------------------------------------


def run_watched(argv: list[str], *, label: str, env: dict[str, str], timeout: float, logs: Path) -> Run:
    """Run ``argv`` in a session of its own, polling the memory of every process of that session
    (decoder children and the forkserver included) every ``POLL_S``; kill it at ``timeout``."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{label}.out", logs / f"{label}.err"
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True)
    peak_kb, timed_out, over_memory = 0, False, False
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        for hwm, rss in _session_memory(proc.pid):
            peak_kb = max(peak_kb, hwm)
            over_memory |= rss > KILL_MB * 1024
        timed_out = time.monotonic() - started > timeout
        if timed_out or over_memory:
            _kill_session(proc.pid)
            pid, status, _ = os.wait4(proc.pid, 0)
            break
        time.sleep(POLL_S)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    seconds = time.monotonic() - started
    # Not usage.ru_maxrss: Linux carries the (v)forking parent's peak across exec into it, so under
    # pytest it reports the test runner's memory. VmHWM is per address space, polled above.
    return Run(
        label,
        proc.returncode,
        stdout=out_path.read_bytes().decode("utf-8", "backslashreplace"),
        stderr=err_path.read_bytes().decode("utf-8", "backslashreplace"),
        seconds=seconds,
        timeout=timeout,
        peak_mb=peak_kb / 1024,
        timed_out=timed_out,
        over_memory=over_memory,
        leftovers=_leftovers(proc.pid),
    )


def _session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, state) of the live processes of session ``sid``, from /proc (none where there is no /proc)."""
    found = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()  # the command name may hold spaces
            except (OSError, IndexError):
                continue
            if len(fields) > 3 and int(fields[3]) == sid:
                found.append((int(name), fields[0].decode()))
    return found


def _session_memory(sid: int) -> list[tuple[int, int]]:
    """(VmHWM, VmRSS) in kB of each process of session ``sid``."""
    out = []
    for pid, _ in _session_processes(sid):
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                status = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        except OSError:
            continue
        out.append(tuple(int(status.get(key, b"0").split()[0]) for key in (b"VmHWM", b"VmRSS")))
    return out


def _kill_session(sid: int) -> None:
    for pid, _ in _session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _leftovers(sid: int, grace: float = 3.0) -> int:
    """How many processes of the session outlive its leader by ``grace`` seconds (then killed)."""
    deadline = time.monotonic() + grace
    while True:
        alive = [pid for pid, state in _session_processes(sid) if state != "Z"]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    _kill_session(sid)
    return len(alive)


def run_findings(run: Run, *, allowed_codes: tuple[int, ...] = EXIT_CODES) -> list[str]:
    """What is wrong with a run whatever its inputs: exit, signal, hang, traceback, memory."""
    found = []
    internal = next((line for line in run.stderr.split("\n") if "internal error" in line), "")
    if run.timed_out:
        found.append(f"{run.label}: hang: still running after {run.timeout:.0f} s (killed)")
    elif run.over_memory:
        found.append(f"{run.label}: a process passed {KILL_MB} MB (killed)")
    elif run.returncode < 0:
        found.append(f"{run.label}: killed by {signal.Signals(-run.returncode).name}")
    elif run.returncode not in allowed_codes:
        found.append(f"{run.label}: exit code {run.returncode}" + (f" ({internal[:300]})" if internal else ""))
    for where, text in (("stdout", run.stdout), ("stderr", run.stderr)):
        if "Traceback" in text:
            tail = [line for line in text.split("\n") if line.strip()]
            found.append(f"{run.label}: a traceback on {where}, ending {tail[-1][:300]!r}")
    if run.peak_mb > MEMORY_BOUND_MB:
        found.append(f"{run.label}: peak memory {run.peak_mb:.0f} MB, over the {MEMORY_BOUND_MB} MB bound")
    if run.leftovers:
        found.append(f"{run.label}: {run.leftovers} processes still running after it exited")
    return found


def _lines(text: str) -> list[str]:
    """Lines as a script splits them: on newlines only (``str.splitlines`` also splits on \\x1c, \\x85, \\u2028...)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _strict_json(line: str) -> object:
    """``json.loads`` that refuses NaN and Infinity, which are no JSON and break other parsers."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


# How a name must appear in a one-line message: \n, \r and \t escaped as such, other control
# characters as \xNN (the harness's contract, kept apart from camnet's own code on purpose).
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {10: "\\n", 13: "\\r", 9: "\\t"}


def _printed(text: str) -> str:
    """``text`` as camnet prints it on one line: control characters escaped, and what UTF-8 cannot
    encode (a file name's undecodable bytes) backslash-escaped, as Python's stderr does."""
    return text.translate(_ESCAPES).encode("utf-8", "backslashreplace").decode("utf-8")


# --- the raw corpus ------------------------------------------------------------------------------

# The tags absurd values are written over, by code.
TARGET_TAGS = {
    256: "ImageWidth",
    257: "ImageLength",
    258: "BitsPerSample",
    273: "StripOffsets",
    274: "Orientation",
    279: "StripByteCounts",
    33421: "CFARepeatPatternDim",
    33422: "CFAPattern",
    34855: "ISO",
    50714: "BlackLevel",
    50717: "WhiteLevel",
    50721: "ColorMatrix1",
    50728: "AsShotNeutral",
    51041: "NoiseProfile",
}
ABSURD = (0, -1, 1e300, 1e9, math.nan, math.inf, -math.inf, 65535, 2**32 - 1, 2**31, 1e-300)
# Bits of each TIFF integer type (TIFF 6.0 section 2; 13 is IFD, 16-18 BigTIFF's).
_INT_BITS = {1: 8, 2: 8, 3: 16, 4: 32, 6: 8, 7: 8, 8: 16, 9: 32, 13: 32, 16: 64, 17: 64, 18: 64}


@dataclass(frozen=True)
class _Tag:
    code: int
    dtype: int
    count: int
    entry: int  # file offset of its 12-byte IFD entry
    value: int  # file offset of its value (inside the entry when it fits in 4 bytes)


@dataclass(frozen=True)
class _Seed:
    """An unmutated raw and where its structure lies."""

    name: str
    data: bytes
    order: str  # struct byte order, "<" or ">"
    ifd: int  # offset of IFD 0
    entries: int
    tags: dict[int, _Tag]


def _seed(name: str, path: Path) -> _Seed:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tags = {t.code: _Tag(t.code, int(t.dtype), t.count, t.offset, t.valueoffset) for t in page.tags.values()}
        order = tif.byteorder
    data = path.read_bytes()
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    return _Seed(name, data, order, ifd, struct.unpack_from(order + "H", data, ifd)[0], tags)


def raw_seeds(folder: Path, example: bool = True) -> list[_Seed]:
    """Small synthetic DNGs of different kinds (Bayer phase, levels, noise profile, orientation,
    ISO, missing white balance and matrix) and, if asked, the shipped example raw."""
    size = {"height": 64, "width": 96}
    specs = {
        "noisy-grbg.dng": (
            synthetic_raw(shot=4e-3, read=4e-3, seed=1, **size),
            {"cfa_offset": (0, 1), "metadata": DngMetadata(iso=3200, exposure_time=1 / 250, orientation=6)},
        ),
        "plain-rggb.dng": (
            synthetic_raw(seed=2, **size),
            {"black": (510, 512, 514, 516), "with_noise_profile": False, "metadata": DngMetadata(iso=100, f_number=2.8, orientation=1)},
        ),
        "bare-gbrg.dng": (
            synthetic_raw(seed=3, **size),
            {"cfa_offset": (1, 0), "with_wb": False, "with_matrix": False, "metadata": DngMetadata(orientation=8, date="2024:01:02 03:04:05")},
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    seeds = []
    for name, (raw, options) in specs.items():
        write_synthetic_dng(folder / name, raw, **options)
        seeds.append(_seed(name, folder / name))
    if example and EXAMPLE_DNG.exists():
        seeds.append(_seed(EXAMPLE_DNG.name, EXAMPLE_DNG))
    return seeds


def raw_corpus(folder: Path, count: int, seed: int, seeds: list[_Seed]) -> list[Mutant]:
    """``count`` mutants of ``seeds`` (every ``GOOD_EVERY``-th an unmutated copy), then the special files."""
    folder.mkdir(parents=True, exist_ok=True)
    # The example raw is 100 times the synthetic ones: a few of its mutants are enough.
    odds = np.array([1.0 if s.name != EXAMPLE_DNG.name else 0.25 for s in seeds])
    corpus = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        if i % GOOD_EVERY == 0:
            base = seeds[(i // GOOD_EVERY) % len(seeds)]
            path = folder / f"m{i:04d}-good.dng"
            path.write_bytes(base.data)
            corpus.append(Mutant(path, f"unmutated copy of {base.name}", "ok"))
            continue
        base = seeds[rng.choice(len(seeds), p=odds / odds.sum())]
        data = bytearray(base.data)
        kinds = [_pick(rng, _RAW_MUTATIONS)] + ([_pick(rng, _RAW_MUTATIONS)] if rng.random() < 0.15 else [])
        kinds.sort(key=lambda k: k == "truncate")  # a truncation last: the others need the offsets intact
        hows = [_RAW_MUTATIONS[k][1](data, base, rng) for k in kinds]
        path = folder / f"m{i:04d}-{'+'.join(kinds)}.dng"
        path.write_bytes(bytes(data))
        corpus.append(Mutant(path, f"{base.name}: {'; '.join(hows)}", "refused" if "truncate" in kinds else "any"))
    return corpus + special_files(folder, seeds[0])


def _one(rng: np.random.Generator, options: list | tuple) -> object:
    """One of ``options``, as it is: ``rng.choice`` would turn them into one numpy dtype (2**64 - 1 into a float)."""
    return options[int(rng.integers(len(options)))]


def _pick(rng: np.random.Generator, table: dict[str, tuple[float, Callable]]) -> str:
    names = list(table)
    odds = np.array([table[n][0] for n in names])
    return names[rng.choice(len(names), p=odds / odds.sum())]


def _flip(data: bytearray, seed: _Seed, rng: np.random.Generator) -> str:
    """1-20 bytes changed, most in the first KB (header, IFD, tag values), some in the first 4 KB."""
    offsets = []
    for _ in range(int(rng.integers(1, 21))):
        u = rng.random()
        end = min(len(data), 1024 if u < 0.6 else 4096 if u < 0.85 else len(data))
        at = int(rng.integers(0, end))
        data[at] = data[at] ^ (1 << int(rng.integers(8))) if rng.random() < 0.5 else _one(rng, [0, 0xFF, int(rng.integers(256))])
        offsets.append(at)
    return f"bytes changed at offsets {sorted(offsets)}"


def _truncate(data: bytearray, seed: _Seed, rng: np.random.Generator) -> str:
    at = int(rng.integers(0, min(len(data), 1024))) if rng.random() < 0.5 else int(rng.integers(0, len(data)))
    del data[at:]
    return f"truncated to {at} bytes"


def _tag_value(data: bytearray, seed: _Seed, rng: np.random.Generator) -> str:
    """An absurd value written over one or all of a real tag's values."""
    tag = seed.tags[_one(rng, [c for c in TARGET_TAGS if c in seed.tags])]
    value = ABSURD[int(rng.integers(len(ABSURD)))]
    every = rng.random() < 0.5 or tag.count == 1
    indices = range(min(tag.count, 64)) if every else [int(rng.integers(tag.count))]
    encoded = _encode(value, tag.dtype, seed.order)
    for k in indices:
        at = tag.value + k * len(encoded)
        data[at : at + len(encoded)] = encoded
    which = "every value" if every else f"value {indices[0]}"
    return f"{TARGET_TAGS[tag.code]} ({tag.code}, type {tag.dtype}, count {tag.count}) := {value!r} at {which}"


def _encode(value: float, dtype: int, order: str) -> bytes:
    """``value`` as a value of TIFF type ``dtype``: integers wrap (-1 is all ones) or saturate,
    rationals give 0/0 for NaN and 1/0 for infinities, floats overflow to infinity."""
    if dtype in (11, 12):
        if dtype == 11 and math.isfinite(value) and abs(value) > 3.4e38:
            value = math.copysign(math.inf, value)
        return struct.pack(order + ("f" if dtype == 11 else "d"), value)
    if dtype in (5, 10):
        if math.isnan(value):
            num, den = 0, 0
        elif math.isinf(value):
            num, den = int(math.copysign(1, value)), 0
        elif 0 < abs(value) < 1:
            num, den = 1, 2**32 - 1
        else:
            num, den = _as_int(value, 32), 1
        return struct.pack(order + "II", num & 0xFFFFFFFF, den)
    bits = _INT_BITS.get(dtype, 8)
    return _as_int(value, bits).to_bytes(bits // 8, "little" if order == "<" else "big")


def _as_int(value: float, bits: int) -> int:
    mask = (1 << bits) - 1
    if math.isnan(value) or value >= 2**bits:
        return mask
    if value == -math.inf:
        return 1 << (bits - 1)  # the most negative two's-complement value
    return int(value) & mask


def _tag_structure(data: bytearray, seed: _Seed, rng: np.random.Generator) -> str:
    """A real tag's IFD entry given an absurd count, type or value offset."""
    tag = seed.tags[_one(rng, [c for c in TARGET_TAGS if c in seed.tags])]
    name = f"{TARGET_TAGS[tag.code]} ({tag.code})"
    what = _one(rng, ["count", "type", "offset"])
    if what == "count":
        value = _one(rng, [0, 2, 65535, 2**31, 2**32 - 1, tag.count * 1000])
        struct.pack_into(seed.order + "I", data, tag.entry + 4, value)
    elif what == "type":
        value = _one(rng, [0, 1, 2, 3, 4, 5, 7, 9, 11, 12, 13, 19, 65535])
        struct.pack_into(seed.order + "H", data, tag.entry + 2, value)
    else:
        value = _one(rng, [0, 8, seed.ifd, len(data) - 1, len(data), 2**31, 2**32 - 1])
        struct.pack_into(seed.order + "I", data, tag.entry + 8, value)
    return f"{name} entry: {what} := {value}"


def _ifd_structure(data: bytearray, seed: _Seed, rng: np.random.Generator) -> str:
    """IFD 0's entry count, its next-IFD pointer (a loop back to itself, say) or the header's pointer to it."""
    next_at = seed.ifd + 2 + 12 * seed.entries
    what = _one(rng, ["entries", "next", "first"])
    if what == "entries":
        value = _one(rng, [0, 1, seed.entries + 1, 4096, 65535])
        struct.pack_into(seed.order + "H", data, seed.ifd, value)
    else:
        value = _one(rng, [seed.ifd, 4, 1, len(data) - 2, len(data) + 100, 2**32 - 1] + ([0] if what == "first" else []))
        struct.pack_into(seed.order + "I", data, next_at if what == "next" else 4, value)
    return {"entries": "IFD 0 entry count", "next": "IFD 0 next-IFD offset", "first": "header's IFD 0 offset"}[what] + f" := {value}"


# Relative odds and the function of each raw mutation.
_RAW_MUTATIONS: dict[str, tuple[float, Callable[[bytearray, _Seed, np.random.Generator], str]]] = {
    "flip": (0.30, _flip),
    "truncate": (0.15, _truncate),
    "tag": (0.30, _tag_value),
    "entry": (0.15, _tag_structure),
    "ifd": (0.10, _ifd_structure),
}


def special_files(folder: Path, seed: _Seed) -> list[Mutant]:
    """What a shell glob or a card can hand camnet besides raws, each where the OS allows it."""
    made = []

    def make(name: str | bytes, how: str, expect: str, create: Callable[[Path], None]) -> None:
        path = folder / os.fsdecode(name)
        try:
            create(path)
        except (OSError, NotImplementedError, AttributeError, UnicodeError):
            return
        made.append(Mutant(path, how, expect))

    def link_to_good(path: Path) -> None:
        path.with_name("link-target.bin").write_bytes(seed.data)
        os.symlink("link-target.bin", path)

    make("empty.dng", "an empty file", "refused", lambda p: p.write_bytes(b""))
    make("missing.dng", "a path to no file", "refused", lambda p: None)
    make("fifo.dng", "a FIFO (opening it waits for a writer)", "refused", lambda p: os.mkfifo(p))
    make("self-link.dng", "a symbolic link to itself", "refused", lambda p: os.symlink(p.name, p))
    make("dangling.dng", "a symbolic link to a missing file", "refused", lambda p: os.symlink("no-such-target.dng", p))
    make("link-to-good.dng", f"a symbolic link to an unmutated {seed.name}", "ok", link_to_good)
    make("folder.dng", "a folder named like a raw", "folder", lambda p: p.mkdir())
    make("new\nline.dng", f"an unmutated {seed.name} named with a newline", "ok", lambda p: p.write_bytes(seed.data))
    make("tab\tand\rcr.dng", "a truncated raw named with a tab and a carriage return", "refused", lambda p: p.write_bytes(seed.data[:100]))
    make("markup [bold]x[/bold] :smile:.dng", "a truncated raw named with Rich markup and an emoji code", "refused", lambda p: p.write_bytes(seed.data[:100]))
    make(b"latin1-\xe9.dng", f"an unmutated {seed.name} whose name is not UTF-8 (byte 0xE9)", "ok", lambda p: p.write_bytes(seed.data))
    return made


# --- the weight corpus ---------------------------------------------------------------------------


def _split(blob: bytes) -> tuple[dict, bytes]:
    """A safetensors file's JSON header and its tensor data."""
    (size,) = struct.unpack_from("<Q", blob)
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def _join(header: dict | str, data: bytes) -> bytes:
    """A safetensors file from a header (a dict, or JSON text as is) and tensor data."""
    raw = (header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))).encode("utf-8", "surrogatepass")
    raw += b" " * (-len(raw) % 8)  # safetensors pads its header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + data


def _nested(depth: int = 100_000, kind: str = "[") -> str:
    return "[" * depth + "]" * depth if kind == "[" else '{"a":' * depth + "1" + "}" * depth


def _tensors(header: dict) -> list[str]:
    return sorted(k for k in header if k != "__metadata__")


# Absurd values for config fields, by field; fields a network lacks are refused as unknown.
CONFIG_EDITS = {
    "channels": ([10**9] * 5, [-8] * 5, [0] * 5, ["8"] * 5, "16", [], [8] * 100, 1e9, None, [8.5] * 5, [2**63] * 5),
    "in_channels": (10**9, 1e9, -1, 0, "12", math.nan, None),
    "dilations": ([0] * 5, [10**6] * 5, [-1] * 5, [math.nan] * 5),
    "notch": (math.nan, 1e9, -1.0, math.inf, "2", None),
    "base": (math.inf, -math.inf, math.nan, 1e300, -2.0),
    "residual": ("yes", 1, None),
    "global_block": ("no", 0, []),
    "skip": ("sideways", 0),
    "net": ("bogus", 1, None, ["enhance"]),
}
WHOLE_CONFIGS = ("not json", "[]", "null", "{}", "1e999", '{"net": "enhance"}', _nested(), _nested(kind="{"))


def _w_config(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    meta = header["__metadata__"]
    if rng.random() < 0.2:
        meta["config"] = WHOLE_CONFIGS[int(rng.integers(len(WHOLE_CONFIGS)))]
        return _join(header, data), f"config := {reprlib.repr(meta['config'])}", "refused"
    config = json.loads(meta["config"])
    key = _one(rng, list(CONFIG_EDITS))
    config[key] = CONFIG_EDITS[key][int(rng.integers(len(CONFIG_EDITS[key])))]
    meta["config"] = json.dumps(config)
    return _join(header, data), f"config {key} := {reprlib.repr(config[key])}", "refused"


def _w_metadata(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    meta = header["__metadata__"]
    edits = {
        "__metadata__ as a list": lambda: header.update(__metadata__=list(meta.items())),
        "__metadata__ as a string": lambda: header.update(__metadata__=json.dumps(meta)),
        "no __metadata__": lambda: header.pop("__metadata__"),
        "stage := 'bogus'": lambda: meta.update(stage="bogus"),
        "stage := ''": lambda: meta.update(stage=""),
        "stage := 1": lambda: meta.update(stage=1),
        "no stage": lambda: meta.pop("stage"),
        "format := 'camnet-weights/99'": lambda: meta.update(format="camnet-weights/99"),
        "format := 'safetensors'": lambda: meta.update(format="safetensors"),
        "config as an object, not a string": lambda: meta.update(config=json.loads(meta["config"])),
        "noise_range := '[NaN, 1]'": lambda: meta.update(noise_range="[NaN, 1]"),
        "noise_range := '[1e999, 1]'": lambda: meta.update(noise_range="[1e999, 1]"),
        "noise_range := '[1]'": lambda: meta.update(noise_range="[1]"),
        "noise_range := 'x'": lambda: meta.update(noise_range="x"),
        "noise_range nested 100,000 deep": lambda: meta.update(noise_range=_nested()),
    }
    how = _one(rng, list(edits))
    edits[how]()
    return _join(header, data), how, "refused"


def _w_nested(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    kind = _one(rng, ["[", "{"])
    if rng.random() < 0.5:
        return _join(_nested(kind=kind), data), f"the whole header {kind} nested 100,000 deep", "refused"
    name = _one(rng, _tensors(header))
    header[name] = "\x00nest"
    text = json.dumps(header, separators=(",", ":")).replace('"\\u0000nest"', _nested(kind=kind))
    return _join(text, data), f"tensor {name!r}'s entry {kind} nested 100,000 deep", "refused"


def _w_prefix(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    size = struct.unpack_from("<Q", blob)[0]
    value = _one(rng, [len(blob), 2 * len(blob), 2**64 - 1, 2**63, 0, 1, 7, size - 1, size + 1, size + 8, len(blob) - 8])
    return struct.pack("<Q", value) + blob[8:], f"header length prefix := {value} (file {len(blob)} bytes, header {size})", "refused"


def _w_truncate(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    start = len(blob) - len(data)
    at = int(rng.integers(start, len(blob))) if rng.random() < 0.7 else int(rng.integers(0, start))
    return blob[:at], f"truncated to {at} bytes ({'inside the tensor data' if at >= start else 'inside the header'}, which starts at {start})", "refused"


def _w_flip(region: str) -> Callable[..., tuple[bytes, str, str]]:
    def flip(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
        start = len(blob) - len(data)
        low, high = (start, len(blob)) if region == "data" else (0, start)
        out = bytearray(blob)
        offsets = sorted(int(rng.integers(low, high)) for _ in range(int(rng.integers(1, 21))))
        for at in offsets:
            out[at] ^= 1 << int(rng.integers(8))
        return bytes(out), f"bits flipped in the {region} at offsets {offsets}", "any"

    return flip


def _w_tensor(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    """One tensor's entry with offsets or a shape out of range, a dtype that is none, or gone; or one extra."""
    name = _one(rng, _tensors(header))
    entry = header[name]
    begin, end = entry["data_offsets"]
    edits = {
        "data_offsets": ([0, 2**63], [-1, end - begin - 1], [begin, begin + 10**12], [end, begin], [str(begin), str(end)], [begin], [begin, end, end]),
        "shape": ([2**40, 2**40], [-1], [1e9], [], entry["shape"] * 2, [str(s) for s in entry["shape"]], [2**62, 4]),
        "dtype": ("I64", "F8", "BOOL", 1, "f32", "U8"),
    }
    what = _one(rng, [*edits, "removed", "extra"])
    if what == "removed":
        header.pop(name)
        return _join(header, data), f"tensor {name!r} removed from the header", "refused"
    if what == "extra":
        header["extra.weight"] = {"dtype": "F32", "shape": [4], "data_offsets": [len(data), len(data) + 16]}
        return _join(header, data), "an extra tensor whose data is past the end", "refused"
    entry[what] = edits[what][int(rng.integers(len(edits[what])))]
    return _join(header, data), f"tensor {name!r} {what} := {reprlib.repr(entry[what])}", "refused"


def _w_nan(header: dict, data: bytes, blob: bytes, rng: np.random.Generator) -> tuple[bytes, str, str]:
    """Tensors rewritten as NaN or infinity: all of them, one, or a single value (the tiny weights are float32)."""
    values = np.frombuffer(data, "<f4").copy()
    bad = _one(rng, [math.nan, math.inf, -math.inf])
    what = _one(rng, ["every tensor", "one tensor", "one value"])
    if what == "every tensor":
        values[:] = bad
    else:
        name = _one(rng, _tensors(header))
        begin, end = (o // 4 for o in header[name]["data_offsets"])
        if what == "one tensor":
            values[begin:end] = bad
        else:
            values[int(rng.integers(begin, end))] = bad
        what += f" of {name!r}"
    return blob[: len(blob) - len(data)] + values.tobytes(), f"{what} := {bad}", "refused"


_WEIGHT_MUTATIONS: dict[str, tuple[float, Callable[..., tuple[bytes, str, str]]]] = {
    "config": (0.20, _w_config),
    "metadata": (0.10, _w_metadata),
    "nested": (0.05, _w_nested),
    "prefix": (0.08, _w_prefix),
    "truncate": (0.12, _w_truncate),
    "flip-data": (0.15, _w_flip("data")),
    "flip-header": (0.12, _w_flip("header")),
    "tensor": (0.10, _w_tensor),
    "nan": (0.08, _w_nan),
}


def weight_corpus(folder: Path, count: int, seed: int, bases: dict[str, Path]) -> list[Mutant]:
    """``count`` mutants of the tiny weight files ``bases`` (by stage), every ``GOOD_EVERY``-th a good copy."""
    folder.mkdir(parents=True, exist_ok=True)
    stages = [s for s in ("enhance", "restore", "onestage") if s in bases]
    odds = np.array([{"enhance": 0.5, "restore": 0.35, "onestage": 0.15}[s] for s in stages])
    corpus = []
    for i in range(count):
        rng = np.random.default_rng([seed, 1_000_000 + i])
        if i % GOOD_EVERY == 0:
            stage = stages[(i // GOOD_EVERY) % len(stages)]
            path = folder / f"w{i:04d}-{stage}-good.safetensors"
            shutil.copyfile(bases[stage], path)
            corpus.append(Mutant(path, f"unmutated copy of {bases[stage].name}", "ok"))
            continue
        stage = stages[rng.choice(len(stages), p=odds / odds.sum())]
        blob = bases[stage].read_bytes()
        header, data = _split(blob)
        kind = _pick(rng, _WEIGHT_MUTATIONS)
        mutated, how, expect = _WEIGHT_MUTATIONS[kind][1](header, data, blob, rng)
        path = folder / f"w{i:04d}-{stage}-{kind}.safetensors"
        path.write_bytes(mutated)
        corpus.append(Mutant(path, f"{bases[stage].name}: {how}", expect))
    return corpus


# --- checks --------------------------------------------------------------------------------------


def _camnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "camnet_cli", *args]


def _error_lines(run: Run, corpus: list[Mutant], summary: re.Pattern[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    """stderr's ``error:`` lines by the input each names, and the findings of lines that are
    neither an error naming an input, a warning nor the summary."""
    prefixes = {m.name: f"error: {_printed(m.name)}: " for m in corpus}
    by_input: dict[str, list[str]] = {m.name: [] for m in corpus}
    found = []
    for line in _lines(run.stderr):
        if line.startswith("warning: ") or (summary is not None and summary.match(line)):
            continue
        named = [name for name, prefix in prefixes.items() if line.startswith(prefix)]
        if line.startswith("error: ") and named:
            by_input[max(named, key=len)].append(line)
        else:
            found.append(f"{run.label}: a stray stderr line {line[:300]!r}")
    return by_input, list(dict.fromkeys(found))


def _records(run: Run, corpus: list[Mutant], key: str, found: list[str]) -> dict[str, list[dict]]:
    """The JSON lines of a run by the input their ``key`` names; a finding for each line that is none."""
    records: dict[str, list[dict]] = {m.name: [] for m in corpus}
    for line in _lines(run.stdout):
        try:
            record = _strict_json(line)
            records[record[key]].append(record)  # type: ignore[index]
        except (ValueError, KeyError, TypeError) as e:
            found.append(f"{run.label}: a stdout line that is no record of an input ({e}): {line[:300]!r}")
    return records


def check_develop(run: Run, corpus: list[Mutant], sizes: dict[str, tuple[int, int]]) -> tuple[list[str], int, int]:
    """Findings of the one ``develop --json`` run over the raw corpus, and how many were developed and refused.

    Args:
        sizes: (width, height) that ``inspect`` reported, by input: a developed file must have it.
    """
    found = run_findings(run)
    errors, stray = _error_lines(run, corpus, _SUMMARY)
    found += stray
    records = _records(run, corpus, "input", found)
    missing = [m for m in corpus if m.expect != "folder" and not records[m.name]]
    if missing:
        found.append(f"{run.label}: no JSON record for {len(missing)} of {len(corpus)} inputs, e.g. " + ", ".join(repr(m.name) for m in missing[:5]))
    developed = refused = 0
    for m in corpus:
        what = f"develop {m.name!r} ({m.how})"
        if len(records[m.name]) > 1:
            found.append(f"{what}: {len(records[m.name])} JSON records")
        if not records[m.name]:
            if m.expect == "folder" and errors[m.name]:
                found.append(f"{what}: an error line but no record: {errors[m.name][0][:300]!r}")
            continue
        r = records[m.name][0]
        if set(r) != {"input", "output", "seconds", "status", "error"}:
            found.append(f"{what}: record keys {sorted(r)}")
            continue
        status, message = r["status"], r["error"]
        if status == "failed":
            refused += 1
            if len(errors[m.name]) != 1:
                found.append(f"{what}: failed with {len(errors[m.name])} error lines on stderr naming it, not 1 (record: {str(message)[:200]!r})")
            if not isinstance(message, str) or not message.startswith(f"{m.name}: "):
                found.append(f"{what}: failed, but its record's error does not name it: {str(message)[:200]!r}")
            elif "internal error" in message:
                found.append(f"{what}: internal error: {message[len(m.name) + 2 :][:300]}")
            elif "did not finish within" in message:
                found.append(f"{what}: the decoder hung: {message[len(m.name) + 2 :][:300]}")
            elif m.expect == "ok":
                found.append(f"{what}: a good file failed: {message[len(m.name) + 2 :][:300]}")
        elif status == "ok":
            developed += 1
            if errors[m.name]:
                found.append(f"{what}: developed, yet named on stderr: {errors[m.name][0][:300]!r}")
            if m.expect == "refused":
                found.append(f"{what}: developed, but should have been refused")
            found += _check_output(what, r["output"], sizes.get(m.name))
        else:
            found.append(f"{what}: status {status!r} in a fresh output folder: {str(message)[:200]!r}")
    return found, developed, refused


def _check_output(what: str, output: object, size: tuple[int, int] | None) -> list[str]:
    """A developed file exists, opens, and has the size ``inspect`` said (orientation applied)."""
    if not isinstance(output, str) or not Path(output).is_file() or Path(output).stat().st_size == 0:
        return [f"{what}: developed, but its output {output!r} is no file"]
    try:
        with Image.open(output) as img:
            got = img.size
    except OSError as e:
        return [f"{what}: its output {output!r} does not open ({e})"]
    if size is not None and got != size:
        return [f"{what}: developed as {got[0]}x{got[1]}, but inspect says {size[0]}x{size[1]}"]
    return []


def check_inspect(run: Run, corpus: list[Mutant]) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Findings of the one ``inspect --json`` run, and the (width, height) of each file it read."""
    found = run_findings(run)
    errors, stray = _error_lines(run, corpus, None)
    found += stray
    records = _records(run, corpus, "path", found)
    sizes = {}
    for m in corpus:
        what = f"inspect {m.name!r} ({m.how})"
        got, named = records[m.name], errors[m.name]
        if m.expect == "folder":
            if got or named:
                found.append(f"{what}: a folder gave {len(got)} records and {len(named)} error lines")
            continue
        if len(got) + len(named) != 1:
            found.append(f"{what}: {len(got)} records and {len(named)} error lines, not one of them")
        if named and "internal error" in named[0]:
            found.append(f"{what}: internal error: {named[0][:300]}")
        elif named and "did not finish within" in named[0]:
            found.append(f"{what}: the decoder hung: {named[0][:300]}")
        elif m.expect == "ok" and not got:
            found.append(f"{what}: a good file was not read: {named[0][:300] if named else 'no line'}")
        if m.expect == "refused" and got:
            found.append(f"{what}: read, but should have been refused")
        if got:
            problem = _record_problem(got[0])
            if problem:
                found.append(f"{what}: {problem}")
            else:
                sizes[m.name] = (got[0]["width"], got[0]["height"])
    return found, sizes


def _record_problem(r: dict) -> str:
    """What breaks the README's description of an ``inspect --json`` record; "" if nothing."""

    def number(x: object, low: float = -math.inf, positive: bool = False) -> bool:
        return type(x) in (int, float) and math.isfinite(x) and x >= low and (x > 0 or not positive)  # type: ignore[operator]

    if set(r) != INSPECT_KEYS:
        return f"record keys {sorted(r)}"
    noise = r["noise"]
    checks = {
        "width, height": all(type(v) is int and v > 0 for v in (r["width"], r["height"])),
        "orientation": r["orientation"] in range(1, 9),
        "cfa_pattern": r["cfa_pattern"] in ("RGGB", "BGGR", "GRBG", "GBRG"),
        "iso": r["iso"] is None or number(r["iso"], positive=True),
        "exposure_time": r["exposure_time"] is None or number(r["exposure_time"], positive=True),
        "black_level": isinstance(r["black_level"], list) and len(r["black_level"]) == 4 and all(number(b, 0) for b in r["black_level"]),
        "white_level": number(r["white_level"], positive=True),
        "wb": isinstance(r["wb"], list) and len(r["wb"]) == 3 and all(number(g, positive=True) for g in r["wb"]),
        "noise": isinstance(noise, dict)
        and all(number(noise.get(k), 0) for k in ("shot", "read"))
        and number(noise.get("omega"), positive=True)
        and noise.get("source") in ("user", "dng", "table", "estimated"),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if not bad and max(r["black_level"]) >= r["white_level"]:
        bad = ["black_level >= white_level"]
    return f"implausible {', '.join(bad)}: {reprlib.repr({k: r[k] for k in r if k != 'path'})}" if bad else ""


# Loads each weight file given and prints one JSON line for it: ok, the WeightsError, or any
# other exception (a bug; where it was raised, and the loop goes on).
_LOAD_LOOP = """
import json, sys, traceback
from camnet_cli.weights import WeightsError, load_weights
for path in sys.argv[1:]:
    try:
        load_weights(path)
        line = {"path": path, "status": "ok"}
    except WeightsError as e:
        line = {"path": path, "status": "refused", "error": str(e)}
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        line = {"path": path, "status": "crash", "error": f"{type(e).__name__}: {e} (raised at {where.filename}:{where.lineno})"[:500]}
    print(json.dumps(line), flush=True)
"""


def check_loads(run: Run, corpus: list[Mutant]) -> tuple[list[str], dict[str, str]]:
    """Findings of the ``load_weights`` loop, and each file's status there ("ok", "refused", "crash")."""
    found = run_findings(run, allowed_codes=(0,))
    results: dict[str, dict] = {}
    for line in _lines(run.stdout):
        try:
            record = _strict_json(line)
            results[record["path"]] = record  # type: ignore[index]
        except (ValueError, KeyError, TypeError):
            found.append(f"{run.label}: a stray stdout line {line[:300]!r}")
    found += [f"{run.label}: a stray stderr line {line[:300]!r}" for line in dict.fromkeys(_lines(run.stderr))]
    for m in corpus:
        what = f"load_weights({m.name!r}) ({m.how})"
        r = results.get(m.name)
        if r is None:
            found.append(f"{what}: no result (the loop died before it)")
        elif r["status"] == "crash":
            found.append(f"{what}: raised {r['error']}, not a WeightsError")
        elif r["status"] == "ok" and m.expect == "refused":
            found.append(f"{what}: loaded, but should have been refused")
        elif r["status"] == "refused":
            if m.expect == "ok":
                found.append(f"{what}: a good file refused: {r['error'][:300]}")
            if "\n" in r["error"] or not r["error"].startswith(f"{m.name}: "):
                found.append(f"{what}: the refusal is not one line naming the file: {r['error'][:300]!r}")
    return found, {name: r["status"] for name, r in results.items()}


# Reads each raw given in this one process, as a decoder child does, and prints one JSON line per
# warning it raises: which input a warning on a batch's stderr came from.
_WARNINGS_LOOP = """
import json, sys, warnings
from camnet_cli.raw import load_frame
for path in sys.argv[1:]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_frame(path)
        except Exception:
            pass
    for w in caught:
        print(json.dumps({"path": path, "warning": f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}"}), flush=True)
"""


def attribute_warnings(run: Run, corpus: list[Mutant]) -> list[str]:
    """Findings of the Python warnings ``load_frame`` raises, by input (from ``_WARNINGS_LOOP``)."""
    found = run_findings(run, allowed_codes=(0,))
    how = {m.name: m.how for m in corpus}
    for line in _lines(run.stdout):
        try:
            r = _strict_json(line)
            found.append(f"load_frame({r['path']!r}) ({how[r['path']]}) warns {r['warning'][:300]}")  # type: ignore[index]
        except (ValueError, KeyError, TypeError):
            found.append(f"{run.label}: a stray stdout line {line[:300]!r}")
    return found


def check_style_run(run: Run, mutant: Mutant, loaded: str | None) -> tuple[list[str], bool]:
    """Findings of ``develop GOOD --style/--restore MUTANT``, and whether it developed the raw."""
    what = f"develop with {mutant.name!r} ({mutant.how})"
    found = [f.replace(run.label, what, 1) for f in run_findings(run)]
    errors = [line for line in _lines(run.stderr) if line.startswith("error: ")]
    found += [f"{what}: a stray stderr line {line[:300]!r}" for line in _lines(run.stderr) if not line.startswith(("error: ", "warning: "))]
    records = []
    for line in _lines(run.stdout):
        try:
            records.append(_strict_json(line))
        except ValueError:
            found.append(f"{what}: a stdout line that is no JSON: {line[:300]!r}")
    if run.returncode == 0:
        if len(records) != 1 or records[0].get("status") != "ok":  # type: ignore[union-attr]
            found.append(f"{what}: exit 0 without one ok record: {run.stdout[:300]!r}")
        if loaded == "refused":
            found.append(f"{what}: developed with a file load_weights refuses")
    elif run.returncode == 2:
        if len(errors) != 1 or _printed(mutant.name) not in errors[0]:
            found.append(f"{what}: refused with {len(errors)} error lines, not one naming the file: {errors[:2]!r}")
        if loaded == "ok" and not any("weights are needed here" in e for e in errors):
            found.append(f"{what}: refused a file load_weights accepts: {errors[:1]!r}")
    elif run.returncode == 1:
        found.append(f"{what}: the good raw failed: {errors[:1]!r}")
    return found, run.returncode == 0


# --- the harness ---------------------------------------------------------------------------------


def run(work: Path, *, count: int, weight_count: int, seed: int, style_runs: bool = False, example: bool = True) -> Report:
    """Make the corpora in ``work`` and run them through camnet: ``count`` raw mutants (plus the
    special files) and ``weight_count`` weight-file mutants; ``style_runs`` also develops a good
    raw with each restore and enhance weight mutant (slow: one camnet start per mutant)."""
    started = time.monotonic()
    report = Report()
    logs = work / "logs"
    base = work / "weights" / "base"
    base.mkdir(parents=True, exist_ok=True)
    bases = save_tiny_weights(base)
    # One torch thread each: the runs go side by side, and spinning threads fighting over a few cores
    # made them twice as slow. No FORCE_COLOR: the checks read plain lines.
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"} | {"CAMNET_WEIGHTS": str(base), "OMP_NUM_THREADS": "1"}
    seeds = raw_seeds(work / "seeds", example=example)
    raws = raw_corpus(work / "raw", count, seed, seeds)
    weights = weight_corpus(work / "weights" / "mutants", weight_count, seed, bases)
    report.files = len(raws) + len(weights)
    with open(work / "corpus.jsonl", "w") as f:  # how each input was made, to reproduce a finding by hand
        f.writelines(json.dumps({"path": m.name, "how": m.how, "expect": m.expect}) + "\n" for m in raws + weights)
    names = [m.name for m in raws]
    limit = 120 + 2.0 * max(len(raws), len(weights))

    decode_timeout = ["--decode-timeout", str(DECODE_TIMEOUT_S)]
    argvs = {
        "inspect": _camnet("inspect", *names, "--json", *decode_timeout),
        "develop": _camnet("develop", *names, "-o", str(work / "out" / "develop"), "--json", "-j", "2", "--device", "cpu", *decode_timeout),
        "load_weights": [sys.executable, "-c", _LOAD_LOOP, *(m.name for m in weights)],
    }
    # Side by side: most of each run is starting Python, torch and the decoders' forkserver.
    with ThreadPoolExecutor(len(argvs)) as pool:
        futures = {label: pool.submit(run_watched, argv, label=label, env=env, timeout=limit, logs=logs) for label, argv in argvs.items()}
        inspect, develop, loads = (futures[label].result() for label in argvs)
    found, sizes = check_inspect(inspect, raws)
    report.findings += found
    found, report.developed, report.refused = check_develop(develop, raws, sizes)
    report.findings += found
    found, loaded = check_loads(loads, weights)
    report.findings += found
    report.refused += sum(s == "refused" for s in loaded.values())
    runs = [inspect, develop, loads]
    if any("Warning: " in f for f in report.findings):  # a batch's stray warning says not which input raised it
        names = [m.name for m in raws if m.expect != "folder" and m.path.is_file()]
        warned = run_watched([sys.executable, "-c", _WARNINGS_LOOP, *names], label="load_frame warnings", env=env, timeout=limit, logs=logs)
        report.findings += attribute_warnings(warned, raws)
        runs.append(warned)

    if style_runs:
        raw = str(work / "seeds" / seeds[0].name)

        def style_run(m: Mutant) -> tuple[Mutant, Run]:
            style, restore = (str(bases["enhance"]), m.name) if "-restore-" in m.path.name else (m.name, str(bases["restore"]))
            out = str(work / "out" / m.path.stem)
            argv = _camnet("develop", raw, "--style", style, "--restore", restore, "-o", out, "--json", "--device", "cpu", "-j", "1")
            return m, run_watched(argv, label=m.path.stem, env=env, timeout=180, logs=logs / "styles")

        with ThreadPoolExecutor(2) as pool:  # most of a run is one core importing torch
            for m, r in pool.map(style_run, [m for m in weights if "-onestage-" not in m.path.name]):
                found, ok = check_style_run(r, m, loaded.get(m.name))
                report.findings += found
                report.developed += ok
                runs.append(r)

    report.findings = list(dict.fromkeys(report.findings))
    report.peak_mb = max(r.peak_mb for r in runs)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="raw-file mutants (plus a dozen special files)")
    parser.add_argument("--weight-count", type=int, help="weight-file mutants (default: a quarter of --count)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, metavar="DIR", help="make the corpus and logs here (a new or empty folder) and keep them")
    parser.add_argument("--no-style-runs", action="store_true", help="skip developing a raw with each weight mutant (one camnet start each)")
    parser.add_argument("--no-example", action="store_true", help=f"mutate only the synthetic DNGs, not {EXAMPLE_DNG.name}")
    args = parser.parse_args(argv)
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: not an empty folder")
    work = args.keep or Path(tempfile.mkdtemp(prefix="camnet-fuzz-"))
    try:
        report = run(
            work,
            count=args.count,
            weight_count=args.count // 4 if args.weight_count is None else args.weight_count,
            seed=args.seed,
            style_runs=not args.no_style_runs,
            example=not args.no_example,
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for finding in report.findings:
        print(f"finding: {finding}")
    print(
        f"{report.files} files, {report.developed} developed, {report.refused} refused, {len(report.findings)} findings, "
        f"peak {report.peak_mb:.0f} MB, {report.seconds:.0f} s" + (f" (corpus and logs in {args.keep})" if args.keep else "")
    )
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
