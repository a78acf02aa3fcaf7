"""The command line as a whole: every command's help renders (argparse formats help texts)."""

from __future__ import annotations

import pytest

from synctwin.app.cli import COMMANDS, main


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_renders(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: synctwin" in out
    assert "%%" not in out  # an escaped percent sign shown as such
    assert "the seed's" not in out.replace("\n", " ")  # the original design is named by what it is, not "the seed"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_a_reader_that_leaves_early_gets_no_traceback(extra: list[str]) -> None:
    """`synctwin gate ... | head -1`: the pipe closes before the result is written; exit 141 as a
    pipe-killed command, not 1 (which would read as a rejection)."""
    import subprocess
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "scenarios" / "examples" / "approve"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "synctwin.app.cli", "gate", str(examples / "strategy.json")),
            *("--history", str(examples / "history.csv"), "--seed", "1", *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the gate has decided
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err
