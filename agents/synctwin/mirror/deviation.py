"""Real-to-sim deviation: is a live campaign departing from its projection? Pure functions.

The original rule, |real - projected| / projected > 15%, stays the *practical* threshold, measured
and guarded as canary analysis does (Kayenta, Argo Rollouts):

- against the projection at the same elapsed time, since launch AND over a recent window (a
  campaign turning bad on day 20 barely moves its since-launch figure), and over that window
  against the campaign's own level (25% above plan, then 30% down, is still "on plan");
- no verdict before a warm-up and a minimum projected volume;
- the shortfall also *statistically* significant: one-sided Poisson CUSUMs on each interval's
  conversions, tuned for a `cusum_drop` fall, against the band's p10 (off plan from the start) and
  against the campaign's own level read over a lagged reference window (a change after launch: a
  campaign's path sits anywhere in the band); spend (nearly deterministic) above the band's p90;
- persisting for `persistence` evaluations in a row; a grey zone (one test alone, or a deviation
  above `grey_threshold`) alerts without pausing.

Every mode (the SimPy agent, the Redis worker) calls `apply_event` on a `MirrorState`, which
serialises to the flat hash DESIGN.md keeps in Redis.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from synctwin.kernel.messages import LiveEvent

METRICS = ("spend", "revenue", "conversions")


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    interval: float = 3_600.0  # seconds between evaluations (elapsed campaign time)
    warmup: float = 6 * 3_600.0
    min_projected_conversions: float = 20.0
    threshold: float = 0.15  # the seed's practical threshold
    grey_threshold: float = 0.10
    window: float = 12 * 3_600.0
    persistence: int = 3
    cusum_drop: float = 0.30
    cusum_threshold: float = 10.0
    reference_lag: float = 24 * 3_600.0  # the campaign's own level is read this long ago ...
    reference_span: float = 48 * 3_600.0  # ... over this long (at most)
    min_reference_conversions: float = 50.0


@dataclass(frozen=True, slots=True)
class ProjectionCurve:
    """The projection's cumulative quantiles as arrays, interpolated at any elapsed time."""

    campaign_id: str
    launch_ts: float
    horizon_hours: float
    t_hours: np.ndarray
    bands: dict[str, np.ndarray]  # metric -> (points, 3): p10, p50, p90
    # the same as plain lists, for `at` (called ~15 times an evaluation: np.interp on scalars is slow)
    _t: list[float] = field(init=False, repr=False, compare=False)
    _cols: dict[str, tuple[list[float], list[float], list[float]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_t", [float(x) for x in self.t_hours])
        object.__setattr__(
            self, "_cols", {m: (b[:, 0].tolist(), b[:, 1].tolist(), b[:, 2].tolist()) for m, b in self.bands.items()}
        )

    @classmethod
    def from_projection(cls, projection: dict[str, Any]) -> ProjectionCurve:
        points = projection["points"]
        t = np.array([p["t_hours"] for p in points], dtype=np.float64)
        bands = {
            m: np.array([[p[f"{m}_p10"], p[f"{m}_p50"], p[f"{m}_p90"]] for p in points], dtype=np.float64)
            for m in METRICS
        }
        launch = projection.get("launch_ts")
        if launch is None:
            raise ValueError(f"projection of {projection.get('campaign_id')} has no launch_ts")
        return cls(str(projection["campaign_id"]), float(launch), float(t[-1]), t, bands)

    @property
    def prior_conversions(self) -> float:
        """The band's spread as pseudo-conversions: 1 / sigma^2 of the campaign's level, with sigma
        read from p10 / p50 of the conversions at the horizon (lognormal)."""
        p10, p50 = self.bands["conversions"][-1, 0], self.bands["conversions"][-1, 1]
        if p10 <= 0 or p50 <= p10:
            return 0.0
        sigma = math.log(p50 / p10) / 1.2815515655446004
        return 1.0 / (sigma * sigma)

    def at(self, metric: str, hours: float) -> tuple[float, float, float]:
        """(p10, p50, p90) of the cumulative metric at `hours` after launch; flat past the horizon."""
        t = self._t
        p10, p50, p90 = self._cols[metric]
        h = min(max(hours, 0.0), self.horizon_hours)
        if h <= t[0]:
            return p10[0], p50[0], p90[0]
        if h >= t[-1]:
            return p10[-1], p50[-1], p90[-1]
        j = bisect_right(t, h)  # t[j - 1] <= h < t[j]: linear interpolation, as np.interp
        i = j - 1
        w = (h - t[i]) / (t[j] - t[i])
        return (p10[i] + w * (p10[j] - p10[i]), p50[i] + w * (p50[j] - p50[i]), p90[i] + w * (p90[j] - p90[i]))


@dataclass(slots=True)
class MirrorState:
    """A campaign's mirror: the latest cumulative totals, the test's memory, and the verdict."""

    campaign_id: str
    last_ts: float = -1.0
    last_event_id: str = ""
    spend: float = 0.0
    impressions: float = 0.0
    clicks: float = 0.0
    conversions: float = 0.0
    revenue: float = 0.0
    events: int = 0
    ignored: int = 0
    stale_run: int = 0  # newer events ignored in a row because a total went backwards (a frozen mirror)
    next_eval: float = 0.0  # elapsed seconds of the next evaluation
    eval_elapsed: float = 0.0  # the last evaluation's elapsed time and totals
    eval_conversions: float = 0.0
    cusum: float = 0.0  # against the band's lower edge (off plan from the start)
    cusum_self: float = 0.0  # against the campaign's own level (a change after launch)
    breaches: int = 0
    status: str = "WARMING_UP"  # WARMING_UP, OK, GREY, PAUSED
    deviation: float = 0.0  # the largest practical shortfall (or overspend) at the last evaluation
    paused_at: float = 0.0
    pause_reason: str = ""
    snapshots: list[list[float]] = field(default_factory=list)  # [elapsed, spend, revenue, conversions]

    def to_hash(self) -> dict[str, str]:
        """Flat strings for a Redis hash."""
        return {k: (json.dumps(v) if isinstance(v, list) else str(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_hash(cls, campaign_id: str, data: dict[str, str]) -> MirrorState:
        parse: dict[str, Any] = {"str": lambda raw: raw, "int": int}  # snapshots: JSON, the rest float
        kwargs: dict[str, Any] = {
            name: json.loads(data[name]) if name == "snapshots" else parse.get(f.type, float)(data[name])
            for name, f in cls.__dataclass_fields__.items()
            if name in data
        }
        kwargs["campaign_id"] = campaign_id
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an evaluation concluded. `action` is PAUSE (once), GREY (entering the grey zone) or None."""

    action: str | None
    elapsed: float
    status: str
    figures: tuple[float | None, ...]  # the evaluation's, unrounded, in `detail`'s order (own level: None)

    @property
    def detail(self) -> dict[str, float]:
        """The figures by name, rounded: built when read (a verdict that acts), not at every evaluation."""
        hours, short, over, cusum, cusum_self, level, revenue, rev50, conversions, conv50, spend, spend90 = self.figures
        return {
            "elapsed_h": round(hours, 3),
            "shortfall": round(short, 4),
            "overspend": round(over, 4),
            "cusum": round(cusum, 3),
            "cusum_self": round(cusum_self, 3),
            "own_level": round(level, 4) if level is not None else -1.0,
            "revenue": round(revenue, 2),
            "projected_revenue_p50": round(rev50, 2),
            "conversions": conversions,
            "projected_conversions_p50": round(conv50, 2),
            "spend": round(spend, 2),
            "projected_spend_p90": round(spend90, 2),
        }


class InvalidEvent(ValueError):
    """A bid event that cannot be applied: it goes to the dead-letter stream with this reason."""


EVENT_FIELDS = ("spend", "impressions", "clicks", "conversions", "revenue")
Parsed = LiveEvent  # event_id, campaign_id, ts, the cumulative values: one shape, the kernel's


def parse_event(fields: dict[str, Any]) -> Parsed:
    """(event_id, campaign_id, ts, cumulative values) from a stream entry; InvalidEvent names the field.
    Hand-written, not pydantic: this runs for every event, tens of thousands a second."""
    try:
        event_id = str(fields["event_id"])
        campaign_id = str(fields["campaign_id"])
        ts = float(fields["ts"])
        values = tuple(float(fields[k]) for k in EVENT_FIELDS)
    except KeyError as exc:
        raise InvalidEvent(f"missing field {exc.args[0]}") from None
    except (TypeError, ValueError):
        bad = next((k for k in ("ts", *EVENT_FIELDS) if not _is_number(fields.get(k))), "?")
        raise InvalidEvent(f"field {bad} is not a number ({fields.get(bad)!r})") from None
    return _checked(event_id, campaign_id, ts, values, fields["ts"])


_RAW_KEYS = (b"event_id", b"campaign_id", b"ts", *(k.encode() for k in EVENT_FIELDS))
_RAW_ID, _RAW_CAMPAIGN, _RAW_TS, _RAW_SPEND, _RAW_IMPRESSIONS, _RAW_CLICKS, _RAW_CONVERSIONS, _RAW_REVENUE = _RAW_KEYS


def parse_raw_event(fields: dict[bytes, bytes]) -> Parsed:
    """`parse_event` of an entry as the stream holds it (bytes): only the two text fields are
    decoded (float() reads numbers from bytes), so a byte that is not UTF-8 is one entry's
    InvalidEvent, and the stream costs no decoding of what is a number anyway."""
    try:
        event_id = fields[_RAW_ID].decode()
        campaign_id = fields[_RAW_CAMPAIGN].decode()
        ts = float(fields[_RAW_TS])
        values = (
            float(fields[_RAW_SPEND]),
            float(fields[_RAW_IMPRESSIONS]),
            float(fields[_RAW_CLICKS]),
            float(fields[_RAW_CONVERSIONS]),
            float(fields[_RAW_REVENUE]),
        )
    except (KeyError, UnicodeDecodeError, TypeError, ValueError):
        raise InvalidEvent(_raw_reason(fields)) from None
    return _checked(event_id, campaign_id, ts, values, fields[_RAW_TS])


def not_utf8(fields: dict[Any, Any]) -> str | None:
    """Why a raw entry's fields are not all UTF-8 (names and values), or None."""
    bad: list[str] = []
    for k, v in fields.items():
        if type(k) is bytes:
            try:
                k.decode()
            except UnicodeDecodeError:
                bad.append(f"a field name ({k.decode('utf-8', 'backslashreplace')!r})")
                continue
        if type(v) is bytes:
            try:
                v.decode()
            except UnicodeDecodeError as exc:
                bad.append(
                    f"field {k.decode('utf-8', 'backslashreplace') if type(k) is bytes else k} "
                    f"({v[:40]!r}: byte 0x{v[exc.start]:02x} at {exc.start})"
                )
    return f"not UTF-8: {', '.join(bad)}" if bad else None


def _raw_reason(fields: dict[bytes, bytes]) -> str:
    """The reason of a raw entry that does not parse, naming the field."""
    if (why := not_utf8(fields)) is not None:
        return why
    missing = next((k for k in _RAW_KEYS if k not in fields), None)
    if missing is not None:
        return f"missing field {missing.decode()}"
    bad = next((k for k in _RAW_KEYS[2:] if not _is_number(fields[k])), None)
    if bad is None:
        return "the event does not parse"
    return f"field {bad.decode()} is not a number ({fields[bad].decode()!r})"


def _checked(event_id: str, campaign_id: str, ts: float, values: tuple[float, ...], raw_ts: Any) -> Parsed:
    if not event_id or not campaign_id:
        raise InvalidEvent("empty event_id or campaign_id")
    if not math.isfinite(ts) or ts <= 0:
        if type(raw_ts) is bytes:  # decoded only here: the common case never needs it
            raw_ts = raw_ts.decode("utf-8", "backslashreplace")
        raise InvalidEvent(f"field ts must be positive epoch seconds ({raw_ts!r})")
    if min(values) >= 0.0 and sum(values) < math.inf:  # the common case (a NaN makes the sum NaN)
        return event_id, campaign_id, ts, values
    for name, v in zip(EVENT_FIELDS, values, strict=True):
        if not math.isfinite(v):
            raise InvalidEvent(f"field {name} is not finite ({v!r})")
        if v < 0:
            raise InvalidEvent(f"field {name} is negative ({v!r})")
    return event_id, campaign_id, ts, values


def _is_number(x: Any) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


def apply_event(
    state: MirrorState, event_id: str, ts: float, values: tuple[float, ...], curve: ProjectionCurve, cfg: MirrorConfig
) -> Verdict | None:
    """Apply one event (cumulative since launch); evaluate when an interval has closed. Idempotent:
    an event no newer than the last applied, or whose totals went backwards, is only counted as
    ignored (returns None); a newer one lengthens `stale_run`, which the next applied event resets."""
    spend, impressions, clicks, conversions, revenue = values
    if ts <= state.last_ts or spend < state.spend or conversions < state.conversions or revenue < state.revenue:
        state.ignored += 1
        if ts > state.last_ts:
            state.stale_run += 1
        return None
    state.stale_run = 0
    state.last_ts, state.last_event_id = ts, event_id
    state.spend, state.impressions, state.clicks = spend, impressions, clicks
    state.conversions, state.revenue = conversions, revenue
    state.events += 1
    elapsed = ts - curve.launch_ts
    if elapsed < state.next_eval or state.status == "PAUSED":
        return None
    state.next_eval = (math.floor(elapsed / cfg.interval) + 1) * cfg.interval
    return evaluate(state, elapsed, curve, cfg)


def _shortfall(real: float, expected: float) -> float:
    """How far below the expectation, as a share of it (negative when above)."""
    return (expected - real) / expected if expected > 0 else 0.0


def cusum_step(s: float, observed: float, expected: float, drop: float) -> float:
    """One step of a one-sided Poisson CUSUM for a fall to (1 - drop) x `expected`."""
    if expected <= 0:
        return s
    return max(0.0, s + observed * math.log(1.0 - drop) + expected * drop)


_elapsed = itemgetter(0)  # a snapshot's time: in time order, each evaluation's later than the last


def own_level(snapshots: list[list[float]], elapsed: float, curve: ProjectionCurve, cfg: MirrorConfig) -> float | None:
    """The campaign's conversions relative to the projection's p50 over the reference window
    [elapsed - lag - span, elapsed - lag] (None until it holds enough conversions)."""
    end = elapsed - cfg.reference_lag
    first = bisect_left(snapshots, max(end - cfg.reference_span, cfg.warmup / 2), key=_elapsed)
    last = bisect_right(snapshots, end, key=_elapsed) - 1
    if last - first < 1:
        return None
    (t0, _, _, c0), (t1, _, _, c1) = snapshots[first], snapshots[last]
    real = c1 - c0
    plan = curve.at("conversions", t1 / 3600.0)[1] - curve.at("conversions", t0 / 3600.0)[1]
    if real < cfg.min_reference_conversions or plan <= 0:
        return None
    # shrink towards the plan by what the band already says: a level read from a few dozen
    # conversions is noisy, and a lucky reference makes an ordinary day look like a drop
    prior = curve.prior_conversions
    return (real + prior) / (plan + prior)


def evaluate(state: MirrorState, elapsed: float, curve: ProjectionCurve, cfg: MirrorConfig) -> Verdict:
    hours = elapsed / 3600.0
    _, rev50, _ = curve.at("revenue", hours)
    _, conv50, _ = curve.at("conversions", hours)
    _, spend50, spend90 = curve.at("spend", hours)
    state.snapshots.append([elapsed, state.spend, state.revenue, state.conversions])
    keep = max(cfg.window, cfg.reference_lag + cfg.reference_span)
    while len(state.snapshots) > 1 and state.snapshots[1][0] <= elapsed - keep:
        state.snapshots.pop(0)
    # the window: the oldest snapshot inside it
    snaps = state.snapshots
    w_elapsed, w_spend, w_rev, w_conv = snaps[bisect_left(snaps, elapsed - cfg.window, key=_elapsed)]
    w_hours = w_elapsed / 3600.0
    win = {m: curve.at(m, hours)[1] - curve.at(m, w_hours)[1] for m in METRICS}
    have_window = elapsed - w_elapsed >= 0.5 * cfg.window
    shortfalls = [_shortfall(state.revenue, rev50), _shortfall(state.conversions, conv50)]
    overspend = [-_shortfall(state.spend, spend50)]
    level = own_level(state.snapshots, elapsed, curve, cfg)
    if have_window:
        shortfalls += [
            _shortfall(state.revenue - w_rev, win["revenue"]),
            _shortfall(state.conversions - w_conv, win["conversions"]),
        ]
        overspend.append(-_shortfall(state.spend - w_spend, win["spend"]))
        if level is not None:  # the window against the campaign's own established level, too
            shortfalls.append(_shortfall(state.conversions - w_conv, win["conversions"] * level))
    short, over = max(shortfalls), max(overspend)
    state.deviation = max(short, over)

    # the sequential tests: this interval's conversions against the band's lower edge, and against
    # the campaign's own level (its conversions / the projection's, over the lagged reference window)
    then_h = state.eval_elapsed / 3600.0
    x = state.conversions - state.eval_conversions
    expected50 = max(conv50 - curve.at("conversions", then_h)[1], 0.0)
    mu_band = max(curve.at("conversions", hours)[0] - curve.at("conversions", then_h)[0], 0.0)
    warm = elapsed >= cfg.warmup and conv50 >= cfg.min_projected_conversions
    if warm:
        state.cusum = cusum_step(state.cusum, x, mu_band, cfg.cusum_drop)
        if level is not None:
            state.cusum_self = cusum_step(state.cusum_self, x, expected50 * level, cfg.cusum_drop)
    state.eval_elapsed, state.eval_conversions = elapsed, state.conversions

    figures = (hours, short, over, state.cusum, state.cusum_self, level)
    figures += (state.revenue, rev50, state.conversions, conv50, state.spend, spend90)
    if not warm:
        state.status = "WARMING_UP"
        return Verdict(None, elapsed, state.status, figures)
    statistical_short = max(state.cusum, state.cusum_self) > cfg.cusum_threshold
    statistical_over = state.spend > spend90 * (1.0 + cfg.threshold / 2)
    practical_short, practical_over = short > cfg.threshold, over > cfg.threshold
    breach = (practical_short and statistical_short) or (practical_over and statistical_over)
    state.breaches = state.breaches + 1 if breach else 0
    if state.breaches >= cfg.persistence:
        state.status, state.paused_at = "PAUSED", elapsed
        state.pause_reason = "overspend" if practical_over and statistical_over else "shortfall"
        return Verdict("PAUSE", elapsed, state.status, figures)
    grey = breach or practical_short or practical_over or statistical_short or state.deviation > cfg.grey_threshold
    entering_grey = grey and state.status != "GREY"
    state.status = "GREY" if grey else "OK"
    return Verdict("GREY" if entering_grey else None, elapsed, state.status, figures)
