"""Hostile inputs through the command line: does each bad file get one clean error, fast?

    python benchmarks/hostile_inputs.py                       # the `synctwin` next to this Python
    python benchmarks/hostile_inputs.py --cli /tmp/old/.venv/bin/synctwin   # another build
    python benchmarks/hostile_inputs.py --json --only yaml    # as JSON; only inputs whose name has 'yaml'

Each input (a bad strategy, history or scenario file, generated into a scratch directory) runs
as `synctwin gate`, `synctwin replay` or `synctwin chaos` in a subprocess with a timeout and an
address-space limit (RLIMIT_AS), so a parser that runs away is stopped instead of taking the
machine down. Per input: exit status, seconds, peak RSS (wait4's ru_maxrss), the error's first
line, and whether it was handled cleanly: exit 2 (invalid input) with an error that names what
NEEDLES says (the field, the file or the line), no traceback, under 5 s. A good file in an
unusual form (VALID: a CSV with a byte-order mark) is clean when it is decided (exit 0 or 1).

Only the standard library is used, so the script runs against any build of the CLI, old or new.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CLEAN_SECONDS = 5.0
EXIT_INVALID = 2

GOOD_STRATEGY = {
    "campaign_id": "hostile",
    "client_id": "acme",
    "platform": "meta",
    "audience_size": 160000,
    "cvr": 0.02,
    "daily_budget": 900,
    "duration_days": 30,
}
HEADER = "date,spend,impressions,clicks,conversions,revenue\n"
SCENARIO = """name: hostile
duration: {duration}
world: {world}
gate_paths: {gate_paths}
clients:
  - id: acme
    history: {{generate: {{platform: meta, daily_spend: 600}}}}
campaigns:
  - id: acme-spring
    client: acme
    launch_at: 0s
    strategy: {{audience_size: 160000, cvr: 0.03, daily_budget: {budget}, gross_margin: 0.35}}
faults:
  - {{id: shock, kind: cpm_shock, at: 2h, platform: meta, multiplier: {multiplier}}}
