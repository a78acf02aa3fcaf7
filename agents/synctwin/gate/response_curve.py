"""The response curve: what a dollar of daily spend buys, learned from the client's own history.

Model (one row per history day with spend > 0), e ~ N(0, sigma^2):

    log(conversions + 0.5) = a + b * (log spend - mean log spend) + dow[weekday] + g * trend + e

by conjugate Bayesian linear regression (Normal-Inverse-Gamma): exact and closed form, so the gate
refits it at every rolling calibration origin without Monte Carlo. Priors: elasticity b ~ N(0.6,
0.25^2) (accounts buy their cheapest conversions first: b < 1), drawn within [B_MIN, 1]; weekday
effects ~ N(0, 0.10^2); the window's trend ~ N(0, 0.15^2), damped into the future (DAMP_DAYS) so
30 days ahead do not extrapolate a spurious slope. The +0.5 keeps zero-conversion days (the usual
continuity correction); zero-spend days say nothing about the curve and are left out (counted).

Order value apart: total revenue / total conversions, whose standard error (from the residuals
r_t - A c_t) stays honest under heavy tails, and a day-to-day log-sd from the history. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agents.syncvalue.baseline import log_sd
from synctwin.kernel.errors import InvalidInput

B_PRIOR_MEAN = 0.6
B_PRIOR_SD = 0.25
B_MIN = 0.05  # a drawn elasticity below this (or above 1) is clipped: the curve stays concave and increasing
DOW_PRIOR_SD = 0.10
TREND_PRIOR_SD = 0.15  # log change over the whole fitted window
INTERCEPT_PRIOR_SD = 10.0
DAMP_DAYS = 14.0  # the fitted trend fades into the future on this time scale
SIGMA2_PRIOR_SHAPE = 2.0
SIGMA2_PRIOR_SCALE = 0.05  # prior mean of sigma^2 = scale / (shape - 1)
FLAT_LOG_SD = 0.05  # spend log-sd below this: no spend variation to learn b from
WEAK_SHARE = 0.8  # posterior sd of b above this share of the prior sd: the history taught little
MIN_FIT_DAYS = 7
RHO_MAX = 0.9  # the residuals' lag-1 autocorrelation is kept in [0, RHO_MAX]
EXTRAPOLATION_SD_PER_LOG = 0.15  # added log-sd of conversions per unit of log distance outside the range
SHOCK_VAR_MIN = 1e-4  # the extra-Poisson (day shock) variance is kept at least this (log scale)
P = 10  # parameters: intercept, b, 7 weekday effects, trend
_B, _DOW, _TREND = 1, slice(2, 9), 9


@dataclass(frozen=True, slots=True)
class CurveFit:
    """The posterior of the curve (beta | sigma^2 ~ N(mean, sigma^2 V), sigma^2 ~ IG(shape, scale))
    and the order value, with the facts the gate reports."""

    mean: np.ndarray  # (P,)
    chol: np.ndarray  # (P, P) lower Cholesky factor of V
    shape: float
    scale: float
    log_spend_mean: float
    spend_range: tuple[float, float]  # lowest and highest daily spend the fit saw
    days: int  # days in the fit
    zero_spend_days: int  # days left out of the fit
    window_days: float  # length of the fitted window (days): the trend's unit
    last_t: float  # the last fitted day, in trend units (centred window: 0.5 or less)
    last_date: np.datetime64
    aov: float
    aov_log_se: float  # standard error of log(aov): the level's uncertainty
    aov_daily_sd: float  # day-to-day log-sd of the order value
    flat: bool  # no spend variation: b is the prior's
    weak: bool  # the history narrowed b's prior only a little
    notes: tuple[str, ...] = field(default_factory=tuple)
    rho: float = 0.0  # lag-1 autocorrelation of the daily residuals (a good or bad week persists)
    count_var: float = 0.0  # the part of the residual variance that is the counts' own (Poisson) noise
    shock_rho: float = 0.0  # lag-1 autocorrelation of the day shock alone (the Poisson part is independent)

    @property
    def b_mean(self) -> float:
        return float(self.mean[_B])

    @property
    def b_sd(self) -> float:
        """Marginal posterior sd of b (Student-t with 2*shape dof)."""
        v = float(self.chol[_B] @ self.chol[_B])
        return math.sqrt(v * self.scale / max(self.shape - 1.0, 0.5))

    @property
    def sigma(self) -> float:
        """Posterior mean of the daily residual sd (stationary: the innovations' over sqrt(1 - rho^2))."""
        return math.sqrt(self.scale / max(self.shape - 1.0, 0.5) / (1.0 - self.rho * self.rho))

    @property
    def shock_var(self) -> float:
        """Posterior mean of the day shock's variance: the residual variance less the counts' own."""
        return float(shock_variance(np.float64(self.sigma**2), self.count_var))


def shock_variance(residual_var: np.ndarray, count_var: float) -> np.ndarray:
    """The extra-Poisson part of the daily log residual variance (at least SHOCK_VAR_MIN)."""
    return np.maximum(np.asarray(residual_var, dtype=np.float64) - count_var, SHOCK_VAR_MIN)


def _poisson_log_var_table() -> tuple[np.ndarray, np.ndarray]:
    """Var[log(C + 0.5)] for C ~ Poisson(mu), exact (summed over the pmf) on a log grid of mu up to 200."""
    grid = np.exp(np.linspace(math.log(1e-3), math.log(200.0), 161))
    k = np.arange(0, 420, dtype=np.float64)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
    logp = k[None, :] * np.log(grid)[:, None] - grid[:, None] - log_fact[None, :]
    p = np.exp(logp)
    p /= p.sum(axis=1, keepdims=True)
    y = np.log(k + 0.5)
    m = p @ y
    return grid, p @ (y * y) - m * m


_PV_GRID, _PV = _poisson_log_var_table()


def poisson_log_var(mu: np.ndarray) -> np.ndarray:
    """Var[log(C + 0.5)] for C ~ Poisson(mu): the part of a day's log residual that is count noise.
    Above mu = 200 the delta method's mu / (mu + 0.5)^2 is exact to well under 1%."""
    mu = np.asarray(mu, dtype=np.float64)
    inside = np.interp(np.log(np.clip(mu, _PV_GRID[0], _PV_GRID[-1])), np.log(_PV_GRID), _PV)
    return np.where(mu > _PV_GRID[-1], mu / (mu + 0.5) ** 2, inside)


def _design(log_spend_c: np.ndarray, weekday: np.ndarray, trend: np.ndarray) -> np.ndarray:
    n = log_spend_c.shape[0]
    x = np.zeros((n, P))
    x[:, 0] = 1.0
    x[:, _B] = log_spend_c
    x[np.arange(n), 2 + weekday] = 1.0
    x[:, _TREND] = trend
    return x


def weekdays(dates: np.ndarray) -> np.ndarray:
    """Monday = 0 .. Sunday = 6 for datetime64[D] dates (1970-01-01 was a Thursday)."""
    return ((dates.astype("datetime64[D]").astype(np.int64) + 3) % 7).astype(np.intp)


def _nig_posterior(
    x: np.ndarray, y: np.ndarray, m0: np.ndarray, prior_sd: np.ndarray, s_ref2: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Conjugate update. The prior covariance of beta is sigma^2 V0 with V0 = diag(prior_sd^2) / s_ref2,
    so at sigma^2 = s_ref2 the prior sds are the stated ones (an empirical-Bayes unit)."""
    prec0 = s_ref2 / prior_sd**2
    prec = x.T @ x + np.diag(prec0)
    chol_prec = np.linalg.cholesky(prec)
    rhs = prec0 * m0 + x.T @ y
    mean = np.linalg.solve(chol_prec.T, np.linalg.solve(chol_prec, rhs))
    shape = SIGMA2_PRIOR_SHAPE + 0.5 * y.shape[0]
    resid = y - x @ mean
    scale = SIGMA2_PRIOR_SCALE + 0.5 * (float(resid @ resid) + float(((mean - m0) ** 2) @ prec0))
    # V = prec^-1 = (L L')^-1: its Cholesky factor is inv(L)' up to ordering; keep a lower factor of V
    v = np.linalg.inv(prec)
    v = 0.5 * (v + v.T)
    return mean, np.linalg.cholesky(v), shape, max(scale, 1e-12)


def fit_response_curve(dates: np.ndarray, spend: np.ndarray, conversions: np.ndarray, revenue: np.ndarray) -> CurveFit:
    """Fit the curve and the order value to a window of daily history (arrays of one length);
    InvalidInput (field `spend`) when fewer than MIN_FIT_DAYS days have spend > 0."""
    spend, conversions, revenue = (np.asarray(a, dtype=np.float64) for a in (spend, conversions, revenue))
    dates = np.asarray(dates).astype("datetime64[D]")
    ok = (spend > 0) & np.isfinite(spend) & np.isfinite(conversions) & np.isfinite(revenue)
    n = int(ok.sum())
    if n < MIN_FIT_DAYS:
        raise InvalidInput(
            f"the history has {n} day(s) with ad spend > 0; at least {MIN_FIT_DAYS} are needed "
            "to fit the response curve",
            field="spend",
        )
    notes: list[str] = []
    zero_days = int((spend <= 0).sum())
    if zero_days:
        notes.append(f"{zero_days} day(s) without ad spend were left out of the response curve's fit")
    s, c, d = spend[ok], np.maximum(conversions[ok], 0.0), dates[ok]
    log_s = np.log(s)
    log_s_mean = float(log_s.mean())
    flat = float(log_s.std()) < FLAT_LOG_SD
    day_num = (d - d[0]).astype(np.float64)
    window = max(float(day_num[-1]) + 1.0, 1.0)
    t = (day_num - 0.5 * (window - 1.0)) / window  # centred, in units of the window
    x = _design(np.zeros(n) if flat else log_s - log_s_mean, weekdays(d), t)
    y = np.log(c + 0.5)
    m0 = np.zeros(P)
    m0[0], m0[_B] = float(y.mean()), B_PRIOR_MEAN
    prior_sd = np.full(P, DOW_PRIOR_SD)
    prior_sd[0], prior_sd[_B], prior_sd[_TREND] = INTERCEPT_PRIOR_SD, B_PRIOR_SD, TREND_PRIOR_SD
    # two passes: the prior's unit is the posterior mean of sigma^2 of a first pass
    s_ref2 = SIGMA2_PRIOR_SCALE / (SIGMA2_PRIOR_SHAPE - 1.0)
    for _ in range(2):
        mean, chol, shape, scale = _nig_posterior(x, y, m0, prior_sd, s_ref2)
        s_ref2 = min(max(scale / (shape - 1.0), 1e-4), 4.0)
    rho = _lag1(y - x @ mean, day_num)
    if rho > 0:
        # persistent residuals and persistent budget steps make independent-day errors overstate what the
        # history says about b: refit on quasi-differenced rows (GLS for AR(1) errors, Prais-Winsten), so
        # the posterior is that of the innovations; sigma^2 is then the innovation variance
        xq, yq = _quasi_difference(x, y, day_num, rho)
        s_ref2 *= 1.0 - rho * rho
        mean, chol, shape, scale = _nig_posterior(xq, yq, m0, prior_sd, s_ref2)
    fit_b_sd = math.sqrt(float(chol[_B] @ chol[_B]) * scale / (shape - 1.0))
    # the residuals of log(c + 0.5) are the day shock plus the counts' own Poisson noise. log(c + 0.5) is
    # nearly unbiased for the log rate, so only the shock's variance enters the mean (exp(shock_var / 2));
    # the count noise is simulated at the campaign's own level (larger at a cut, smaller at a scale-up),
    # and all the lag-1 covariance is the shock's
    count_var = float(np.mean(poisson_log_var(np.exp(x @ mean))))
    resid_var = scale / (shape - 1.0) / (1.0 - rho * rho)
    shock_var = float(shock_variance(np.float64(resid_var), count_var))
    shock_rho = float(min(rho * resid_var / shock_var, RHO_MAX))
    weak = (not flat) and fit_b_sd > WEAK_SHARE * B_PRIOR_SD
    if flat:
        notes.append(
            f"the history's daily spend barely varies (log-sd {float(log_s.std()):.3f}): the curve's "
            f"elasticity is assumed (b ~ {B_PRIOR_MEAN} +/- {B_PRIOR_SD}), not learned"
        )
    elif weak:
        notes.append(
            f"the history's spend varies too little to learn the curve well: elasticity b = "
            f"{float(mean[_B]):.2f} +/- {fit_b_sd:.2f}, mostly the prior's"
        )
    # the order value: ratio estimator and its standard error
    cc, rr = np.maximum(conversions, 0.0), np.maximum(revenue, 0.0)
    total_c, total_r = float(cc.sum()), float(rr.sum())
    if total_c > 0 and total_r > 0:
        aov = total_r / total_c
        m = cc.shape[0]
        resid = rr - aov * cc
        se = math.sqrt(float(resid @ resid) * m / max(m - 1, 1)) / total_c
        aov_log_se = min(se / aov, 1.0)
    else:  # no orders to learn a value from: the strategy must give 'aov' (the gate says so)
        aov, aov_log_se = math.nan, 0.0
    aov_daily_sd = log_sd(rr, cc)
    return CurveFit(
        mean=mean,
        chol=chol,
        shape=shape,
        scale=scale,
        log_spend_mean=log_s_mean,
        spend_range=(float(s.min()), float(s.max())),
        days=n,
        zero_spend_days=zero_days,
        window_days=window,
        last_t=float(t[-1]),
        last_date=d[-1],
        aov=aov,
        aov_log_se=aov_log_se,
        aov_daily_sd=min(aov_daily_sd, 2.0),
        flat=flat,
        weak=weak,
        notes=tuple(notes),
        rho=rho,
        count_var=count_var,
        shock_rho=shock_rho,
    )


def _quasi_difference(x: np.ndarray, y: np.ndarray, day_num: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows minus rho times the previous day's; a row without a previous day (the first, or after a
    gap) is scaled by sqrt(1 - rho^2) instead (Prais-Winsten)."""
    xq, yq = x * math.sqrt(1.0 - rho * rho), y * math.sqrt(1.0 - rho * rho)
    follows = np.flatnonzero(np.diff(day_num) == 1) + 1
    xq[follows] = x[follows] - rho * x[follows - 1]
    yq[follows] = y[follows] - rho * y[follows - 1]
    return xq, yq


def _lag1(resid: np.ndarray, day_num: np.ndarray) -> float:
    """Lag-1 autocorrelation of the residuals over consecutive days, in [0, RHO_MAX]: persistent shocks
    make a 30-day total vary more than independent days, so the simulation draws an AR(1)."""
    pairs = np.flatnonzero(np.diff(day_num) == 1)
    if pairs.shape[0] < 5:
        return 0.0
    r = resid - resid.mean()
    den = float(r @ r)
    if den <= 0:
        return 0.0
    num = float(r[pairs] @ r[pairs + 1]) * r.shape[0] / pairs.shape[0]
    return float(np.clip(num / den, 0.0, RHO_MAX))


def future_trend(fit: CurveFit, days: int, offset: int = 0) -> np.ndarray:
    """Trend covariate of the `days` days after day `offset` past the window: the last fitted value
    plus a damped continuation (at most DAMP_DAYS / window of the window's slope)."""
    h = np.arange(offset + 1, offset + days + 1, dtype=np.float64)
    return fit.last_t + DAMP_DAYS * (1.0 - np.exp(-h / DAMP_DAYS)) / fit.window_days


def future_weekdays(fit: CurveFit, days: int, start: np.datetime64 | None = None) -> np.ndarray:
    first = (fit.last_date + np.timedelta64(1, "D")) if start is None else start.astype("datetime64[D]")
    return weekdays(first + np.arange(days).astype("timedelta64[D]"))


@dataclass(frozen=True, slots=True)
class Extrapolation:
    """How far a budget lies outside the spend the fit saw, and the spread added for it."""

    budget: float
    spend_range: tuple[float, float]
    distance: float  # |log| distance to the nearest end of the range (0 inside)
    widened_by: float  # log-sd added to the conversions

    def to_dict(self) -> dict[str, object] | None:
        if self.distance <= 0:
            return None
        lo, hi = self.spend_range
        side = "above" if self.budget > hi else "below"
        ratio = self.budget / hi if self.budget > hi else lo / self.budget
        return {
            "budget": self.budget,
            "history_spend_range": [round(lo, 2), round(hi, 2)],
            "distance": round(self.distance, 4),
            "widened_by": round(self.widened_by, 4),
            "note": (
                f"the daily budget {self.budget:,.2f} is {ratio:.2f}x {side} the daily spend the history "
                f"covers ({lo:,.2f}-{hi:,.2f}): the curve is extrapolated there, so its uncertainty is "
                f"widened (log-sd +{self.widened_by:.2f})"
            ),
        }


def extrapolation(fit: CurveFit, budget: float) -> Extrapolation:
    """Outside [lo, hi] the curve's shape is unknown: the log-sd of conversions grows linearly with the
    log distance (EXTRAPOLATION_SD_PER_LOG per unit), on top of the posterior's own growth."""
    lo, hi = fit.spend_range
    if budget <= 0 or not math.isfinite(budget):
        raise InvalidInput(f"daily_budget {budget} must be a positive number", field="daily_budget")
    dist = max(0.0, math.log(budget / hi), math.log(lo / budget))
    return Extrapolation(budget, (lo, hi), dist, EXTRAPOLATION_SD_PER_LOG * dist)


@dataclass(frozen=True, slots=True)
class CurveDraws:
    """Per-path parameter draws (arrays of length n)."""

    a: np.ndarray
    b: np.ndarray
    dow: np.ndarray  # (n, 7)
    trend: np.ndarray
    sigma: np.ndarray  # the day shock's sd (stationary; the counts' own noise is apart)


def draw_parameters(fit: CurveFit, n: int, rng: np.random.Generator, spread: float = 1.0) -> CurveDraws:
    """n draws of the posterior (sigma^2 from its inverse gamma, then beta | sigma^2); `spread`
    scales the draws' deviations from the posterior mean and sigma (the calibration's scale)."""
    sigma2 = fit.scale / rng.gamma(fit.shape, 1.0, n)
    sd = np.sqrt(sigma2)
    z = rng.standard_normal((n, P))
    beta = fit.mean + spread * (z @ fit.chol.T) * sd[:, None]
    b = np.clip(beta[:, _B], B_MIN, 1.0)
    stationary2 = sigma2 / (1.0 - fit.rho * fit.rho)  # the daily residual's variance (AR(1) innovations)
    shock = spread * np.sqrt(shock_variance(stationary2, fit.count_var))
    return CurveDraws(a=beta[:, 0], b=b, dow=beta[:, _DOW], trend=beta[:, _TREND], sigma=shock)


def predict_log_total(
    fit: CurveFit, log_spend: np.ndarray, weekday: np.ndarray, trend: np.ndarray, structural_sigma: float
) -> tuple[float, float]:
    """Median and sd of log(total revenue) over the given future days at the given spend, in closed
    form (delta method around the posterior mean): what the rolling calibration scores against."""
    x = _design(log_spend - fit.log_spend_mean, weekday, trend)
    innov2 = fit.scale / max(fit.shape - 1.0, 0.5)
    shock2 = fit.shock_var  # the day shock's variance; the counts' Poisson noise is apart
    lin = x @ fit.mean
    daily = np.maximum(np.exp(lin + 0.5 * shock2), 1e-9)
    total = float(daily.sum())
    w = daily / total
    xbar = w @ x  # d log total / d beta
    param_var = float(np.sum((fit.chol.T @ xbar) ** 2)) * innov2
    # daily noise as a log-total variance: the shock an AR(1) (fit.shock_rho), the counts Poisson
    # (variance = mean: 1 / total relative), the order value's day-to-day noise independent
    h = w.shape[0]
    lags = np.abs(np.subtract.outer(np.arange(h), np.arange(h)))
    noise_var = (
        float(w @ (fit.shock_rho**lags) @ w) * (math.exp(shock2) - 1.0)
        + 1.0 / total
        + float(np.sum(w**2)) * fit.aov_daily_sd**2
    )
    var = param_var + noise_var + fit.aov_log_se**2 + structural_sigma**2
    return math.log(total * fit.aov), math.sqrt(var)


@dataclass(frozen=True, slots=True)
class Calibration:
    """The rolling-origin calibration of the predictive spread."""

    method: str
    horizon_days: int
    n: int
    scale: float
    z: tuple[float, ...]
    calibration_set: str
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "calibration_set": self.calibration_set,
            "n": self.n,
            "horizon_days": self.horizon_days,
            "scale": round(self.scale, 4),
            "note": self.note,
        }


CAL_COVERAGE = 0.80  # the band the scale targets: p10-p90
CAL_MIN_N = 8
CAL_BOUNDS = (0.6, 3.0)
CAL_MIN_FIT_DAYS = 28
CAL_SHRINK_N = 20.0  # the log scale is shrunk toward 0 with weight n / (n + CAL_SHRINK_N)
_Z80 = 1.2815515655446004  # standard normal 0.9 quantile: |z| <= this 80% of the time


def conformal_scale(z: np.ndarray) -> float:
    """Split-conformal: the ceil((n+1) coverage)-th smallest |z|, over the Normal's value, bounded.
    Over-dispersed residuals give a scale > 1 (widen), tight ones < 1 (narrow). The windows of one
    account overlap and are few, so that quantile is itself noisy: its log is shrunk toward 0 with
    weight n / (n + CAL_SHRINK_N) (a scale learned from 13 windows moves the spread about 40% of the way)."""
    a = np.sort(np.abs(np.asarray(z, dtype=np.float64)))
    a = a[np.isfinite(a)]
    n = a.shape[0]
    if n == 0:
        return 1.0
    k = min(n, math.ceil((n + 1) * CAL_COVERAGE)) - 1
    raw = max(float(a[k]) / _Z80, 1e-6)
    return float(np.clip(math.exp(n / (n + CAL_SHRINK_N) * math.log(raw)), *CAL_BOUNDS))


def rolling_calibration(
    dates: np.ndarray,
    spend: np.ndarray,
    conversions: np.ndarray,
    revenue: np.ndarray,
    *,
    horizon: int,
    structural_sigma: float,
    extra_z: np.ndarray | None = None,
    extra_set: str | None = None,
) -> Calibration:
    """Score the curve on its own history: for origins in the window, fit on the past only, project
    the next `horizon` days' revenue at the realized spend, z = log(realized / projected median) / sd.
    Origins step by horizon // 3 (overlapping windows) from CAL_MIN_FIT_DAYS days on; `extra_z`
    (residuals of realized outcomes, e.g. from the audit log) join the set."""
    dates = np.asarray(dates).astype("datetime64[D]")
    n = dates.shape[0]
    zs: list[float] = []
    for origin in range(CAL_MIN_FIT_DAYS, n - horizon + 1, max(2, horizon // 3)):
        past, fut = slice(0, origin), slice(origin, origin + horizon)
        realized, fs = float(np.sum(revenue[fut])), spend[fut]
        if not (realized > 0 and np.all(fs > 0)):
            continue
        try:
            fit = fit_response_curve(dates[past], spend[past], conversions[past], revenue[past])
        except InvalidInput:
            continue
        trend = future_trend(fit, horizon, offset=max(int((dates[origin] - fit.last_date).astype(np.int64)) - 1, 0))
        med, sd = predict_log_total(fit, np.log(fs), weekdays(dates[fut]), trend, structural_sigma)
        if math.isfinite(z := (math.log(realized) - med) / sd):
            zs.append(z)
    own = len(zs)
    if extra_z is not None:
        zs.extend(float(v) for v in np.asarray(extra_z, dtype=np.float64) if math.isfinite(v))
    what = f"{own} rolling {horizon}-day windows of the history (fit on the past only)"
    if extra_set and len(zs) > own:
        what += f" + {len(zs) - own} {extra_set}"
    if len(zs) < CAL_MIN_N:
        note = f"only {len(zs)} calibration window(s) (at least {CAL_MIN_N} needed): the model's own uncertainty"
        note += " is used unscaled"
        return Calibration("none", horizon, len(zs), 1.0, tuple(zs), what, note=note)
    method = "split-conformal |z| of log(realized/projected revenue)"
    return Calibration(method, horizon, len(zs), conformal_scale(np.asarray(zs)), tuple(zs), what)
