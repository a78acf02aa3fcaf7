"""Where independent tasks run: in this process, on threads, on a local process pool, or on Ray.

`Executor.imap(fn, items)` (lazy, in input order) sits under the gate's chunked Monte Carlo, the
backtest and `synctwin sweep`. Every task carries its own seed and results come in input order, so
the output is the same bit for bit on any executor. `fn` and its items must be picklable (the
pool spawns, as Ray does); Ray is an optional extra, imported only when asked for."""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from synctwin.kernel.errors import InvalidInput

T = TypeVar("T")
R = TypeVar("R")

RAY_INSTALL_HINT = 'Ray is not installed: install synctwin[ray] (pip install -e ".[ray]")'


class Executor:
    """Runs `fn` over items; subclasses decide where. Use as a context manager (it owns workers)."""

    name = "in-process"
    workers = 1

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Results one by one, in input order (memory stays bounded: few tasks are in flight)."""
        raise NotImplementedError

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(self.imap(fn, items))

    def close(self) -> None:
        """Release workers (a no-op for the in-process executor)."""

    def warm_up(self, *modules: str) -> int:
        """Start every worker now and import `modules` in each (spawn and imports are the start-up
        a timed run should not pay). A scheduler may hand several warm-up tasks to one worker, so
        rounds are sent until every worker has answered (or five rounds). Returns the workers seen."""
        seen: set[int] = set()
        for _ in range(5):
            seen.update(self.map(_warm, [modules] * (2 * self.workers)))
            if len(seen) >= self.workers:
                break
        return len(seen)

    def describe(self) -> str:
        return self.name if self.workers == 1 else f"{self.name} ({self.workers} workers)"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """The default: a plain loop, no pickling, no start-up cost."""

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)


class ThreadExecutor(Executor):
    """Threads of this process, for numpy-bound tasks that release the GIL (the gate's chunk
    draws: each chunk has its own generator, and numpy draws and ufuncs run without the GIL).
    No pickling, no start-up; one task, or one worker, runs inline. Results in input order, so
    the output is the same as in-process, bit for bit."""

    name = "threads"

    def __init__(self, workers: int, *, in_flight: int | None = None) -> None:
        if workers < 1:
            raise InvalidInput(f"threads must be at least 1 (got {workers})", field="workers")
        self.workers = workers
        self.in_flight = in_flight or 2 * workers
        self._pool: Any = None
        self._lock = threading.Lock()

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        it = iter(items)
        first = next(it, _END)
        if first is _END:
            return
        second = next(it, _END)
        if second is _END or self.workers == 1:  # nothing to overlap: no thread hand-off
            yield fn(first)  # type: ignore[arg-type]
            if second is not _END:
                yield fn(second)  # type: ignore[arg-type]
                yield from (fn(x) for x in it)
            return
        pool = self._get_pool()
        pending: deque[Any] = deque([pool.submit(fn, first), pool.submit(fn, second)])
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= self.in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def warm_up(self, *modules: str) -> int:
        """Threads share this process's imports: import here, and every worker has them."""
        import importlib

        for name in modules:
            importlib.import_module(name)
        return self.workers

    def _get_pool(self) -> Any:
        with self._lock:  # one pool, even when several gates (the service's threads) start at once
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor as _Threads

                self._pool = _Threads(max_workers=self.workers, thread_name_prefix="synctwin-chunks")
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


_END = object()


