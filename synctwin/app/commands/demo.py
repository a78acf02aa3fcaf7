"""`synctwin demo`: the main job on embedded defaults, no server needed.

It tells one story: SyncBrain proposes ten campaigns, SyncTwin's gate approves or blocks each
(before a cent is spent), hindsight shows what those calls were worth, and SyncShield's audit
trail proves what was decided. Later capabilities (replay, chaos, mirror) add their chapters."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from synctwin.app.console import INDENT, console, fit_names, say, show, table
from synctwin.infra.redis_conn import connect
from synctwin.kernel.config import get_settings
from synctwin.kernel.formatting import duration, money, percent, plural
from synctwin.kernel.model_names import MODELS

_NUMBERS = ("confidence", "p10", "median", "p90", "paths", "time", "median uplift")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=7, metavar="S", help="random seed of every simulation (default 7)")
    p.add_argument("--paths", type=int, default=10_000, metavar="N", help="Monte Carlo paths per gate (default 10000)")


def run(args: argparse.Namespace) -> int:
    out = console()
    out.rule("[bold]SyncTwin demo[/] - embedded defaults, virtual time, no server")
    _chapter_gate(out, args)
    report = asyncio.run(_chapter_handshake(out, args))
    _chapter_hindsight(out, report)
    _chapter_replay(out, args)
    _chapter_chaos(out, args)
    _chapter_mirror(out, args)
    out.rule()
    say(
        out,
        "Next: README.md's five-minute tour, starting with `synctwin gate "
        "scenarios/examples/approve/strategy.json --history scenarios/examples/approve/history.csv`; "
        "then `synctwin replay --list`, `synctwin chaos`, `synctwin run --redis URL`.",
        indent=0,
    )
    return 0


def _chapter_gate(out: Any, args: argparse.Namespace) -> None:
    from importlib.resources import files

    from synctwin.kernel.history import parse_history_csv
    from synctwin.kernel.strategy_io import strategy_from_dict
    from synctwin.services.gate import GateRequest, decide

    _chapter(
        out,
        "[bold]1. The pre-launch gate[/] on the two bundled examples (scenarios/examples/: a 90-day history, "
        "a 30-day Meta campaign each): net profit uplift over 30 days",
    )
    settings = get_settings()
    t = table("example", "model", "decision", "confidence", "p10", "median", "p90", right=_NUMBERS)
    for name in ("approve", "reject"):
        folder = files("scenarios") / "examples" / name
        strategy = strategy_from_dict(json.loads((folder / "strategy.json").read_text()), source=f"{name} strategy")
        history = parse_history_csv((folder / "history.csv").read_text(), source=f"{name} history")
        for model in MODELS:
            request = GateRequest(strategy, history, model=model, seed=args.seed, paths=args.paths, suggestions=False)
            r = decide(request, settings).result
            sd = r.simulation_details
            t.add_row(
                name if model == MODELS[0] else "",
                model,
                r.decision,
                percent(r.confidence_score, 1),
                money(sd.p10_uplift),
                money(sd.median_uplift),
                money(sd.p90_uplift),
            )
    show(out, t)
    say(
        out,
        "The curve model learns from the history what more spend buys (fewer conversions per dollar as "
        "spend rises) and widens its bands beyond the spend the history covers; the funnel model buys "
        "conversions at one constant rate; the one-factor formula assumes every conversion arrives.",
    )


async def _chapter_handshake(out: Any, args: argparse.Namespace) -> Any:
    from agents.syncbrain import CampaignRejectedError, SyncBrain
    from agents.syncflow import InMemoryDeployer
    from agents.syncshield.backends import JsonlAuditStore
    from agents.syncshield.chain import verify_chain
    from agents.syncshield.service import SyncShield
    from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
    from agents.syncvalue import InMemoryHistoryStore, SyncValue
    from harness.evaluation.backtest import BacktestReport, BacktestRow, builtin_historical_dir, load_cases

    cases = load_cases(builtin_historical_dir())
    _chapter(
        out,
        f"[bold]2. The Digital Handshake[/]: SyncBrain proposes {len(cases)} campaigns, "
        "SyncTwin gates each before launch",
    )
    store = InMemoryHistoryStore()
    for case in cases:
        store.put(case.strategy.client_id, case.history)
    gate = SimulationGatekeeper(SyncValue(store), paths=args.paths)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "audit.jsonl"
        shield, deployer = SyncShield(JsonlAuditStore(log, hmac_key=None)), InMemoryDeployer()  # a throwaway log
        brain = SyncBrain(_SeededGate(gate, args.seed), shield, deployer)
        # the name says the platform (01_meta_...): no column for it
        t = table("campaign", "decision", "confidence", "median uplift", right=_NUMBERS)
        fit_names(t, [case.name for case in cases], out.width - INDENT)
        rows = []
        for case in cases:
            request = case.strategy.model_dump(exclude_none=True)
            try:
                result = (await brain.generate_strategy(case.strategy.client_id, request))["twin_validation"]
            except CampaignRejectedError as exc:
                result = exc.twin_result
            approved = result["decision"] == "APPROVED"
            colour = "green" if approved else "red"
            t.add_row(
                case.name,
                f"[{colour}]{result['decision']}[/]",
                percent(result["confidence_score"], 1),
                money(result["projected_net_profit_uplift"]),
            )
            verdict = ("TP" if case.profitable else "FP") if approved else ("FN" if case.profitable else "TN")
            rows.append(
                BacktestRow(
                    name=case.name,
                    decision=result["decision"],
                    confidence=result["confidence_score"],
                    projected_uplift=result["projected_net_profit_uplift"],
                    realized_uplift=case.outcome.net_profit_uplift,
                    profitable=case.profitable,
                    verdict=verdict,
                    seed=args.seed,
                )
            )
        show(out, t)
        say(
            out,
            f"deployed by SyncFlow: {len(deployer.deployed)}; blocked before launch: "
            f"{len(cases) - len(deployer.deployed)} (each raised CampaignRejectedError, no override)",
        )
        records = shield.records()
        report = verify_chain(records)
        _chapter(
            out,
            f"[bold]3. The audit trail[/] (SyncShield, hash-chained JSONL): {plural(len(records), 'record')} "
            f"({sum(r['event_type'] == 'CAMPAIGN_APPROVED' for r in records)} CAMPAIGN_APPROVED, "
            f"{sum(r['event_type'] == 'CAMPAIGN_REJECTED' for r in records)} CAMPAIGN_REJECTED), "
            f"chain {'intact' if report.ok else 'BROKEN'}",
        )
        lines = log.read_text().splitlines()
        edited = json.loads(lines[2])
        edited["metadata"]["confidence_score"] = 0.99
        lines[2] = json.dumps(edited)
        tampered = verify_chain(json.loads(line) for line in lines)
        say(out, f"after someone edits record 3's confidence to 0.99: {tampered.problem}")
    return BacktestReport(
        rows=tuple(rows), model=gate.model, threshold=gate.threshold, paths=args.paths, seed=args.seed
    )


def _chapter_hindsight(out: Any, report: Any) -> None:
    d = report.to_dict()
    m, cash = d["confusion"], d["money"]
    made = m["TP"] + m["FN"]
    _chapter(
        out,
        f"[bold]4. Hindsight[/]: the same campaigns' realized outcomes ({made} made money, "
        f"{len(report.rows) - made} did not)",
    )
    say(
        out,
        f"approved & profitable {m['TP']}, approved & unprofitable {m['FP']}, "
        f"rejected but profitable {m['FN']}, rejected & unprofitable {m['TN']}",
    )
    say(
        out,
        f"profit captured {money(cash['captured_profit'])}, losses avoided {money(cash['avoided_losses'])}, "
        f"losses approved {money(cash['approved_losses'])}, profit missed {money(cash['missed_profit'])}",
    )


def _chapter_replay(out: Any, args: argparse.Namespace) -> None:
    from harness.runner import run_scenario
    from scenarios.loader import load_scenario
    from synctwin.app.commands.replay import timeline_fields

    trace = run_scenario(load_scenario("healthy_launch"), args.seed)
    c = next(iter(trace.campaigns.values()))
    _chapter(
        out,
        f"[bold]5. Replay in virtual time[/]: healthy_launch, {duration(trace.duration_s)} at minute "
        f"resolution ({trace.ticks:,} ticks) in {trace.wall_s:.1f} s of wall time",
    )
    for e in trace.timeline[:6]:
        say(out, f"{duration(e['t']):>6}  {e['kind']:<18} {timeline_fields(e)}")
    say(
        out,
        f"after {duration(trace.duration_s)}: spend {money(c.final.get('spend'))}, revenue "
        f"{money(c.final.get('revenue'))}, net profit uplift {money(c.net_profit_uplift)}, highest day "
        f"{percent(c.max_daily_spend_share)} of budget; status {c.status.lower()}",
    )
    for e in trace.expectations:
        say(out, f"{'[green]PASS[/]' if e.passed else '[red]FAIL[/]'} {e.expectation}")


def _chapter_chaos(out: Any, args: argparse.Namespace) -> None:
    from harness.chaos import DRILLS, run_drill, run_drills

    chaos = run_drills(seed=args.seed)
    _chapter(
        out,
        f"[bold]6. Chaos drills[/] in virtual time (a wall-clock drill waits 10 minutes): "
        f"{len(chaos.results) - len(chaos.failures)}/{len(chaos.results)} passed in {chaos.wall_s:.2f} s",
    )
    t = table("", "drill", "fault", "what happened", "after the fault")
    for r in chaos.results:
        row = r.row()
        mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        t.add_row(mark, row["drill"], row["fault"], row["happened"], row["when"].replace(" after the fault", ""))
    show(out, t)
    broken = run_drill(DRILLS["market_shock"], seed=args.seed, disabled_guards=("margin_guardian",))
    say(
        out,
        f"with MarginGuardian switched off, market_shock {'passes (!)' if broken.passed else 'FAILS'}: "
        f"{'; '.join(broken.row()['failures'][:1])} - the drill catches a broken guard",
    )


def _chapter_mirror(out: Any, args: argparse.Namespace) -> None:
    """Production mode in miniature: the feed and the mirror worker on an embedded Redis."""
    from agents.council.redis import redis_mirror
    from synctwin.services.feed import start_feed
    from world.clock import make_environment

    settings = get_settings()
    client = connect(None)  # fakeredis: the same commands a real server gets
    env = make_environment()
    feed = start_feed(client, env, settings, epoch0=1_767_225_600.0, seed=args.seed)
    worker = redis_mirror(client, settings, block_ms=None, consumer="demo", clock=lambda: feed.world.clock.now())
    worker.ensure_group()
    # virtual time: its events' ts are bounded by the world's clock
    shadow = _rejected_for_shadow(client, settings, args.seed, epoch0=1_767_225_600.0, clock=feed.world.clock.now)
    _chapter(
        out,
        "[bold]7. Real-to-sim sync[/]: four live campaigns on a bid stream (embedded Redis, virtual time), "
        "mirrored against their projections",
    )
    feed.on_pause = lambda cid, fields, t: say(
        out,
        f"{duration(t):>6}  {cid} PAUSED ({fields['reason']}, "
        f"{percent(float(fields['deviation']))} off its projection)",
    )
    while env.now < 72 * 3600:
        env.run(until=env.now + 3600)
        while worker.step():
            pass
        shadow.run(lambda: False, once=True)  # the learning loop reads the same stream, in its own group
    s = worker.stats
    healthy = [c for c in feed.gate_results if c not in feed.paused]
    say(
        out,
        f"{plural(s.events, 'bid event')}, {plural(s.pauses, 'pause')} (one each, exactly once), "
        f"{plural(s.greys, 'grey-zone alert')}; still live after 3 days: {', '.join(healthy)}",
    )
    audit = [f["event_type"] for _, f in client.xrange(f"{settings.key_prefix}audit")]
    say(
        out,
        f"control stream: {plural(client.xlen(f'{settings.key_prefix}control'), 'PAUSE command')}; audit: "
        f"{audit.count('AUTO_ROLLBACK_TRIGGERED')} AUTO_ROLLBACK_TRIGGERED",
    )
    _chapter_learning_loop(out, client, settings)


def _rejected_for_shadow(client: Any, settings: Any, seed: int, *, epoch0: float, clock: Any) -> Any:
    """A thin-margin Meta campaign the gate rejects, stored for shadow mode as `gate --redis` does,
    and the shadow worker's group created before the first bid (it reads the whole stream)."""
    import datetime as dt

    import numpy as np

    from agents.council.redis import redis_shadow
    from scenarios.schema import DEFAULT_MARKETS, GeneratedHistory
    from synctwin.kernel.models import Strategy
    from synctwin.services.gate import GateRequest, decide
    from world.history import generate_history

    history = generate_history(
        DEFAULT_MARKETS["meta"],
        GeneratedHistory(platform="meta", daily_spend=10_000.0),
        np.random.default_rng([seed, 99]),
        dt.date(2025, 12, 1),
    )
    strategy = Strategy(
        campaign_id="thin-margin-push",
        client_id="client-thin",
        platform="meta",
        audience_size=50_000_000,
        cvr=0.02,
        daily_budget=20_000.0,
        duration_days=30,
        gross_margin=0.12,
        launch_ts=epoch0,
    )
    decide(GateRequest(strategy, history, seed=seed, suggestions=False), settings, client=client)
    shadow = redis_shadow(client, settings, consumer="demo", block_ms=None, clock=clock)
    shadow.ensure_group()
    return shadow


