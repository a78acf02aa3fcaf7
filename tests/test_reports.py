"""HTML reports (--report on gate, replay, chaos), `synctwin review`, and quiet progress bars.

Reports are checked as a reader would use them: the file is a complete HTML page, it holds the
plots (inline SVG) and the key numbers as text, and it needs nothing from the network.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shared_scenarios import SHOCK

from agents.syncshield import JsonlAuditStore
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.syncvalue import compute_baseline
from harness.runner import run_scenario
from scenarios.loader import scenario_from_dict
from synctwin.app.cli import main
from synctwin.app.progress import ProgressBar, interactive
from synctwin.kernel.history import load_history
from synctwin.kernel.models import Strategy

DATA = Path(__file__).parent / "data"
STRATEGY = DATA / "strategy.json"
HISTORY = DATA / "history_90d.csv"


VOID = {"meta", "br", "img", "hr", "input", "link", "area", "base", "col", "embed", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Tags must nest and close (SVG elements included); collects text and tag counts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: dict[str, int] = {}
        self.text: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_page(path: Path) -> tuple[str, _Checker]:
    """The page's source and its parse; asserts it is whole, well nested and offline."""
    source = path.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(source)
    checker.close()
    assert checker.doctype, "no <!DOCTYPE html>"
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, f"unclosed: {checker.stack[:5]}"
    assert checker.tags.get("html") == 1 and checker.tags.get("title") == 1
    assert not re.search(r"https?://", source), "the page refers to the network"
    assert "<script" not in source and " src=" not in source
    return source, checker


def text_of(checker: _Checker) -> str:
    return " ".join(" ".join(checker.text).split())


# the example strategy at $1,200 a day: 2x the history's spend, outside its range, likely but not surely
# profitable (confidence ~0.82 at seed 1): a near miss
NEAR_BUDGET = 1200


def gate_args(*extra: str, strategy: Path = STRATEGY) -> list[str]:
    return ["gate", str(strategy), "--history", str(HISTORY), "--seed", "1", *extra]


def write_strategy(tmp_path: Path, name: str, **changes: Any) -> Path:
    data = json.loads(STRATEGY.read_text(encoding="utf-8")) | changes
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- gate --------------------------------------------------------------------------------------


def test_uplift_for_the_report_leaves_the_result_unchanged() -> None:
    baseline = compute_baseline(load_history(HISTORY))
    s = Strategy.model_validate(json.loads(STRATEGY.read_text(encoding="utf-8")))
    gate = SimulationGatekeeper()
    plain = gate.evaluate(s, baseline, seed=3).to_dict()
    result, uplift = gate.evaluate_with_uplift(s, baseline, seed=3)
    with_uplift = result.to_dict()
    plain.pop("elapsed_ms"), with_uplift.pop("elapsed_ms")
    assert plain == with_uplift
    sd = result.simulation_details
    assert uplift.shape == (sd.total_simulations,)
    assert int(np.count_nonzero(uplift > 0)) == sd.positive_outcomes
    assert np.quantile(uplift, 0.5) == pytest.approx(sd.median_uplift, abs=0.01)


def test_progress_callback_sees_every_path_and_changes_nothing() -> None:
    baseline = compute_baseline(load_history(HISTORY))
    s = Strategy.model_validate(json.loads(STRATEGY.read_text(encoding="utf-8")))
    seen: list[tuple[int, int]] = []
    gate = SimulationGatekeeper()
    a = gate.evaluate(s, baseline, seed=4, paths=120_000, max_paths=120_000, progress=lambda d, t: seen.append((d, t)))
    b = gate.evaluate(s, baseline, seed=4, paths=120_000, max_paths=120_000)
    assert seen[-1] == (120_000, 120_000) and len(seen) >= 3  # one call per 50k chunk
    assert a.model_copy(update={"elapsed_ms": 0}) == b.model_copy(update={"elapsed_ms": 0})


