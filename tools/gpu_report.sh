#!/usr/bin/env bash
# One JSON report from a lent GPU machine (no network), run from the repository root:
#   tools/gpu_report.sh [RAW]    the environment, the CUDA-only tests, `camnet bench` (paper and lite,
#       tiled by default and whole, eager and compiled) and `bench --e2e` on 16 copies of RAW (default
#       ../shared/data/raw/sony_ILCE-7RM3_iso3200_DSC2164.ARW, else its copy in build/gpu/, else the
#       example raw) into $OUT/gpu_report.json (./gpu-report/ without OUT), rewritten after every step
#       so a run cut short still reports; env.log, tests.log and bench.log beside it.
#   tools/gpu_report.sh prepare  here, with network: what the GPU image lacks (rawpy and exifread
#       wheels) and a copy of the shared raw, which does not travel, into build/gpu/ (ignored: carry it).
# Every step has its own timeout and is recorded whatever it returns; GPU_REPORT_BUDGET (s, default
# 480) caps the whole. Without CUDA it records the environment, says so and exits 0.
set -u
PY=${PYTHON:-python3}
SHARED_RAW=../shared/data/raw/sony_ILCE-7RM3_iso3200_DSC2164.ARW

if [ "${1:-}" = prepare ]; then
    mkdir -p build/gpu  # the GPU image's python3 is 3.12 with torch, numpy, typer, rich, tifffile (KINDS.md)
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d build/gpu rawpy==0.28.0 exifread==3.5.1 || exit
    cp -f "$SHARED_RAW" build/gpu/ 2>/dev/null || echo "no $SHARED_RAW: the report will time the example raw"
    ls -l build/gpu
    exit 0
fi

out=${OUT:-gpu-report}
mkdir -p "$out"
steps=$(mktemp -d)
trap 'rm -rf "$steps"' EXIT
start=$(date +%s) budget=${GPU_REPORT_BUDGET:-480}
: >"$steps/index.tsv"
note() { echo "$*" | tee -a "$steps/notes.txt"; }

# step NAME GROUP SECONDS CMD...: CMD under its own timeout, never past the budget; its stdout kept
# for its JSON record, both streams appended to GROUP.log, the outcome indexed, the report rewritten.
step() {
    local name=$1 group=$2 limit=$3 left t0 rc=skipped
    shift 3
    left=$((budget - $(date +%s) + start)) t0=$(date +%s)
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -ge 20 ]; then
        timeout -k 10 "$limit" "$@" >"$steps/$name.out" 2>"$steps/$name.err"
        rc=$?
        { echo "=== $name (rc $rc): $*"; cat "$steps/$name.out" "$steps/$name.err"; } >>"$out/$group.log"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$group" "$rc" $(($(date +%s) - t0)) "$limit" "$*" | tee -a "$steps/index.tsv" | cut -f 1-5
    merge >/dev/null
}

# The report from what the steps left; with "final", a short table (the device tool returns the tail).
merge() {
    "$PY" - "$steps" "$out" "$budget" "${1:-}" <<'EOF'
import json, os, sys, time, xml.etree.ElementTree as ET
steps, out, budget, final = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "final"
def text(name):
    p = os.path.join(steps, name)
    return open(p, errors="replace").read() if os.path.exists(p) else ""
def record(name):  # the last JSON object the command printed, if it is whole
    try:
        return json.loads([s for s in text(name + ".out").splitlines() if s.startswith("{")][-1])
    except (IndexError, ValueError):
        return None
r = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "budget_s": budget, "notes": text("notes.txt").splitlines(),
     "env": {}, "tests": {}, "bench": {}, "e2e": None, "errors": []}
for row in open(os.path.join(steps, "index.tsv")):
    name, group, rc, secs, limit, cmd = row.rstrip("\n").split("\t", 5)
    e = {"cmd": cmd, "rc": None if rc == "skipped" else int(rc), "seconds": int(secs), "timeout_s": int(limit), "record": record(name)}
    if rc != "0":
        why = "skipped: budget spent" if rc == "skipped" else f"timed out after {limit} s" if rc in ("124", "137") else f"exit status {rc}"
        r["errors"].append({"step": name, "error": why, "stderr_tail": text(name + ".err").splitlines()[-8:]})
    if name == "nvidia_smi":
        r["env"]["nvidia_smi"] = text(name + ".out").strip()
    elif name == "env":
        r["env"].update(e["record"] or {})
    elif name == "tests":
        e["skipped_why"] = [s for s in text(name + ".out").splitlines() if s.startswith("SKIPPED")]
        try:
            suite = next(ET.parse(os.path.join(steps, "tests.xml")).getroot().iter("testsuite"))
            e.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
            e["passed"] = e["tests"] - e["failures"] - e["errors"] - e["skipped"]
            e["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
        except (OSError, ET.ParseError, StopIteration):
            pass
        r["tests"] = e
    elif name == "e2e":
        status = [f["status"] for f in (e["record"] or {}).get("files", [])]
        e["files_ok"], e["files_not_ok"] = status.count("ok"), len(status) - status.count("ok")
        r["e2e"] = e
    else:
        r["bench"][name] = e
json.dump(r, open(os.path.join(out, "gpu_report.json"), "w"), indent=1)
if final:
    if r["tests"]:
        print("tests: " + ", ".join(f"{r['tests'].get(k, '-')} {k}" for k in ("passed", "failures", "errors", "skipped")))
    for name, e in r["bench"].items():
        b = e["record"] or {}
        print(f"{name:22} {b.get('ms_median', '-'):>9} ms {b.get('mpix_per_s', '-'):>9} MP/s {b.get('peak_mem_mb', '-'):>9} MB  rc {e['rc']}")
    if r["e2e"]:
        print(f"e2e: {(r['e2e']['record'] or {}).get('files_per_s', '-')} files/s, {r['e2e']['files_ok']} files ok, {r['e2e']['files_not_ok']} not")
    for e in r["errors"]:
        print(f"error: {e['step']}: {e['error']}")
    print(f"report: {os.path.join(out, 'gpu_report.json')}")
EOF
}