def _chapter_learning_loop(out: Any, client: Any, settings: Any) -> None:
    """What the loop learned from the same three days: a rejection's shadow outcome, the paused
    campaigns' realized outcomes, and the success metrics over the audit stream."""
    from agents.syncshield.backends import RedisAuditStore
    from synctwin.app.commands.kpis import kpis

    _chapter(
        out,
        "[bold]8. The learning loop[/]: shadow mode follows a rejected campaign on the market the live ones met",
    )
    records = RedisAuditStore(client, key=f"{settings.key_prefix}audit").records()
    decisions = ("CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED")
    decision = next(
        (r for r in records if r.get("campaign_id") == "thin-margin-push" and r["event_type"] in decisions), None
    )
    shadows = [r["metadata"] for r in records if r["event_type"] == "SHADOW_OUTCOME"]
    if decision is not None:
        say(
            out,
            f"thin-margin-push (12% gross margin): {decision['event_type']} at confidence "
            f"{percent(decision['metadata'].get('confidence_score'), 1)}; never launched",
        )
    if shadows:
        m = shadows[-1]
        verdict = "would have made money" if m["profitable"] else "would have lost money"
        state = "final" if m.get("final") else "provisional: kpis count it once the flight is over"
        say(
            out,
            f"SHADOW_OUTCOME after {m['days']:g} of {m['days_total']} days ({state}; "
            f"{m['market_days_observed']} market days observed): net profit uplift "
            f"{money(m['net_profit_uplift'])} so far, {verdict}",
        )
    outcomes = [r for r in records if r["event_type"] == "CAMPAIGN_OUTCOME"]
    for r in outcomes:
        m = r["metadata"]
        margin = m.get("gross_margin")
        say(
            out,
            f"CAMPAIGN_OUTCOME {r['campaign_id']}: {m.get('end_reason', r.get('reason'))} after "
            f"{duration(m['days'] * 86_400)}, spend {money(m['spend'])}, net profit uplift "
            f"{money(m['net_profit_uplift'])}"
            + (f" at gross margin {percent(margin)}" if margin is not None else "")
            + (" (default; set gross_margin)" if margin == 1.0 else ""),
        )
    if any((r["metadata"].get("gross_margin") == 1.0) for r in outcomes):
        say(
            out,
            "(a strategy without gross_margin counts every dollar of revenue as profit, so a runaway "
            "looks lucrative; with a real margin the same spend loses money: set gross_margin)",
        )
    k = kpis(records)
    fn, fp = k["false_negative_rate"], k["false_positive_rate"]

    def pct(x: Any) -> str:
        return "no data (0/0)" if x["value"] is None else f"{percent(x['value'])} ({x['count']}/{x['of']})"

    say(
        out,
        f"synctwin kpis: rejection share {pct(k['rejection_share'])}, false negatives {pct(fn)}, "
        f"false positives {pct(fp)} - `synctwin shadow --redis URL` does this in production",
    )


def _chapter(out: Any, title: str) -> None:
    out.print()
    say(out, title, indent=0)


class _SeededGate:
    """Pins the demo's seed so every run prints the same numbers."""

    def __init__(self, gate: Any, seed: int) -> None:
        self.gate, self.seed = gate, seed

    async def simulate_strategy(
        self, strategy: Any, client_id: str | None = None, lookback_days: int = 90
    ) -> dict[str, Any]:
        return await self.gate.simulate_strategy(strategy, client_id, lookback_days, seed=self.seed)