@pytest.mark.parametrize(
    ("changes", "decision", "status"),
    [({"daily_budget": 3000, "cvr": 0.01}, "REJECTED", 1), ({"daily_budget": 1100, "cvr": 0.03}, "APPROVED", 0)],
)
def test_gate_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], decision: str, status: int
) -> None:
    strategy = write_strategy(tmp_path, "s", **changes)
    report = tmp_path / "gate.html"
    assert main([*gate_args("--json", "--report", str(report), strategy=strategy)]) == status
    result = json.loads(capsys.readouterr().out)  # --json output stays one JSON document
    assert result["decision"] == decision
    source, page = check_page(report)
    assert page.tags.get("svg") == 2  # the uplift histogram and the projection fan
    text = text_of(page)
    sd = result["simulation_details"]
    assert f"SyncTwin gate: {decision}" in text
    for needle in (
        f"{result['confidence_score'] * 100:.1f}%",
        f"approve when confidence > {result['threshold']}",
        f"{sd['total_simulations']:,}",
        f"{abs(sd['p10_uplift']):,.0f}",
        f"{abs(sd['median_uplift']):,.0f}",
        f"{abs(sd['p90_uplift']):,.0f}",
        result["risk_profile"],
        result["campaign_id"],
    ):
        assert needle in text, needle
    # the histogram's title carries decision, confidence and threshold; p10/p50/p90 are marked
    assert f"{decision}: confidence {result['confidence_score']:.3f}" in source
    assert all(f">{q} " in source for q in ("p10", "p50", "p90"))
    last = result["projection"]["points"][-1]
    assert f"{last['revenue_p50']:,.0f}" in text  # the projection's final median, in words


def test_gate_without_report_does_not_import_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys, contextlib, io\nfrom synctwin.app.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    rc = main({gate_args(strategy=write_strategy(tmp_path, 'near', daily_budget=NEAR_BUDGET))!r})\n"
        "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL')"
        " or m.startswith('synctwin.app.reports.')))"  # the package's path checks may load; no page builder
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1 []"


