"""Redis passwords never reach a terminal, a log or an HTTP client.

From the outside: every command that takes --redis (or SYNCTWIN_REDIS_URL) is run in a subprocess
against a URL with a password, on a closed port, a live server with another password, and
malformed URLs; the password appears nowhere in stdout or stderr, and the exit status is 2. A
worker that loses its Redis mid-run logs the outage without it. Inside: the masking rule itself.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from synctwin.kernel.redact import RedactingFilter, redact, redact_logs, scrub, secrets_of

REPO = Path(__file__).resolve().parents[1]
SECRET = "hunter2-Pa55word"
STRATEGY, HISTORY = str(REPO / "tests/data/strategy.json"), str(REPO / "tests/data/history_90d.csv")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, timeout: float = 60, **env: str) -> tuple[int, str]:
    """`synctwin ARGS` in a fresh process without the developer's SYNCTWIN_* settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTWIN_")}
    base["SYNCTWIN_CONFIG_FILE"] = os.devnull
    proc = subprocess.run(
        [sys.executable, "-m", "synctwin.app.cli", *args],
        cwd=REPO,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


COMMANDS: dict[str, list[str]] = {
    "mirror": ["mirror"],
    "gate": ["gate", STRATEGY, "--history", HISTORY, "--paths", "200"],
    "serve": ["serve", "--port", "0"],
    "shadow": ["shadow", "--once"],
    "feed": ["feed"],
    "audit verify": ["audit", "verify"],
    "kpis": ["kpis"],
    "review": ["review"],
    "chaos": ["chaos", "--drill", "api_outage"],
}


def assert_hidden(out: str, secret: str = SECRET) -> None:
    assert secret not in out, out
    assert "Traceback" not in out, out
    for piece in secrets_of(f"redis://u:{secret}@h/0"):
        assert piece not in out, (piece, out)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreachable_server_is_one_line_without_the_password(command: str) -> None:
    url = f"redis://user:{SECRET}@127.0.0.1:{closed_port()}/0"
    code, out = run(*COMMANDS[command], "--redis", url)
    assert code == 2, out
    assert_hidden(out)
    assert "user:***@127.0.0.1" in out, out
    assert len(out.strip().splitlines()) == 1, out


@pytest.mark.parametrize("command", ["mirror", "serve", "shadow", "feed", "audit verify", "kpis", "review"])
def test_synctwin_redis_url_is_the_default_and_is_masked_too(command: str) -> None:
    """SYNCTWIN_REDIS_URL keeps the password off the command line (and out of `ps`); where Redis
    is the command's only source, it is the default."""
    url = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"
    code, out = run(*COMMANDS[command], SYNCTWIN_REDIS_URL=url)
    assert code == 2 and ":***@127.0.0.1" in out, out
    assert_hidden(out)


@pytest.mark.parametrize("command", ["gate", "chaos"])
def test_a_bare_redis_flag_reads_the_environment(command: str) -> None:
    """gate and chaos use Redis only when asked: a bare --redis asks for SYNCTWIN_REDIS_URL."""
    url = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"
    code, out = run(*COMMANDS[command], "--redis", SYNCTWIN_REDIS_URL=url)
    assert code == 2 and "cannot reach Redis at redis://:***@127.0.0.1" in out, out
    assert_hidden(out)
    code, out = run(*COMMANDS[command], "--redis")
    assert code == 2 and "SYNCTWIN_REDIS_URL, which is not set" in out, out


def test_a_command_that_needs_redis_says_how_to_give_it() -> None:
    code, out = run("mirror")
    assert code == 2 and "give --redis URL, or set SYNCTWIN_REDIS_URL" in out, out


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}#x@127.0.0.1:1/0",  # an unescaped '#': redis-py names a piece of it as the port
        f"redis://user:ab/{SECRET}@127.0.0.1:1/0",  # an unescaped '/'
        f"http://user:{SECRET}@127.0.0.1:1/0",  # not a Redis scheme
        f"redis://127.0.0.1:{{port}}/0?password={SECRET}",
    ],
)
@pytest.mark.parametrize("command", ["mirror", "audit verify"])
def test_a_malformed_url_is_one_line_without_any_piece_of_the_password(url: str, command: str) -> None:
    code, out = run(*COMMANDS[command], "--redis", url.replace("{port}", str(closed_port())))
    assert code == 2, out
    assert_hidden(out)


@pytest.fixture
def locked_redis(aof_redis_server: Any) -> Any:
    """A private server that requires a password (the test's own: it is stopped mid-test)."""
    client = redis.Redis(host="127.0.0.1", port=aof_redis_server.port)
    client.config_set("requirepass", SECRET)
    client.close()
    return aof_redis_server