"""


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    command: str  # gate, replay or chaos
    make: Callable[[Path], list[str]]  # writes its files into the directory, returns the CLI arguments
    defect: str  # what the issue says it did, or what it probes
    needle: str | None = None  # the error must name this (a field, the file, a line); "{dir}": the case's directory
    valid: bool = False  # a good file in an unusual form: it must be decided (exit 0 or 1), not refused


@dataclass(slots=True)
class Outcome:
    name: str
    command: str
    exit: int | None  # None: killed at the timeout
    seconds: float
    peak_rss_mb: float
    error: str
    traceback: bool
    clean: bool


# --- the corpus ------------------------------------------------------------------------------------


def _write(d: Path, name: str, content: str | bytes) -> Path:
    p = d / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def _history_rows(n: int, start_ordinal: int = 739_000, row: str = "600,90000,1800,70,4400") -> str:
    import datetime as dt

    d0 = dt.date.fromordinal(start_ordinal)
    return "".join(f"{d0 + dt.timedelta(days=i)},{row}\n" for i in range(n))


def _good_history(d: Path) -> Path:
    return _write(d, "good_history.csv", HEADER + _history_rows(90))


def _gate_strategy(text: str | bytes) -> Callable[[Path], list[str]]:
    """A strategy file with this content, gated against a good history."""

    def make(d: Path) -> list[str]:
        return [
            "gate",
            str(_write(d, "strategy.json", text)),
            "--history",
            str(_good_history(d)),
            "--paths",
            "1000",
            "--seed",
            "1",
            "--no-suggestions",
        ]

    return make


def _strategy_with(**changes: object) -> Callable[[Path], list[str]]:
    return _gate_strategy(json.dumps({**GOOD_STRATEGY, **changes}))


def _raw_strategy_field(field: str, raw: str) -> Callable[[Path], list[str]]:
    """A field whose JSON text is written as is (true, NaN, a 400-digit integer)."""
    body = json.dumps(GOOD_STRATEGY)[:-1] + f', "{field}": {raw}}}'
    return _gate_strategy(body)


def _gate_history(text: str | bytes | None = None, *, path: str | None = None) -> Callable[[Path], list[str]]:
    """A good strategy gated against this history content (or this path)."""

    def make(d: Path) -> list[str]:
        s = _write(d, "strategy.json", json.dumps(GOOD_STRATEGY))
        h = path if path is not None else str(_write(d, "history.csv", text if text is not None else ""))
        return ["gate", str(s), "--history", h, "--paths", "1000", "--seed", "1", "--no-suggestions"]

    return make


def _gate_path(strategy_path: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        return ["gate", strategy_path.format(dir=d), "--history", str(_good_history(d)), "--paths", "1000"]

    return make


SCENARIO_DEFAULTS: dict[str, object] = {
    "duration": "12h",
    "world": "{tick: 5m}",
    "gate_paths": 1000,
    "multiplier": 1.5,
    "budget": 1100,
}


def _scenario(
    text: str | bytes | None = None, *, path: str | None = None, **fields: object
) -> Callable[[Path], list[str]]:
    """A replay of this YAML (or the template with these fields changed)."""

    def make(d: Path) -> list[str]:
        if path is not None:
            return ["replay", path.format(dir=d)]
        content = text if text is not None else SCENARIO.format(**{**SCENARIO_DEFAULTS, **fields})
        return ["replay", str(_write(d, "scenario.yaml", content))]

    return make


def _billion_laughs() -> str:
    lines = ["name: laughs", "duration: 1h", 'lol0: &lol0 "lol"']
    for i in range(1, 10):
        refs = ", ".join([f"*lol{i - 1}"] * 10)
        lines.append(f"lol{i}: &lol{i} [{refs}]")
    lines.append("description: *lol9")
    return "\n".join(lines) + "\n"


def _one_million_rows_dup_line3() -> str:
    rows = _history_rows(1_000_000 - 1).splitlines(keepends=True)
    rows.insert(1, rows[0])  # line 2's date again on line 3
    return HEADER + "".join(rows)


# what each error must name, beyond exit 2 (a field, the file, the line); None: any one-line error will do
NEEDLES: dict[str, str] = {
    "strategy_aov_1e39": "aov",
    "strategy_daily_budget_1e308": "daily_budget",
    "strategy_audience_1e30": "audience_size",
    "strategy_cpm_1e30": "cpm",
    "strategy_cpm_1e-300": "cpm",
    "strategy_launch_ts_1e300": "launch_ts",
    "strategy_json_200k_deep": "strategy.json",
    "strategy_int_400_digits": "strategy.json",
    "strategy_int_5000_digits": "strategy.json",
    "strategy_dev_zero": "/dev/zero",
    "strategy_2mb_file": "strategy.json",
    "strategy_deep_extra_field": "strategy.json",
    "strategy_budget_true": "daily_budget",
    "strategy_audience_true": "audience_size",
    "history_dev_zero": "/dev/zero",
    "history_1m_rows_dup_line3": "line 3",
    "history_conversions_over_clicks": "conversions",
    "history_zero_impressions": "history.csv",
    "history_spend_1e300": "spend",
    "history_revenue_1e300": "revenue",
    "history_spend_true": "spend",
    "history_1mb_line": "history.csv",
    "history_100k_rows": "rows",
    "yaml_billion_laughs": "scenario.yaml",
    "yaml_duration_inf": "duration",
    "yaml_duration_100000000d": "duration",
    "yaml_tick_0.000001": "tick",
    "yaml_gate_paths_1e12": "gate_paths",
    "yaml_multiplier_inf": "multiplier",
    "yaml_duplicate_keys": "duration",
    "yaml_cpm_inf": "cpm",
    "yaml_budget_1e308": "daily_budget",
    "yaml_dev_zero": "/dev/zero",
    "yaml_2mb_file": "scenario.yaml",
}
VALID = {"history_bom"}  # good files in an unusual form: decided, not refused


def corpus() -> list[Case]:
    """Every case, with what its error must name (NEEDLES) and whether it is a good file (VALID)."""
    return [replace(c, needle=NEEDLES.get(c.name), valid=c.name in VALID) for c in _cases()]


def _cases() -> list[Case]:
    deep = "[" * 200_000 + "]" * 200_000
    return [
        # --- item 5: absurd finite numbers ---
        Case(
            "strategy_aov_1e39", "gate", _strategy_with(aov=1e39), "APPROVED with infinite uplift, Infinity published"
        ),
        Case("strategy_daily_budget_1e308", "gate", _strategy_with(daily_budget=1e308), "traceback, exit 1"),
        Case("strategy_audience_1e30", "gate", _strategy_with(audience_size=10**30), "huge count"),
        Case("strategy_cpm_1e30", "gate", _strategy_with(cpm=1e30), "huge money field"),
        Case("strategy_cpm_1e-300", "gate", _strategy_with(cpm=1e-300), "tiny CPM: conversions per dollar overflow"),
        Case("strategy_launch_ts_1e300", "gate", _strategy_with(launch_ts=1e300), "a launch time past any date"),
        # --- item 6: hostile strategy files ---
        Case("strategy_json_200k_deep", "gate", _gate_strategy(deep), "RecursionError traceback"),
        Case("strategy_int_400_digits", "gate", _raw_strategy_field("audience_size", "1" * 400), "traceback"),
        Case("strategy_int_5000_digits", "gate", _raw_strategy_field("daily_budget", "9" * 5000), "int limit"),
        Case("strategy_dev_zero", "gate", _gate_path("/dev/zero"), "memory grows without bound"),
        Case("strategy_2mb_file", "gate", _gate_strategy(json.dumps(GOOD_STRATEGY) + " " * 2_000_000), "size cap"),
        Case(
            "strategy_deep_extra_field",
            "gate",
            _strategy_with(notes=json.loads("[" * 500 + "]" * 500)),
            "a nested extra field kept and audited",
        ),
        Case("strategy_empty", "gate", _gate_strategy(""), "empty file"),
        Case("strategy_binary", "gate", _gate_strategy(bytes(range(256)) * 40), "binary garbage"),
        Case("strategy_directory", "gate", _gate_path("{dir}"), "a directory"),
        Case("strategy_missing", "gate", _gate_path("{dir}/nope.json"), "a missing file"),
        # --- item 7: smaller ---
        Case("strategy_budget_true", "gate", _raw_strategy_field("daily_budget", "true"), "accepted as $1"),
        Case("strategy_audience_true", "gate", _raw_strategy_field("audience_size", "true"), "accepted as 1"),
        Case("strategy_budget_negative", "gate", _strategy_with(daily_budget=-5), "negative money"),
        Case("strategy_cvr_nan", "gate", _raw_strategy_field("cvr", "NaN"), "NaN"),
        Case("strategy_budget_infinity", "gate", _raw_strategy_field("daily_budget", "Infinity"), "Infinity"),
        # --- history files ---
        Case("history_dev_zero", "gate", _gate_history(path="/dev/zero"), "memory grows without bound"),
        Case(
            "history_1m_rows_dup_line3",
            "gate",
            _gate_history(_one_million_rows_dup_line3()),
            "2.2 GB, duplicate reported after 13 s",
        ),
        Case(
            "history_bom",
            "gate",
            _gate_history("\ufeff" + HEADER + _history_rows(90)),
            "misleading 'missing column(s) date'",
        ),
        Case(
            "history_conversions_over_clicks",
            "gate",
            _gate_history(HEADER + _history_rows(90, row="600,90000,1800,2500,4400")),
            "accepted",
        ),
        Case(
            "history_zero_impressions",
            "gate",
            _gate_history(HEADER + _history_rows(90, row="600,0,0,0,4400")),
            "error without the file's name",
        ),
        Case(
            "history_spend_1e300",
            "gate",
            _gate_history(HEADER + _history_rows(90, row="1e300,90000,1800,70,4400")),
            "absurd spend",
        ),
        Case(
            "history_revenue_1e300",
            "gate",
            _gate_history(HEADER + _history_rows(90, row="600,90000,1800,70,1e300")),
            "absurd revenue",
        ),
        Case(
            "history_spend_true",
            "gate",
            _gate_history(HEADER + _history_rows(90, row="true,90000,1800,70,4400")),
            "a boolean as money",
        ),
        Case(
            "history_1mb_line",
            "gate",
            _gate_history(HEADER + "2026-01-01," + "9" * 1_000_000 + ",1,1,1,1\n"),
            "one huge line",
        ),
        Case("history_binary", "gate", _gate_history(bytes(range(256)) * 400), "binary garbage"),
        Case("history_nul_bytes", "gate", _gate_history(HEADER + "\0" * 10_000 + "\n"), "NUL bytes"),
        Case("history_empty", "gate", _gate_history(""), "empty file"),
        Case("history_directory", "gate", _gate_history(path="/tmp"), "a directory"),
        Case("history_missing", "gate", _gate_history(path="/nonexistent/history.csv"), "a missing file"),
        Case(
            "history_100k_rows",
            "gate",
            _gate_history(HEADER + _history_rows(100_000, start_ordinal=700_000)),
            "a row count no account has",
        ),
        # --- scenario files ---
        Case("yaml_billion_laughs", "replay", _scenario(_billion_laughs()), "54 s and 5.3 GB before exit 2"),
        Case(
            "yaml_recursive_alias",
            "replay",
            _scenario("name: r\nduration: 1h\ndescription: &a [*a]\n"),
            "a self-referencing alias",
        ),
        Case("yaml_duration_inf", "replay", _scenario(duration=".inf"), "runs forever"),
        Case("yaml_duration_100000000d", "replay", _scenario(duration="100000000d"), "runs forever"),
        Case("yaml_tick_0.000001", "replay", _scenario(world="{tick: 0.000001}"), "runs forever"),
        Case("yaml_gate_paths_1e12", "replay", _scenario(gate_paths=10**12), "runs forever"),
        Case("yaml_multiplier_inf", "replay", _scenario(multiplier=".inf"), "accepted"),
        Case("yaml_multiplier_nan", "replay", _scenario(multiplier=".nan"), "NaN multiplier"),
        Case(
            "yaml_duplicate_keys",
            "replay",
            _scenario(SCENARIO.format(**SCENARIO_DEFAULTS) + "duration: 1h\n"),
            "passes silently",
        ),
        Case("yaml_duration_negative", "replay", _scenario(duration="-5"), "negative duration"),
        Case(
            "yaml_cpm_inf",
            "replay",
            _scenario(world="{tick: 5m, platforms: {meta: {cpm: .inf}}}"),
            "an infinite market CPM",
        ),
        Case("yaml_budget_1e308", "replay", _scenario(budget="1.0e+308"), "a campaign's absurd budget"),
        Case("yaml_dev_zero", "replay", _scenario(path="/dev/zero"), "memory grows without bound"),
        Case(
            "yaml_2mb_file",
            "replay",
            _scenario(SCENARIO.format(**SCENARIO_DEFAULTS) + "#" * 2_000_000 + "\n"),
            "size cap",
        ),
        Case("yaml_binary", "replay", _scenario(bytes(range(256)) * 40), "binary garbage"),
        Case("yaml_empty", "replay", _scenario(""), "empty file"),
        Case("yaml_directory", "replay", _scenario(path="{dir}"), "a directory"),
        Case("yaml_missing", "replay", _scenario(path="{dir}/nope.yaml"), "a missing file"),
        # --- chaos: its only inputs are arguments ---
        Case("chaos_unknown_drill", "chaos", lambda d: ["chaos", "--drill", "nope"], "an unknown drill"),
        Case("chaos_negative_seed", "chaos", lambda d: ["chaos", "--seed", "-1"], "a negative seed"),
    ]


# --- running one case ---------------------------------------------------------------------------------


def _limits(max_bytes: int) -> Callable[[], None]:
    def apply() -> None:
        os.setsid()  # its own process group: a timeout kills its threads' helpers too
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))

    return apply


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return ""
    if "Traceback (most recent call last)" in stderr:
        return lines[-1][:160]  # the exception line
    for ln in lines:
        if "error" in ln.lower():
            return ln[:160]
    return lines[0][:160]


def run_case(cli: str, case: Case, workdir: Path, *, timeout: float, max_bytes: int) -> Outcome:
    d = workdir / case.name
    d.mkdir(parents=True, exist_ok=True)
    args = case.make(d)
    env = {**os.environ, "SYNCTWIN_CONFIG_FILE": str(d / "none.env"), "NO_COLOR": "1", "COLUMNS": "200"}
    out, err = d / "stdout", d / "stderr"
    started = time.perf_counter()
    with open(out, "wb") as so, open(err, "wb") as se:
        proc = subprocess.Popen(
            [cli, *args], stdout=so, stderr=se, stdin=subprocess.DEVNULL, cwd=d, env=env, preexec_fn=_limits(max_bytes)
        )
        status, usage, killed = None, None, False
        while True:
            pid, raw, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = raw
                break
            if time.perf_counter() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                killed = True
                break
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    stderr = err.read_text(encoding="utf-8", errors="replace")
    code = None if killed else proc.returncode
    traceback = "Traceback (most recent call last)" in stderr
    error = f"killed after {timeout:.0f} s" if killed else _first_error(stderr)
    if not error and (code != EXIT_INVALID or case.valid):
        error = f"(no error; stdout: {out.read_text(errors='replace').strip().splitlines()[:1]})"
    decided = code in (0, 1) if case.valid else code == EXIT_INVALID
    named = case.needle is None or case.needle in stderr
    clean = decided and named and not traceback and seconds < CLEAN_SECONDS
    if decided and not named:
        error += f"  [does not name {case.needle!r}]"
    return Outcome(
        case.name, case.command, code, round(seconds, 2), round(usage.ru_maxrss / 1024.0, 1), error, traceback, clean
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run hostile inputs through the synctwin CLI.")
    parser.add_argument(
        "--cli",
        default=str(Path(sys.executable).with_name("synctwin")),
        help="the synctwin executable to test (default: the one next to this Python)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a case is killed (default 30)")
    parser.add_argument("--max-memory-gb", type=float, default=2.0, help="address-space limit per case (default 2)")
    parser.add_argument("--only", metavar="TEXT", help="only cases whose name contains TEXT")
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the generated files (their directory is printed)")
    args = parser.parse_args(argv)
    found = shutil.which(args.cli)
    if not found:
        parser.error(f"no executable {args.cli}")
    args.cli = os.path.abspath(found)  # the cases run in their own directories
    cases = [c for c in corpus() if not args.only or args.only in c.name]
    workdir = Path(tempfile.mkdtemp(prefix="hostile-"))
    outcomes = []
    try:
        for case in cases:
            o = run_case(args.cli, case, workdir, timeout=args.timeout, max_bytes=int(args.max_memory_gb * 2**30))
            outcomes.append(o)
            if not args.json:
                mark = "clean" if o.clean else "NOT CLEAN"
                print(
                    f"{o.name:34} {o.command:6} exit={o.exit!s:4} {o.seconds:6.2f}s {o.peak_rss_mb:7.1f}MB "
                    f"{mark:9} {o.error}",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    clean = sum(o.clean for o in outcomes)
    if args.json:
        print(
            json.dumps(
                {"cli": args.cli, "tried": len(outcomes), "clean": clean, "outcomes": [asdict(o) for o in outcomes]},
                indent=2,
            )
        )
    else:
        print(
            f"\n{len(outcomes)} inputs tried, {clean} handled cleanly (exit 2 naming the field or file, "
            f"no traceback, under {CLEAN_SECONDS:.0f} s); {args.cli}"
        )
    return 0 if clean == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
