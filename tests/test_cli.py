"""The command line as a whole: the app, its version, the installed script and a real process."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from camnet_cli import __version__
from camnet_cli.cli import app, with_optional_values
from tests.conftest import EXAMPLE_DNG, REPO

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, list(map(str, args)))


def test_help_lists_every_command():
    result = _run("--help")
    assert result.exit_code == 0
    for command in ("develop", "bench", "inspect", "train-restore", "train-enhance", "finetune", "eval"):
        assert command in result.output


def test_version():
    result = _run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_bare_resume_means_last():
    assert with_optional_values(["train-restore", "--resume"]) == ["train-restore", "--resume", "last"]
    assert with_optional_values(["train-restore", "--resume", "--steps", "3"]) == ["train-restore", "--resume", "last", "--steps", "3"]
    assert with_optional_values(["train-restore", "--resume", "x.safetensors"]) == ["train-restore", "--resume", "x.safetensors"]


def test_real_process_invocation():
    """The command as a script runs it: a separate Python process, the shipped example."""
    result = subprocess.run(
        [sys.executable, "-m", "camnet_cli", "inspect", str(EXAMPLE_DNG), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == "ILCE-7RM3" and record["noise"]["source"] == "table"


def test_console_script_is_installed():
    exe = shutil.which("camnet")
    if exe is None:
        pytest.skip("camnet is not on PATH (package not installed)")
    result = subprocess.run([exe, "inspect", str(EXAMPLE_DNG)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "SONY ILCE-7RM3" in result.stdout


def test_decoding_needs_no_torch():
    """The raw decoders' processes import the front end alone: torch takes a second or two to load."""
    code = "import sys, camnet_cli.raw, camnet_cli.decoding; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_the_console_scripts_decoders_do_not_load_camnet_again(tmp_path):
    """multiprocessing runs a script's __main__ again in each child: the console script's would
    load the whole of camnet and torch in every raw decoder. Python reports each module it imports
    (-X importtime): torch once, in the main process."""
    exe = shutil.which("camnet")
    if exe is None:
        pytest.skip("camnet is not on PATH (package not installed)")
    env = os.environ | {"PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run([exe, "develop", str(EXAMPLE_DNG), "-o", str(tmp_path), "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imports = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert imports.count("camnet_cli.raw") == 2  # the main process and the decoders' server
    assert imports.count("torch") == 1 and imports.count("camnet_cli.cli") == 1


def test_the_first_raw_is_told_from_a_develop_command_line(tmp_path):
    """What the entry point decodes while the command line loads: the first raw the first input
    names (a file, a folder's, a pattern's), never an option's value, and nothing for another
    command, where --iso/--noise change the decoding, or for a tree to walk (-r)."""
    from camnet_cli.__main__ import first_raw

    shots = tmp_path / "shots"
    shots.mkdir()
    a, b, out, c = shots / "a.ARW", shots / "b.dng", tmp_path / "out.dng", shots / "c.NEF"
    for f in (a, b, out, c):
        f.write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert first_raw(["develop", str(a), str(b)]) == a
    assert first_raw(["--debug", "develop", "-o", str(out), "-q", str(b), str(a)]) == b
    assert first_raw(["develop", "--output", str(out), "--style", "natural", str(c)]) == c
    assert first_raw(["develop", str(shots), "-o", str(tmp_path / "x")]) == a  # a folder's first raw, as the command orders them
    assert first_raw(["develop", str(shots / "*.NEF")]) == c  # a quoted pattern
    assert first_raw(["develop", str(tmp_path / "gone.ARW"), str(a)]) is None  # the first input is missing: its error comes first
    assert first_raw(["develop", str(tmp_path / "notes.txt")]) is None
    assert first_raw(["develop", "-r", str(shots)]) is None and first_raw(["develop", "-r", str(a)]) == a
    assert first_raw(["develop", "--iso", "800", str(a)]) is None and first_raw(["develop", "--noise=0.01", str(a)]) is None
    assert first_raw(["develop", str(shots), "--shard", "2/4"]) is None
    assert first_raw(["inspect", str(a)]) is None and first_raw([]) is None and first_raw(["develop"]) is None


def test_the_entry_point_knows_which_develop_options_take_a_value():
    import typer

    from camnet_cli.__main__ import DEVELOP_VALUE_OPTIONS

    develop = typer.main.get_command(app).commands["develop"]
    taking = {name for p in develop.params if not getattr(p, "is_flag", False) and p.param_type_name == "option" for name in p.opts}
    assert taking == DEVELOP_VALUE_OPTIONS


def test_an_uncaught_bug_is_one_line_unless_debug(monkeypatch, capsys):
    from camnet_cli import cli, commands

    def broken(**kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.setattr(commands, "DEBUG", False)
    monkeypatch.setattr(sys, "argv", ["camnet", "inspect", "x.dng"])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 3
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: internal error (KeyError: 'boom') (a bug: run with --debug for the traceback, and report it)"
    ]


def test_debug_may_follow_the_command():
    from camnet_cli.cli import with_debug_first

    assert with_debug_first(["develop", "x.ARW", "--debug"]) == ["--debug", "develop", "x.ARW"]
    assert with_debug_first(["develop", "x.ARW"]) == ["develop", "x.ARW"]


def test_every_command_has_an_example_in_its_help():
    from camnet_cli.cli import app as cli_app

    for command in cli_app.registered_commands:
        name = command.name or command.callback.__name__
        result = _run(name, "--help")
        assert result.exit_code == 0 and "Example" in result.output, name


def test_example_copies_the_shipped_raw(tmp_path):
    result = _run("example", tmp_path / "here")
    copy = tmp_path / "here" / EXAMPLE_DNG.name
    assert result.exit_code == 0 and result.stdout.strip() == str(copy)
    assert copy.read_bytes() == EXAMPLE_DNG.read_bytes()
    assert _run("example", tmp_path / "here").exit_code == 0  # again: the same file is fine
    copy.write_bytes(b"mine")
    refused = _run("example", tmp_path / "here")
    assert refused.exit_code == 2 and "exists and is another file" in refused.stderr and copy.read_bytes() == b"mine"


def test_styles_lists_what_develop_takes(tiny_weights):
    result = _run("styles", "--json")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    natural = next(r for r in rows if r["style"] == "natural")
    assert natural["default"] and natural["restore"] == "default" and natural["path"].startswith(str(tiny_weights))
    table = _run("styles")
    assert table.exit_code == 0 and "natural (default)" in table.stdout


@pytest.mark.parametrize("given, used", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_passively_unless_the_user_says(given, used):
    """camnet's OpenMP threads must not spin on cores another program wants; the variable is read
    when torch loads OpenMP, so it has to be in place by then (and a user's own value kept)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    code = "import camnet_cli.cli, os, torch; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == used