@pytest.mark.redis
def test_wrong_credentials_are_refused_without_showing_either_password(locked_redis: Any) -> None:
    wrong = "another-Secret-99"
    for command in ("mirror", "audit verify", "kpis"):
        code, out = run(*COMMANDS[command], "--redis", f"redis://:{wrong}@127.0.0.1:{locked_redis.port}/0")
        assert code == 2 and "refused the credentials" in out, out
        assert_hidden(out, wrong)
        assert_hidden(out)


@pytest.mark.redis
def test_a_worker_that_loses_redis_logs_the_outage_without_the_password(locked_redis: Any) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{locked_redis.port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTWIN_")}
    env |= {"SYNCTWIN_CONFIG_FILE": os.devnull, "SYNCTWIN_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "synctwin.app.cli", "mirror", "--consumer", "w1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()
        assert "mirror w1 in group" in started, started
        locked_redis.stop()
        time.sleep(1.5)  # a few retries' worth of "Redis unavailable" lines
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Redis unavailable" in err, err
    assert_hidden(started + err)


# --------------------------------------------------------------------------------- the rule itself
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pw@host/0", "redis://:***@host/0"),
        ("rediss://user:p%40ss@host:6380/2", "rediss://user:***@host:6380/2"),
        ("redis://user:a@b#c@host/0", "redis://user:***@host/0"),
        ("unix://user:pw@/run/redis.sock?db=0", "unix://user:***@/run/redis.sock?db=0"),
        ("redis://host:6379/0?password=pw&db=1", "redis://host:6379/0?password=***&db=1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("memory://", "memory://"),
        (None, "none"),
    ],
)
def test_redact(url: str | None, shown: str) -> None:
    assert redact(url) == shown


def test_scrub_removes_every_form_of_the_password() -> None:
    url = "redis://u:p%40ss-w0rd@h:1/0"
    text = f"failed on {url}: password p@ss-w0rd (as p%40ss-w0rd)"
    out = scrub(text, url)
    assert "p@ss" not in out and "p%40ss" not in out and "w0rd" not in out and "redis://u:***@h:1/0" in out


def test_the_log_filter_scrubs_messages_args_and_tracebacks() -> None:
    """Whatever logs the URL (a library, an exception's text), the handler writes it masked."""
    url = f"redis://:{SECRET}@db:6379/0"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test_secrets.lib")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        handler.addFilter(RedactingFilter(url))
        logger.warning("connecting to %s", url)
        try:
            raise ConnectionError(f"cannot AUTH with {SECRET}")
        except ConnectionError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "connecting to redis://:***@db:6379/0" in out and "cannot AUTH with ***" in out, out
    assert SECRET not in out


def test_redact_logs_covers_the_root_handlers_and_the_last_resort() -> None:
    url = f"redis://:{SECRET}@db:6379/0"
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        redact_logs(url)
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        assert logging.lastResort is not None
        assert any(isinstance(f, RedactingFilter) for f in logging.lastResort.filters)
        redact_logs(url)  # idempotent
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        root.removeHandler(handler)
        if logging.lastResort is not None:
            for f in [f for f in logging.lastResort.filters if isinstance(f, RedactingFilter)]:
                logging.lastResort.removeFilter(f)


def test_the_service_503_does_not_show_the_password() -> None:
    from fastapi.testclient import TestClient

    from synctwin.app.http import create_app
    from synctwin.kernel.config import Settings

    url = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"
    try:
        api = TestClient(create_app(Settings(redis_url=url)), raise_server_exceptions=False)
        res = api.get("/v1/campaigns/c1")
    finally:
        if logging.lastResort is not None:
            for f in [f for f in logging.lastResort.filters if isinstance(f, RedactingFilter)]:
                logging.lastResort.removeFilter(f)
    assert res.status_code == 503, res.text
    assert SECRET not in res.text


_PASSWORDS = st.text(st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(_PASSWORDS)
def test_property_any_password_in_the_userinfo_is_masked_whole(password: str) -> None:
    """Whatever the password holds ('@', '#', '/', '?', ':', spaces, unicode), the shown URL is the
    same: its characters decide nothing about what is printed."""
    assert redact(f"redis://user:{password}@db.internal:6380/2") == "redis://user:***@db.internal:6380/2"


@settings(max_examples=300, deadline=None)
@given(_PASSWORDS.filter(lambda p: len(p) >= 3), st.text(max_size=30), st.text(max_size=30))
@example(password="0@?", before="", after="")  # a piece "0" of the password used to mask the port's 0 too
def test_property_scrub_leaves_no_copy_of_the_password(password: str, before: str, after: str) -> None:
    url = f"redis://user:{password}@db.internal:6380/2"
    out = scrub(f"{before}{password}{after} ({url})", url)
    assert password not in out
    assert "redis://user:***@db.internal:6380/2" in out