@pytest.mark.parametrize("bad", ["missing-dir/report.html", "."])
def test_bad_report_path_fails_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    target = str(tmp_path / bad) if bad != "." else str(tmp_path)
    audit = tmp_path / "audit.jsonl"
    assert main([*gate_args("--report", target, "--audit-log", str(audit))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--report" in err and err.startswith("synctwin gate: error:")
    assert not audit.exists()  # the gate did not run: nothing was decided or audited
    assert main(["replay", "no-such-scenario", "--report", target]) == 2  # checked before the scenario
    assert "--report" in capsys.readouterr().err
    assert main(["chaos", "--report", target, "--audit-log", str(audit)]) == 2
    assert "--report" in capsys.readouterr().err and not audit.exists()


# --- replay ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "shock.yaml"
    path.write_text(json.dumps(SHOCK), encoding="utf-8")  # JSON is YAML
    return path


def test_replay_trace_carries_the_projection_and_progress_changes_nothing() -> None:
    scenario = scenario_from_dict(SHOCK)
    seen: list[float] = []
    a = run_scenario(scenario, 2, progress=lambda t, total: seen.append(t))
    b = run_scenario(scenario, 2)
    da, db = a.to_dict(series=True), b.to_dict(series=True)
    da.pop("wall_s"), db.pop("wall_s")
    assert da == db  # the progress observer adds no SimPy event
    assert seen == sorted(seen) and seen[-1] == scenario.duration and len(seen) >= 9
    points = a.campaigns["thin"].projection
    assert points and points[0]["t_hours"] == 0 and points[1]["t_hours"] == 24
    assert da["campaigns"]["thin"]["projection"] == points
    assert "projection" not in a.to_dict()["campaigns"]["thin"]  # the default summary is unchanged


def test_replay_report(tmp_path: Path, capsys: pytest.CaptureFixture[str], shock_file: Path) -> None:
    report = tmp_path / "replay.html"
    assert main(["replay", str(shock_file), "--json", "--report", str(report)]) == 0
    d = json.loads(capsys.readouterr().out)
    _, page = check_page(report)
    assert page.tags.get("svg") == 1  # one campaign: its spend and revenue against the fan
    text = text_of(page)
    c = d["campaigns"]["thin"]
    assert "SyncTwin replay: thin_margin_shock (seed 0)" in text and "PASSED" in text
    assert "paused: MARGIN_GUARDIAN" in text and "cpm_shock" in text
    assert f"{c['totals']['spend']:,.0f}" in text and f"{c['totals']['revenue']:,.0f}" in text
    assert "against a projected median of" in text
    for e in d["timeline"]:  # the whole timeline, as a table
        assert e["kind"] in text


def test_replay_report_of_a_failed_run_and_an_unlaunched_campaign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = json.loads(json.dumps(SHOCK)) | {"disabled_guards": ["margin_guardian"]}
    spec["campaigns"].append(
        {
            "id": "greedy",
            "client": "kettle",
            "launch_at": "1h",
            "strategy": {
                "platform": "meta",
                "audience_size": 10000,
                "cvr": 0.001,
                "daily_budget": 50000,
                "gross_margin": 0.35,
            },
        }
    )
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(spec), encoding="utf-8")
    report = tmp_path / "r.html"
    assert main(["replay", str(path), "--report", str(report)]) == 1
    assert f"report: {report}" in capsys.readouterr().out
    _, page = check_page(report)
    text = text_of(page)
    assert "FAILED" in text and "FAIL" in text and "Never launched" in text


# --- chaos -------------------------------------------------------------------------------------


def test_chaos_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "chaos.html"
    assert main(["chaos", "--json", "--report", str(report)]) == 0
    d = json.loads(capsys.readouterr().out)
    _, page = check_page(report)
    assert page.tags.get("svg") == 4  # one timeline per drill
    text = text_of(page)
    assert "4/4 passed" in text and "PASS: every guard reacted as required" in text
    for row in d["results"]:
        assert row["drill"] in text and row["happened"] in text and row["when"] in text


def test_chaos_report_names_the_failed_drill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "chaos.html"
    assert (
        main(["chaos", "--drill", "market_shock", "--disable-guard", "margin_guardian", "--report", str(report)]) == 1
    )
    capsys.readouterr()
    _, page = check_page(report)
    text = text_of(page)
    assert "0/1 passed" in text and "FAIL: 1 drill(s) failed (market_shock)" in text
    assert "margin_guardian" in text  # the guard that was switched off


# --- review ------------------------------------------------------------------------------------


@pytest.fixture()
def audit_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Three gate runs audited by `synctwin gate --audit-log`: a near-miss, a clear loser, an approval."""
    log = tmp_path / "audit.jsonl"
    for name, changes, status in (
        ("near", {"campaign_id": "near-miss", "daily_budget": NEAR_BUDGET}, 1),
        ("loser", {"campaign_id": "big-spender", "daily_budget": 3000}, 1),
        ("winner", {"campaign_id": "winner", "daily_budget": 1100, "cvr": 0.03}, 0),
    ):
        strategy = write_strategy(tmp_path, name, **changes)
        assert main([*gate_args("--audit-log", str(log), strategy=strategy)]) == status
    capsys.readouterr()
    return log


def _review(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["review", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_review_lists_the_weeks_rejections_near_misses_first(
    audit_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _review(capsys, "--audit-log", str(audit_log))
    rows = d["rejections"]
    assert [r["campaign_id"] for r in rows] == ["near-miss", "big-spender"]  # the approval is not listed
    assert rows[0]["confidence"] > rows[1]["confidence"]
    assert rows[1]["projected_uplift"] < 0 < rows[0]["projected_uplift"]
    assert all(r["client_id"] == "example-client" and r["threshold"] == 0.85 for r in rows)
    assert all("shadow_outcome" not in r for r in rows)
    t = d["totals"]
    assert t["rejections"] == 2 and t["near_misses"] == 1 and t["with_shadow_outcome"] == 0
    assert t["projected_loss"] == rows[1]["projected_uplift"]

    assert main(["review", "--audit-log", str(audit_log)]) == 0
    out = capsys.readouterr().out
    assert out.index("near-miss") < out.index("big-spender") and "winner" not in out
    assert "2 rejections" in out and "shadow" not in out


def test_review_respects_since(audit_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An old rejection (appended with a clock ten days back) is outside the default week."""
    meta = JsonlAuditStore(audit_log).records()[0]["metadata"] | {"campaign_id": "old-one", "confidence_score": 0.6}
    ten_days_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).timestamp()
    JsonlAuditStore(audit_log, clock=lambda: ten_days_ago).append(
        "CAMPAIGN_REJECTED",
        client_id="example-client",
        campaign_id="old-one",
        reason="SYNCTWIN_NEGATIVE_FORECAST",
        metadata=meta,
    )
    assert "old-one" not in [r["campaign_id"] for r in _review(capsys, "--audit-log", str(audit_log))["rejections"]]
    since = (dt.date.today() - dt.timedelta(days=30)).isoformat()
    rows = _review(capsys, "--audit-log", str(audit_log), "--since", since)["rejections"]
    assert [r["campaign_id"] for r in rows] == ["near-miss", "old-one", "big-spender"]
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    assert _review(capsys, "--audit-log", str(audit_log), "--since", tomorrow)["rejections"] == []
    assert main(["review", "--audit-log", str(audit_log), "--since", tomorrow]) == 0
    assert "no rejections" in capsys.readouterr().out


