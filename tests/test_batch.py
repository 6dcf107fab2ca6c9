import threading
from pathlib import Path

import pytest

from camnet_cli.batch import Settings, plan_jobs, run_batch
from tests import crashers
from tests.conftest import synthetic_raw, write_synthetic_dng


@pytest.fixture
def raws(tmp_path):
    paths = []
    for i in range(3):
        write_synthetic_dng(tmp_path / f"img{i}.dng", synthetic_raw(height=64, width=96, seed=i))
        paths.append(tmp_path / f"img{i}.dng")
    return paths


def test_colliding_stems_get_distinct_names(tmp_path):
    paths = [Path("a/IMG_1.ARW"), Path("b/IMG_1.ARW"), Path("IMG_1.DNG"), Path("IMG_2.ARW"), Path("a/img_2.arw")]
    jobs = plan_jobs(paths, tmp_path, ".jpg", linear=True)
    names = [j.output.name for j in jobs]
    # these names, the same in every run
    assert names == ["IMG_1_ARW.jpg", "IMG_1_ARW-2.jpg", "IMG_1_DNG.jpg", "IMG_2_ARW.jpg", "img_2_arw-2.jpg"]
    assert jobs[0].linear_output.name == "IMG_1_ARW.linear.tif"


def test_batch_develops_in_order_and_reports_each(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws, tmp_path / "out", ".jpg")
    (tmp_path / "out").mkdir()
    seen = []
    outcomes = run_batch(jobs, tiny_engine, Settings(jobs=2), seen.append)
    assert [o.job.path for o in seen] == raws and all(o.status == "ok" for o in outcomes)
    assert all(j.output.exists() for j in jobs)
    assert set(outcomes[0].stages) == {"decode", "restore", "enhance", "encode"}


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


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, raws, tiny_engine):
    jobs = plan_jobs(raws[:1], tmp_path, ".jpg")
    stale = tmp_path / f".{jobs[0].output.name}.abc123.tmp"
    stale.write_bytes(b"half")
    run_batch(jobs, tiny_engine, Settings(), lambda o: None)
    assert not stale.exists() and jobs[0].output.exists()
