"""`synctwin shard`: routing printed for producers in other languages, and one clear error for bad N."""

from __future__ import annotations

import subprocess
import sys
import zlib
from collections.abc import Iterator

import pytest

from synctwin.app.cli import main
from synctwin.kernel.config import get_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SYNCTWIN_SHARDS", raising=False)
    monkeypatch.delenv("SYNCTWIN_KEY_PREFIX", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_prints_each_campaigns_stream_as_a_crc32_would_route_it(capsys: pytest.CaptureFixture[str]) -> None:
    ids = ["c1", "c2", "camp-42", "acme:eu.summer_2025"]
    assert main(["shard", "--shards", "4", *ids]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{cid} synctwin:{{s{zlib.crc32(cid.encode()) % 4}}}:bids" for cid in ids]


def test_one_shard_prints_todays_stream(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shard", "--shards", "1", "c1"]) == 0
    assert capsys.readouterr().out == "c1 synctwin:bids\n"
    assert main(["shard", "--shards", "1", "--control"]) == 0
    assert capsys.readouterr().out == "synctwin:control\n"


def test_control_prints_one_stream_per_shard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shard", "--shards", "3", "--control"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"synctwin:{{s{k}}}:control" for k in range(3)]


def test_the_setting_and_prefix_are_the_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNCTWIN_SHARDS", "2")
    monkeypatch.setenv("SYNCTWIN_KEY_PREFIX", "acme:")
    get_settings.cache_clear()
    assert main(["shard", "--control"]) == 0
    assert capsys.readouterr().out.splitlines() == ["acme:{s0}:control", "acme:{s1}:control"]


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", "16385"])
def test_bad_n_is_one_clear_error_and_exit_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shard", f"--shards={bad}", "c1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "--shards" in captured.err and "1 to 16384" in captured.err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["shard", "--shards", "2"], "one of them"),
        (["shard", "--shards", "2", "--control", "c1"], "one of them"),
        (["shard", "--shards", "2", "a b"], "not a campaign id"),
    ],
)
def test_bad_use_is_one_clear_error(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err


def test_the_installed_command_prints_and_exits_2_on_bad_n() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "synctwin.app.cli", "shard", "--shards", "4", "c1"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout == "c1 synctwin:{s1}:bids\n"
    bad = subprocess.run(
        [sys.executable, "-m", "synctwin.app.cli", "shard", "--shards", "0", "c1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--shards" in bad.stderr
