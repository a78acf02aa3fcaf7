"""Helpers for tests that run `synctwin` workers (mirror, shadow) as real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def synctwin_cmd() -> list[str]:
    """The installed console script, or `python -m synctwin.app.cli` beside this interpreter."""
    exe = shutil.which("synctwin") or str(Path(sys.executable).with_name("synctwin"))
    return [exe] if Path(exe).exists() else [sys.executable, "-m", "synctwin.app.cli"]


def worker_env(**extra: str) -> dict[str, str]:
    """This environment without SYNCTWIN_* settings (a developer's must not leak in), unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTWIN_")}
    return env | {"PYTHONUNBUFFERED": "1"} | extra


def start_worker(command: str, url: str, consumer: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """`synctwin COMMAND --redis URL --consumer C ARGS...` in the background."""
    return subprocess.Popen(
        [*synctwin_cmd(), command, "--redis", url, "--consumer", consumer, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=worker_env(**env),
    )


def stop_worker(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str]:
    """SIGTERM, and the exit status and stderr; a worker that ignores it fails the test."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the worker did not stop on SIGTERM:\n{err[-2000:]}") from None
    return proc.returncode, err