# camnet from this checkout (it is not installed there), with the carried wheels where the image lacks them.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if "$PY" -c 'import rawpy, exifread' 2>/dev/null; then :
elif "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$steps/site" build/gpu/*.whl >>"$out/env.log" 2>&1; then
    PYTHONPATH=$PYTHONPATH:$steps/site && note "rawpy and exifread from build/gpu/*.whl"
else
    note "rawpy or exifread missing and no wheels in build/gpu: run tools/gpu_report.sh prepare here, carry build/gpu"
fi

if command -v nvidia-smi >/dev/null; then step nvidia_smi env 30 nvidia-smi; else note "no nvidia-smi here"; fi
cat >"$steps/env.py" <<'EOF'
import json, os, platform, sys
import torch
r = {"python": sys.version.split()[0], "executable": sys.executable, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
     "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform()}
try:
    import camnet_cli, rawpy
    r["camnet"], r["rawpy"] = camnet_cli.__version__, rawpy.__version__
except Exception as e:
    r["import_error"] = repr(e)
if r["cuda_available"]:
    p = torch.cuda.get_device_properties(0)
    r["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1), "sms": p.multi_processor_count}
    # The tile the default --tile picks at 4032x3024 (0: whole frame): a card with room runs it whole.
    from camnet_cli.engine import Engine
    from camnet_cli.model import EnhanceNet, RestoreNet, enhance_config, restore_config
    for m in ("paper", "lite"):
        e = Engine(RestoreNet(restore_config(m)), EnhanceNet(enhance_config(m)), device="cuda", precision="bf16")
        r[f"auto_tile_{m}"] = {"restore": e.auto_tile(e.restore_net.unet, 1512, 2016), "enhance": e.auto_tile(e.enhance_net.unet, 3024, 4032)}
print(json.dumps(r))
EOF
step env env 90 "$PY" "$steps/env.py"
if ! grep -q '"cuda_available": true' "$steps/env.out" 2>/dev/null; then
    note "no CUDA here (torch sees no GPU): environment only, no tests or benchmarks run"
    merge final
    exit 0
fi

# The CUDA-only tests: test_engine.py and any other file that skips without CUDA or marks tests gpu.
others=$(grep -lE 'skipif\(.*cuda|mark\.gpu' tests/test_*.py | grep -v test_engine.py)
# shellcheck disable=SC2086
step tests tests 180 "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$steps/tests.xml" tests/test_engine.py $others

# Both sizes at each tiling; eager, then end to end, compiled last: compiling is the slowest and the
# likeliest to fail, so a budget cut loses it rather than the rest.
bench_all() {
    local model tile args limit=90
    [ "$1" = compile ] && limit=180
    for model in paper lite; do
        for tile in ${GPU_REPORT_TILES:-auto 0}; do
            args=(--model "$model")
            [ "$tile" = auto ] || args+=(--tile "$tile")
            [ "$1" = compile ] && args+=(--compile)
            step "${model}_tile-${tile}_$1" bench $limit "$PY" -m camnet_cli bench --json --device cuda --precision bf16 \
                --resolution 4032x3024 --iters 10 --warmup 2 "${args[@]}"
        done
    done
}
bench_all eager
# bench counts a file named twice once, so files/s needs distinct copies.
raw=${1:-$SHARED_RAW}
[ -f "$raw" ] || raw=build/gpu/$(basename "$raw")
[ -f "$raw" ] || raw=$("$PY" -m camnet_cli example "$steps/example" 2>>"$out/bench.log")
mkdir -p "$steps/e2e"
for i in $(seq 1 "${GPU_REPORT_COPIES:-16}"); do cp "$raw" "$steps/e2e/$i-$(basename "$raw")"; done
note "e2e: ${GPU_REPORT_COPIES:-16} copies of $raw"
step e2e bench 150 "$PY" -m camnet_cli bench --e2e --device cuda --json -j 16 "$steps"/e2e/*
bench_all compile

merge final
grep -q '"errors": \[\]' "$out/gpu_report.json"  # exit status 1 when any step failed
