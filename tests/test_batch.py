import subprocess
import sys
import threading
from pathlib import Path

import pytest

from camnet_cli import batch, export, files
from camnet_cli.batch import Settings, plan_jobs, run_batch, source_id
from tests import crashers
from tests.conftest import synthetic_raw, write_synthetic_dng


@pytest.fixture
def raws(tmp_path):
    paths = []
    for i in range(3):
        write_synthetic_dng(tmp_path / f"img{i}.dng", synthetic_raw(height=64, width=96, seed=i))
        paths.append(tmp_path / f"img{i}.dng")
    return paths


def test_outputs_are_named_by_stem(tmp_path):
    jobs = plan_jobs([Path("a/IMG_1.ARW"), Path("b/IMG_2.dng")], tmp_path, ".jpg", linear=True)
    assert [j.output.name for j in jobs] == ["IMG_1.jpg", "IMG_2.jpg"]
    assert jobs[0].linear_output.name == "IMG_1.linear.tif"


def test_a_raw_whose_name_is_taken_by_another_raw_gets_its_own(tmp_path, raws, tiny_engine):
    """a/IMG_1 and b/IMG_1 developed one at a time (a shell loop, or xargs splitting a list): both are
    developed, under names that stay theirs in later runs, whatever else is in those runs (fails on 879fa04,
    which skipped b/IMG_1 as existing)."""
    a, b = tmp_path / "a" / "IMG_1.dng", tmp_path / "b" / "IMG_1.dng"
    for src, dst in ((raws[0], a), (raws[1], b)):
        dst.parent.mkdir()
        dst.write_bytes(src.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    first = [run_batch(plan_jobs([f], out, ".jpg"), tiny_engine, Settings(), lambda o: None)[0] for f in (a, b)]
    assert [o.status for o in first] == ["ok", "ok"]
    assert first[0].job.output.name == "IMG_1.jpg" and first[1].job.output.name == f"IMG_1-{source_id(b)[:8]}.jpg"
    # Again, one at a time and together, in either order: nothing new, nothing lost.
    for inputs in ([a], [b], [b, a]):
        again = run_batch(plan_jobs(inputs, out, ".jpg"), tiny_engine, Settings(), lambda o: None)
        assert [o.status for o in again] == ["skipped"] * len(inputs)
        assert {o.job.output for o in again} <= {o.job.output for o in first}
    assert sorted(p.name for p in out.iterdir()) == sorted(o.job.output.name for o in first)
    assert export.read_provenance(first[1].job.output)["Source"] == source_id(b)


def test_two_raws_of_one_name_in_one_batch(tmp_path, raws, tiny_engine):
    same = tmp_path / "other" / raws[0].name
    same.parent.mkdir()
    same.write_bytes(raws[1].read_bytes())
    (tmp_path / "out").mkdir()
    outcomes = run_batch(plan_jobs([raws[0], same], tmp_path / "out", ".jpg", linear=True), tiny_engine, Settings(), lambda o: None)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    stem, alt = raws[0].stem, f"{raws[0].stem}-{source_id(same)[:8]}"
    assert names == sorted([f"{stem}.jpg", f"{stem}.linear.tif", f"{alt}.jpg", f"{alt}.linear.tif"])


def test_an_output_another_run_is_developing_is_skipped(tmp_path, raws, tiny_engine):
    """A claim held elsewhere on this raw's output: skipped, not developed twice; on another raw's
    output: this raw takes its own name."""
    jobs = plan_jobs(raws[:2], tmp_path, ".jpg")
    held = [files.claim(jobs[0].output, source_id(raws[0])), files.claim(jobs[1].output, "another raw")]
    try:
        outcomes = run_batch(jobs, tiny_engine, Settings(), lambda o: None)
    finally:
        for claim in held:
            claim.release()
    assert outcomes[0].status == "skipped" and "being developed by another camnet run" in outcomes[0].error
    assert outcomes[1].status == "ok" and outcomes[1].job.output.name == f"{raws[1].stem}-{source_id(raws[1])[:8]}.jpg"
    assert not jobs[0].output.exists() and not list(tmp_path.glob(".*camnet-lock"))


def test_a_killed_runs_claim_does_not_block(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws[:1], tmp_path, ".jpg")
    files.lock_path(jobs[0].output).write_text(source_id(raws[0]))  # left by a run killed with -9: no lock held
    assert run_batch(jobs, tiny_engine, Settings(), lambda o: None)[0].status == "ok"


def test_other_settings_are_named_in_the_skip(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws[:1], tmp_path, ".jpg")
    run_batch(jobs, tiny_engine, Settings(style="a.safetensors"), lambda o: None)
    same = run_batch(jobs, tiny_engine, Settings(style="a.safetensors"), lambda o: None)[0]
    other = run_batch(jobs, tiny_engine, Settings(style="b.safetensors"), lambda o: None)[0]
    assert same.status == other.status == "skipped"
    assert "other settings" in other.error and "other settings" not in same.error


def test_a_bug_while_developing_one_file_costs_only_that_file(tmp_path, raws, tiny_engine, monkeypatch):
    """What a NoiseProfile of 1e300 did on 879fa04 (an OverflowError in the chroma filter ended the batch)."""
    real = batch.develop_frame

    def develop_frame(engine, frame, *args, **kwargs):
        if frame.path == raws[1]:
            raise TypeError("a bug")
        return real(engine, frame, *args, **kwargs)

    monkeypatch.setattr(batch, "develop_frame", develop_frame)
    outcomes = run_batch(plan_jobs(raws, tmp_path, ".jpg"), tiny_engine, Settings(), lambda o: None)
    assert [o.status for o in outcomes] == ["ok", "failed", "ok"]
    assert outcomes[1].internal and outcomes[1].error == f"{raws[1]}: internal error (TypeError: a bug)"
    assert "Traceback" in outcomes[1].details and "raise TypeError" in outcomes[1].details


def test_the_linear_companion_succeeds_or_fails_with_its_photo(tmp_path, raws, tiny_engine, monkeypatch):
    """A disk that fills while the .linear.tif is written: the failure names that file, and the photo goes
    too, so that a re-run writes both (on 879fa04 the photo stayed and the re-run skipped it)."""
    jobs = plan_jobs(raws[:1], tmp_path, ".jpg", linear=True)
    real = export.image_writer

    def image_writer(rgb, meta, **options):
        write = real(rgb, meta, **options)
        if not options.get("linear"):
            return write

        def full(tmp):
            write(tmp)
            raise OSError(28, "No space left on device")

        return full

    monkeypatch.setattr(export, "image_writer", image_writer)
    outcome = run_batch(jobs, tiny_engine, Settings(), lambda o: None)[0]
    assert outcome.status == "failed" and not outcome.internal
    assert outcome.error.startswith(f"cannot write {jobs[0].linear_output}: ") and "No space left" in outcome.error
    assert sorted(p.name for p in tmp_path.iterdir() if not p.suffix == ".dng") == []
    monkeypatch.setattr(export, "image_writer", real)
    assert run_batch(jobs, tiny_engine, Settings(), lambda o: None)[0].status == "ok"
    assert jobs[0].output.exists() and jobs[0].linear_output.exists()


def test_batch_develops_in_order_and_reports_each(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws, tmp_path / "out", ".jpg")
    (tmp_path / "out").mkdir()
    seen = []
    outcomes = run_batch(jobs, tiny_engine, Settings(jobs=2), seen.append)
    assert [o.job.path for o in seen] == raws and all(o.status == "ok" for o in outcomes)
    assert all(j.output.exists() for j in jobs)
    assert set(outcomes[0].stages) == {"decode", "restore", "enhance", "networks", "encode"}


def test_the_batch_takes_over_the_decode_started_early(tmp_path, raws, tiny_engine, monkeypatch):
    """The entry point starts the first raw's decode before camnet loads: the batch uses that one
    process for the same file, and stops it for another file or other decoding settings."""
    from camnet_cli import decoding

    started = []
    real = decoding.Decode
    monkeypatch.setattr(decoding, "Decode", lambda *a, **k: started.append(a[1]) or real(*a, **k))
    decoding.start_early(raws[0])
    outcomes = run_batch(plan_jobs(raws[:2], tmp_path / "a", ".jpg"), tiny_engine, Settings(jobs=1), lambda o: None)
    assert [o.status for o in outcomes] == ["ok", "ok"] and started == raws[:2]

    decoding.start_early(raws[0])
    early = decoding._early
    outcomes = run_batch(plan_jobs(raws[1:2], tmp_path / "b", ".jpg"), tiny_engine, Settings(jobs=1), lambda o: None)
    assert outcomes[0].status == "ok" and not early.process.is_alive() and started[2:] == [raws[0], raws[1]]

    decoding.start_early(raws[0])
    early = decoding._early
    outcomes = run_batch(plan_jobs(raws[:1], tmp_path / "c", ".jpg"), tiny_engine, Settings(jobs=1, iso=800), lambda o: None)
    assert outcomes[0].status == "ok" and not early.process.is_alive() and started[4:] == [raws[0], raws[0]]


def test_a_crashing_decoder_costs_only_its_file(tmp_path, raws, tiny_engine):
    crash = tmp_path / "crash.dng"
    crash.write_bytes(raws[0].read_bytes())
    paths = [raws[0], crash, raws[1]]
    jobs = plan_jobs(paths, tmp_path / "out", ".jpg")
    (tmp_path / "out").mkdir()
    outcomes = run_batch(jobs, tiny_engine, Settings(jobs=2), lambda o: None, decoder=crashers.crash_on_bad)
    assert [o.status for o in outcomes] == ["ok", "failed", "ok"]
    assert "crashed (signal SIGSEGV)" in outcomes[1].error and str(crash) in outcomes[1].error


def test_a_hung_decoder_is_killed(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws[:1], tmp_path, ".jpg")
    outcomes = run_batch(jobs, tiny_engine, Settings(jobs=1, decode_timeout=0.5), lambda o: None, decoder=crashers.hang)
    assert outcomes[0].status == "failed" and "did not finish within 0.5 s" in outcomes[0].error


def test_stop_finishes_the_current_file(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws, tmp_path, ".jpg")
    stop = threading.Event()

    def on_start(job):
        stop.set()  # as if Ctrl-C came while the first file is developed

    outcomes = run_batch(jobs, tiny_engine, Settings(jobs=1), lambda o: None, stop=stop, on_start=on_start)
    assert len(outcomes) == 1 and outcomes[0].status == "ok" and jobs[0].output.exists()
    assert not jobs[1].output.exists()


def test_skips_existing_unless_overwrite(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws[:2], tmp_path, ".png")
    jobs[0].output.write_bytes(b"old")
    outcomes = run_batch(jobs, tiny_engine, Settings(fmt="png"), lambda o: None)
    assert [o.status for o in outcomes] == ["skipped", "ok"] and jobs[0].output.read_bytes() == b"old"
    outcomes = run_batch(jobs, tiny_engine, Settings(fmt="png", overwrite=True), lambda o: None)
    assert [o.status for o in outcomes] == ["ok", "ok"] and jobs[0].output.read_bytes()[:4] == b"\x89PNG"


def test_only_temporaries_of_runs_that_are_gone_are_removed(tmp_path, raws, tiny_engine):
    """A run's start-up must not delete the temporary a live run is writing (on 879fa04 it did, and
    the first run then failed with "No such file or directory")."""
    jobs = plan_jobs(raws[:1], tmp_path, ".jpg")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = files._HOST
        stale = tmp_path / f".{jobs[0].output.name}.camnet-{host}-{gone}.abc123.tmp"
        writing = tmp_path / f".{jobs[0].output.name}.camnet-{host}-{live.pid}.def456.tmp"
        elsewhere = tmp_path / f".{jobs[0].output.name}.camnet-otherhost-{gone}.ghi789.tmp"
        for f in (stale, writing, elsewhere):
            f.write_bytes(b"half")
        assert run_batch(jobs, tiny_engine, Settings(), lambda o: None)[0].status == "ok"
        assert not stale.exists() and writing.exists() and elsewhere.exists() and jobs[0].output.exists()
    finally:
        live.kill()
        live.wait()


def test_weights_that_overflow_fail_the_file_instead_of_writing_nan(tmp_path, raws):
    """Finite but huge weights (bit flips in a weight file) once gave a NaN image written as a JPEG, exit 0."""
    import torch

    from camnet_cli.engine import Engine
    from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig
    from tests.conftest import TINY_WIDTHS

    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    with torch.no_grad():
        for p in restore.parameters():
            p.fill_(3e37)
    engine = Engine(restore, EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS)), device="cpu", precision="fp32", tile=0)
    outcome = run_batch(plan_jobs(raws[:1], tmp_path / "out", ".jpg"), engine, Settings(), lambda o: None)[0] if (tmp_path / "out").mkdir() is None else None
    assert outcome.status == "failed" and not outcome.internal and "NaN or infinite" in outcome.error
    assert not list((tmp_path / "out").glob("*.jpg"))
