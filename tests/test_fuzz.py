"""The fuzz harness (``tests/fuzz.py``) at a small count: mutated DNGs, special files and mutated
weight files each get a clean answer from camnet. The long run: ``python -m tests.fuzz --count 1000``."""

import sys

import pytest


@pytest.mark.skipif(sys.platform == "win32", reason="the harness needs FIFOs, symbolic links and os.wait4")
def test_fuzz_finds_nothing(tmp_path):
    from tests import fuzz

    report = fuzz.run(tmp_path, count=40, weight_count=30, seed=0)
    assert report.developed > 0
    assert not report.findings, "\n".join([f"{len(report.findings)} findings (corpus and logs in {tmp_path}):", *report.findings])
