"""Command-line inputs -> files (``camnet_cli.inputs``): folders, patterns and the special files in them."""

import os

from camnet_cli.inputs import expand_inputs


def _folder(tmp_path):
    """A folder with a raw file and, under raw names, a FIFO, a folder, a dangling and a looping link."""
    (tmp_path / "a.dng").write_bytes(b"raw")
    (tmp_path / "notes.txt").write_text("not a raw")
    os.mkfifo(tmp_path / "fifo.dng")
    (tmp_path / "x.dng").mkdir()
    (tmp_path / "x.dng" / "inside.dng").write_bytes(b"raw")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.nef").write_bytes(b"raw")
    os.symlink(tmp_path / "nowhere.dng", tmp_path / "dangling.dng")
    os.symlink(tmp_path / "loop.arw", tmp_path / "loop.arw")
    return tmp_path


def test_folder_skips_what_is_no_regular_file_with_a_line_each(tmp_path):
    folder = _folder(tmp_path)
    files, notes = expand_inputs([str(folder)])
    assert files == [folder / "a.dng"]
    assert notes == [
        f"{folder / 'dangling.dng'}: skipped, broken symbolic link",
        f"{folder / 'fifo.dng'}: skipped, not a regular file (a FIFO)",
        f"{folder / 'loop.arw'}: skipped, symbolic link loop",
        f"{folder / 'x.dng'}: skipped, is a directory (use -r)",
        f"{folder}: 1 subfolder not searched (use -r)",
    ]


def test_recursive_folder_searches_subfolders_and_still_skips_special_files(tmp_path):
    folder = _folder(tmp_path)
    files, notes = expand_inputs([str(folder)], recursive=True)
    assert files == [folder / "a.dng", folder / "sub" / "deep.nef", folder / "x.dng" / "inside.dng"]
    assert len(notes) == 3 and not any("subfolder" in n or "x.dng:" in n for n in notes)


def test_a_looping_link_given_by_name_is_kept_for_the_loader_to_report(tmp_path):
    os.symlink(tmp_path / "loop.dng", tmp_path / "loop.dng")
    files, notes = expand_inputs([str(tmp_path / "loop.dng"), str(tmp_path / "loop.dng")])
    assert files == [tmp_path / "loop.dng"] and notes == []


def test_links_to_one_file_count_once(tmp_path):
    (tmp_path / "a.dng").write_bytes(b"raw")
    os.symlink(tmp_path / "a.dng", tmp_path / "b.dng")
    files, _ = expand_inputs([str(tmp_path / "a.dng"), str(tmp_path / "b.dng")])
    assert files == [tmp_path / "a.dng"]


def test_empty_folder_says_so_and_an_unmatched_pattern_is_kept_as_a_missing_input(tmp_path):
    (tmp_path / "empty").mkdir()
    files, notes = expand_inputs([str(tmp_path / "empty"), str(tmp_path / "*.nef")])
    assert files == [tmp_path / "*.nef"]
    assert notes == [f"{tmp_path / 'empty'}: no raw files in this folder"]
