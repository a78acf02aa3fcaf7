"""Running a job on a cron schedule without overlapping runs (croniter does the calendar)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from croniter import croniter

from synctwin.kernel.errors import InvalidInput


def check_cron(expression: str) -> str:
    if not croniter.is_valid(expression):
        raise InvalidInput(f"{expression!r} is not a cron expression (e.g. '0 0 * * *' for nightly at midnight)")
    return expression


def run_on_schedule(
    expression: str,
    job: Callable[[], object],
    *,
    stop: Callable[[], bool],
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    announce: Callable[[float], None] = lambda _t: None,
) -> int:
    """Run `job` at each fire time of `expression` (UTC) until `stop()`; returns the number of runs.

    The next fire time is computed from the clock after a run ends, so runs never overlap and
    fire times missed while a run was going are skipped rather than queued.
    """
    check_cron(expression)
    runs = 0
    while not stop():
        nxt = croniter(expression, datetime.fromtimestamp(now(), UTC)).get_next(float)
        announce(nxt)
        while not stop() and now() < nxt:
            sleep(min(1.0, max(0.0, nxt - now())))
        if stop():
            break
        job()
        runs += 1
    return runs
