from pathlib import Path

import pytest

from camnet_cli.files import atomic_write, temp_pattern


def test_the_target_appears_whole_and_only_at_the_end(tmp_path):
    """While the writer runs, readers see the old file (or none); then the whole new one, with the
    permissions of a plainly created file rather than the temporary's 0600."""
    target = tmp_path / "out.bin"
    seen = []

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"new, ")
            seen.append(target.exists())
            f.write(b"whole")
        seen.append(target.exists())

    atomic_write(target, write)
    assert seen == [False, False] and target.read_bytes() == b"new, whole"
    (tmp_path / "plain").write_bytes(b"")
    assert target.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777

    def replace(tmp):
        Path(tmp).write_bytes(b"newer")
        seen.append(target.read_bytes())

    atomic_write(str(target), replace)  # a str path too
    assert seen[-1] == b"new, whole" and target.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "plain"]


def test_a_failing_writer_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken(tmp):
        Path(tmp).write_bytes(b"half a fi")
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]

    def interrupted(tmp):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.bin", interrupted)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_temp_pattern_matches_the_temporary_and_nothing_else(tmp_path):
    """The temporary sits beside the target (a rename within one file system is atomic), and the
    pattern that cleans up after a killed run finds it, not the target nor another file's temporary."""
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"done")
    (tmp_path / ".photo.png.x1.tmp").write_bytes(b"another file's")
    (tmp_path / "photo.jpg.tmp").write_bytes(b"not ours")
    temporaries = []

    def write(tmp):
        temporaries.append(Path(tmp))
        assert sorted(tmp_path.glob(temp_pattern(target))) == [Path(tmp)]
        Path(tmp).write_bytes(b"x")

    atomic_write(target, write)
    assert temporaries[0].parent == tmp_path and not temporaries[0].exists()
    assert list(tmp_path.glob(temp_pattern(target))) == []