class ProcessPoolExecutor(Executor):
    """A local pool of `workers` processes (spawned lazily on the first task, reused after)."""

    name = "process pool"

    def __init__(self, workers: int, *, in_flight: int | None = None) -> None:
        if workers < 1:
            raise InvalidInput(f"--workers must be at least 1 (got {workers})", field="workers")
        self.workers = workers
        self.in_flight = in_flight or 4 * workers
        self._pool: Any = None

    def _get_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor as _Pool

            self._pool = _Pool(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        pool = self._get_pool()
        pending: deque[Any] = deque()
        for batch in batched(items, self.workers):
            pending.append(pool.submit(_run_batch, (fn, batch)))
            if len(pending) >= self.in_flight:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


MAX_BATCH = 8  # items per task: amortises a task's scheduling and pickling over several small items


def batched(items: Iterable[T], workers: int) -> Iterator[list[T]]:
    """Consecutive groups of items, one task each: about 8 tasks per worker, at most MAX_BATCH
    items a task, so small items (0.1 s runs) do not pay a task's overhead each, and a few big
    ones (Monte Carlo chunks) still spread over every worker. Grouping never reorders."""
    seq = list(items)
    size = max(1, min(MAX_BATCH, len(seq) // (8 * workers)))
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _run_batch(task: tuple[Callable[[T], R], list[T]]) -> list[R]:
    fn, batch = task
    return [fn(x) for x in batch]


def _warm(modules: tuple[str, ...]) -> int:
    """A warm-up task: import, linger a moment (so the next task goes to another worker), say who ran it."""
    import importlib
    import time

    for name in modules:
        importlib.import_module(name)
    time.sleep(0.05)
    return os.getpid()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise InvalidInput(f"{RAY_INSTALL_HINT} ({exc})", field="ray") from None
    return ray


def check_ray_address(address: str) -> None:
    """Fail fast, with exit 2, on an address that cannot be a Ray cluster or does not answer.

    `auto` is left to Ray (it looks for a cluster started on this machine); `HOST:PORT` and
    `ray://HOST:PORT` get a 3-second TCP probe, because ray.init retries an unreachable
    address for a long time before giving up.
    """
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"bad Ray address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT", field="ray")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot reach the Ray cluster at {address}: {exc}", field="ray") from None


class RayExecutor(Executor):
    """Tasks on Ray: joins `address` (`auto`, `HOST:PORT`, `ray://HOST:PORT`), or starts a local
    cluster (`workers` CPUs, default all) when there is none. A cluster already initialised in
    this process (a test session's) is used as it is and left running."""

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None, in_flight: int | None = None) -> None:
        ray = _import_ray()
        self._ray = ray
        self._owned = False
        if address is not None:
            check_ray_address(address)
        if not ray.is_initialized():
            import logging

            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.ERROR,
                "configure_logging": True,
            }
            if address is None:
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
            try:
                # bare --ray starts a cluster of its own ("local"), even when `ray start` left one
                # running here (plain ray.init() would join that one, and refuse num_cpus)
                ray.init(address=address or "local", **kwargs)
            except Exception as exc:  # ConnectionError, RuntimeError, ...: all mean "no cluster there"
                where = address or "a local cluster"
                raise InvalidInput(
                    f"cannot start or join Ray at {where}: {str(exc).splitlines()[0]}" + _auth_hint(address),
                    field="ray",
                ) from None
            self._owned = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.in_flight = in_flight or 4 * self.workers
        self._remote: dict[Callable[..., Any], Any] = {}

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        remote = self._remote.get(_run_batch)
        if remote is None:
            remote = self._remote[_run_batch] = self._ray.remote(_run_batch)
        pending: deque[Any] = deque()
        for batch in batched(items, self.workers):
            pending.append(remote.remote((fn, batch)))
            if len(pending) >= self.in_flight:
                yield from self._ray.get(pending.popleft())
        while pending:
            yield from self._ray.get(pending.popleft())

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False


def _auth_hint(address: str | None) -> str:
    """Why a reachable cluster may still refuse us: Ray >= 2.59 starts local clusters with token
    authentication, and a driver joining by HOST:PORT sends no token unless told to (`auto` finds it)."""
    if address in (None, "auto") or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return (
        "; if the cluster uses token authentication (the default for clusters started by `ray start` "
        "with Ray >= 2.59), set RAY_AUTH_MODE=token and give the token in RAY_AUTH_TOKEN or ~/.ray/auth_token"
    )


def make_executor(ray: str | bool | None = None, workers: int | None = None) -> Executor:
    """The executor the command line asks for: in-process without `ray` and with at most one worker;
    a pool of N processes for `workers` N; a local Ray cluster of `workers` CPUs for bare `--ray`;
    the cluster at `ray` ADDRESS (then `workers` is the cluster's business: an error)."""
    if workers is not None and workers < 1:
        raise InvalidInput(f"--workers must be at least 1 (got {workers})", field="workers")
    if ray is None or ray is False:
        return InProcessExecutor() if not workers or workers == 1 else ProcessPoolExecutor(workers)
    if isinstance(ray, str) and ray.strip():
        if workers is not None:
            raise InvalidInput(
                "--workers sets the size of a local cluster; with a Ray ADDRESS the cluster decides", field="workers"
            )
        return RayExecutor(ray.strip())
    return RayExecutor(None, workers=workers)


def add_executor_arguments(p: Any) -> None:
    """`--ray [ADDRESS]` and `--workers N`, the same on every command that fans out."""
    p.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=None,
        metavar="ADDRESS",
        help="run on Ray (needs synctwin[ray]): a local cluster without ADDRESS; `auto` or "
        "ray://HOST:PORT joins an existing one. Same result as in-process, bit for bit",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="a local pool of N processes (with bare --ray: the local cluster's CPUs)",
    )


def executor_from_args(args: Any) -> Executor:
    return make_executor(getattr(args, "ray", None), getattr(args, "workers", None))