@pytest.mark.redis
def test_review_reads_the_redis_audit_stream(
    redis_server: Any, redis_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, changes in (
        ("near", {"campaign_id": "near-miss", "daily_budget": NEAR_BUDGET}),
        ("loser", {"campaign_id": "big-spender", "daily_budget": 3000}),
    ):
        assert main([*gate_args("--redis", redis_server.url, strategy=write_strategy(tmp_path, name, **changes))]) == 1
    capsys.readouterr()
    d = _review(capsys, "--redis", redis_server.url)
    assert [r["campaign_id"] for r in d["rejections"]] == ["near-miss", "big-spender"]
    assert d["source"] == "Redis key synctwin:audit"


@pytest.mark.parametrize("bad", ["last week", "2025-02-30", "2025-13-01", ""])
def test_review_rejects_an_invalid_date(audit_log: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    assert main(["review", "--audit-log", str(audit_log), "--since", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--since" in err and "not a date" in err


def test_review_needs_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review"]) == 2
    assert "--audit-log" in capsys.readouterr().err
    assert main(["review", "--audit-log", str(tmp_path / "none.jsonl")]) == 2
    assert "no such audit log file" in capsys.readouterr().err


def test_review_shows_a_shadow_outcome_only_when_one_exists(
    audit_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    JsonlAuditStore(audit_log).append(
        "SHADOW_OUTCOME", client_id="example-client", campaign_id="near-miss", metadata={"net_profit_uplift": 4321.0}
    )
    d = _review(capsys, "--audit-log", str(audit_log))
    by_id = {r["campaign_id"]: r for r in d["rejections"]}
    assert by_id["near-miss"]["shadow_outcome"]["net_profit_uplift"] == 4321.0
    assert "shadow_outcome" not in by_id["big-spender"]
    assert main(["review", "--audit-log", str(audit_log)]) == 0
    out = capsys.readouterr().out
    assert "shadow outcome" in out and "$4,321" in out


# --- progress ----------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    """A stderr that says it is a terminal, so rich would draw on it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture()
def tty(monkeypatch: pytest.MonkeyPatch) -> Callable[[], FakeTTY]:
    """Call it in the test body: pytest's own capture replaces sys.stderr after fixtures run."""

    def install() -> FakeTTY:
        fake = FakeTTY()
        monkeypatch.setattr(sys, "stderr", fake)
        return fake

    return install


def test_progress_is_off_when_not_a_terminal_or_in_json_mode(
    tty: Callable[[], FakeTTY], monkeypatch: pytest.MonkeyPatch
) -> None:
    tty()
    assert interactive(False) and not interactive(True)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not interactive(False)
    with ProgressBar("x", enabled=False, total=10) as bar:
        bar.update(5)
        assert bar._progress is None  # nothing started, rich not touched


def test_progress_waits_for_big_work(tty: Callable[[], FakeTTY]) -> None:
    fake = tty()
    with ProgressBar("gate: paths", enabled=True, min_total=200_000) as bar:
        bar.update(50_000, 100_000)
        assert bar._progress is None  # small: no bar
        bar.update(100_000, 200_000)
        assert bar._progress is not None
    assert "gate: paths" in fake.getvalue()


COMMANDS = {
    "backtest": ["backtest", "--paths", "2000"],
    "gate": gate_args("--paths", "250000", "--max-paths", "250000"),
    "chaos": ["chaos", "--drill", "api_outage"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_progress_bar_on_a_terminal_and_silence_with_json(
    name: str, tty: Callable[[], FakeTTY], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tty()
    main(COMMANDS[name])
    capsys.readouterr()
    assert fake.getvalue(), f"{name}: no progress bar on a terminal"
    fake.seek(0), fake.truncate()
    main([*COMMANDS[name], "--json"])
    json.loads(capsys.readouterr().out)
    assert fake.getvalue() == "", f"{name}: progress in --json mode"


def test_replay_progress(
    tty: Callable[[], FakeTTY], capsys: pytest.CaptureFixture[str], shock_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tty()
    assert main(["replay", str(shock_file)]) == 0
    assert fake.getvalue() == ""  # nine virtual hours: too short for a bar
    import synctwin.app.commands.replay as replay_cmd

    monkeypatch.setattr(replay_cmd, "PROGRESS_MIN_VIRTUAL_S", 3600.0)
    assert main(["replay", str(shock_file)]) == 0
    assert "replay thin_margin_shock" in fake.getvalue()
    fake.seek(0), fake.truncate()
    assert main(["replay", str(shock_file), "--json"]) == 0
    assert fake.getvalue() == ""
    capsys.readouterr()


@pytest.mark.parametrize("args", [["backtest", "--paths", "2000"], ["chaos", "--drill", "api_outage"]])
def test_no_progress_when_stderr_is_not_a_terminal(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    main(args)
    assert capsys.readouterr().err == ""
