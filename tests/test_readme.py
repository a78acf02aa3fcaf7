"""Every shell command in the README and the docs pages runs as written.

The commands are taken from the ```bash / ```sh blocks, one per line (a trailing backslash
continues a line), and run in order, block by block, from one scratch folder that links the
repository's top-level folders (so relative paths such as scenarios/examples/... resolve and the
files a command writes land in the scratch folder). A comment in square brackets says how to run a
line (the README's "How the commands here are checked" explains it to readers):

- `[exit N]`: the exit status the command must return (0 otherwise);
- `[needs redis]`: `redis://127.0.0.1:6379/0` becomes the session's own redis-server (a database
  of its own, flushed at the start of each block); skipped without redis-server/redis-cli;
- `[until SIGTERM]`: a worker; started, left running for the rest of its block, then sent SIGTERM
  and it must exit 0;
- `[slow]`: skipped unless SYNCTWIN_DOCS_SLOW=1;
- `[not run]`: for the reader only.

The install and test commands (`python3 -m venv`, `. .venv/bin/activate`, `pip install`,
`python -m pytest`) are not re-run: the suite runs in an installed environment already, and the
test command would run this test again. What follows them on the line (`synctwin demo`) is run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOC_URL = "redis://127.0.0.1:6379/0"
DOC_DB = 9  # the session's redis-server is shared with other tests, which use database 0
TIMEOUT_S = 120
NOT_RERUN = (
    re.compile(r"^python3 -m venv \S+$"),
    re.compile(r"^\. \S+/bin/activate$"),
    re.compile(r"^pip install .*$"),
    re.compile(r"^python -m pytest.*$"),
)
TAG = re.compile(r"\[(exit \d+|needs redis|until SIGTERM|slow|not run)\]")


@dataclass
class Command:
    page: str
    line: int
    text: str  # the shell command, without its comment
    tags: set[str] = field(default_factory=set)

    @property
    def expected_exit(self) -> int:
        codes = [int(t.split()[1]) for t in self.tags if t.startswith("exit ")]
        return codes[0] if codes else 0


def _strip_comment(line: str) -> tuple[str, str]:
    """Split a shell line at its first `#` outside quotes: (command, comment)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :]
    return line.rstrip(), ""


def _runnable(text: str) -> str:
    """The part of an install-and-run line that is not an install or the test suite itself."""
    parts = [p.strip() for p in text.split(" && ")]
    return " && ".join(p for p in parts if not any(r.match(p) for r in NOT_RERUN))


def extract(page: Path) -> list[list[Command]]:
    """The page's shell blocks, each a list of commands in order."""
    blocks: list[list[Command]] = []
    current: list[Command] | None = None
    pending = ""
    start = 0
    for n, raw in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if current is None:
            if re.match(r"^```(bash|sh)\s*$", raw):
                current = []
            continue
        if raw.startswith("```"):
            blocks.append(current)
            current = None
            continue
        if not pending:
            start = n
        command, comment = _strip_comment(raw)
        if command.endswith("\\"):
            pending += command[:-1] + " "
            continue
        text = (pending + command).strip()
        pending = ""
        if text:
            current.append(Command(page.name, start, text, set(TAG.findall(comment))))
    return blocks


def _cases() -> list[tuple[str, list[Command]]]:
    cases = []
    for page in PAGES:
        for i, block in enumerate(extract(page)):
            if block:
                cases.append((f"{page.name}-block{i + 1}-line{block[0].line}", block))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder that sees the repository's files but keeps what the commands write."""
    work = tmp_path_factory.mktemp("readme")
    for entry in REPO.iterdir():
        if entry.name not in {".git", ".venv"} and not entry.name.endswith(".egg-info"):
            (work / entry.name).symlink_to(entry)
    return work


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"  # this venv's synctwin
    e["COLUMNS"] = "100"
    for name in [k for k in e if k.startswith("SYNCTWIN_")]:
        del e[name]  # the documented defaults, whatever the caller's environment says
    return e


def _redis_url(request: pytest.FixtureRequest) -> str:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("a [needs redis] command: redis-server and redis-cli are not installed")
    server = request.getfixturevalue("redis_server")
    return re.sub(r"/\d+$", "", server.url) + f"/{DOC_DB}"


def test_the_test_command_is_the_one_ci_runs() -> None:
    """`.ci/run` runs the README's test command verbatim: a change to either must change both."""
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[test]" && python -m pytest -q'
    assert command in ci.splitlines()
    assert f"```bash\n{command}\n```" in readme


def test_the_extractor_reads_tags_continuations_and_quotes(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "synctwin gate a.json --history 'b#c.csv' \\\n"
        "    --seed 1   # [exit 1] rejected\n"
        "synctwin run --redis redis://127.0.0.1:6379/0   # [needs redis] [until SIGTERM]\n"
        "```\n"
        "```python\nprint(1)\n```\n"
    )
    ((gate, run),) = extract(page)
    assert gate.text == "synctwin gate a.json --history 'b#c.csv'      --seed 1" and gate.expected_exit == 1
    assert gate.line == 2
    assert run.tags == {"needs redis", "until SIGTERM"} and run.expected_exit == 0
    assert _runnable("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && synctwin demo") == (
        "synctwin demo"
    )


def test_the_readme_has_commands() -> None:
    """The README's tour is the part a newcomer follows first: it must be checked, not skipped."""
    readme = [c for block in extract(REPO / "README.md") for c in block]
    runnable = [c for c in readme if "not run" not in c.tags and "slow" not in c.tags and _runnable(c.text)]
    assert len(runnable) >= 15, [c.text for c in readme]


@pytest.mark.parametrize("block", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_command_runs_as_written(
    block: list[Command], workdir: Path, env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    background: list[tuple[Command, subprocess.Popen[bytes]]] = []
    ran = 0
    flushed = False
    try:
        for cmd in block:
            text = _runnable(cmd.text)
            if not text or "not run" in cmd.tags:
                continue
            if "slow" in cmd.tags and os.environ.get("SYNCTWIN_DOCS_SLOW") != "1":
                continue
            if "needs redis" in cmd.tags:
                url = _redis_url(request)
                if not flushed:  # each block starts from an empty database, as its page assumes
                    subprocess.run(["redis-cli", "-u", url, "FLUSHDB"], check=True, capture_output=True)
                    flushed = True
                text = text.replace(DOC_URL, url)
            where = f"{cmd.page}:{cmd.line}: {cmd.text}"
            if "until SIGTERM" in cmd.tags:
                proc = subprocess.Popen(
                    "exec " + text.removesuffix("&").strip(),
                    shell=True,
                    cwd=workdir,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                background.append((cmd, proc))
                time.sleep(1.0)
                assert proc.poll() is None, f"{where} exited at once:\n{proc.stdout.read().decode()[-3000:]}"
                ran += 1
                continue
            done = subprocess.run(
                text, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
            )
            assert done.returncode == cmd.expected_exit, (
                f"{where}\nexit {done.returncode}, expected {cmd.expected_exit}\n"
                f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
            )
            assert "Traceback" not in done.stderr, f"{where}\n{done.stderr[-3000:]}"
            ran += 1
    finally:
        for cmd, proc in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            assert proc.returncode == 0, f"{cmd.page}:{cmd.line}: {cmd.text}\nexit {proc.returncode}:\n{out.decode()}"
    if ran == 0:
        pytest.skip("every command of this block is [slow] or [not run]")
