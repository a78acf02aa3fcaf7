"""Shared fixtures: a private redis-server for the session and a clean client per test.

The server is our own process on a free loopback port (never 6379), without persistence, so
tests never touch a developer's Redis and leave nothing behind.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster


def _free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (never Redis's default 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 6379:
            return int(port)


class RedisServer:
    """A redis-server child process; `restart()` simulates an outage.

    Without persistence (the default) a restart empties the database. With `appendonly=True` the
    server writes an AOF in its own directory and fsyncs every write before answering
    (`appendfsync always`), so a restart, even after `kill()` (SIGKILL), keeps every write a
    client saw acknowledged.
    """

    def __init__(self, binary: str, workdir: Path, *, appendonly: bool = False) -> None:
        self.binary = binary
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def logfile(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout: float = 10.0) -> None:
        """Start on `self.port` and wait until PING answers."""
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]),
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.logfile),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate the server and wait for it, so the port is free again."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no final save) and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, *, crash: bool = False, down_s: float = 0.0) -> None:
        """Stop (or `crash`: SIGKILL), stay down `down_s` seconds, start again on the same port.
        An empty database afterwards unless the server keeps an AOF."""
        if crash:
            self.kill()
        else:
            self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found on PATH; install Redis to run the @redis tests")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aof_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server of the test's own, with an AOF (appendfsync always) in tmp_path:
    for tests that restart or crash Redis and expect to find their data afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found on PATH; install Redis to run the @redis tests")
    server = RedisServer(binary, tmp_path, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


# --- a local Redis Cluster: three masters, no replicas, for the whole session ----------------------


def _free_cluster_port() -> int:
    """A free port P whose cluster bus port P + 10000 is free too."""
    while True:
        port = _free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class RedisClusterNodes:
    """Three `redis-server --cluster-enabled yes` children joined by `redis-cli --cluster create`:
    16,384 slots over three masters, so keys of different hash tags live on different nodes."""

    def __init__(self, binary: str, cli: str, workdir: Path, masters: int = 3) -> None:
        self.binary, self.cli, self.workdir = binary, cli, workdir
        self.ports: list[int] = []
        while len(self.ports) < masters:  # free ports are not reserved: two draws can give one port
            port = _free_cluster_port()
            if port not in self.ports:
                self.ports.append(port)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """Any node's URL (the first): the cluster client learns the rest from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 30.0) -> None:
        for port in self.ports:
            node_dir = self.workdir / str(port)
            node_dir.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        self.binary,
                        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                        *("--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf")),
                        *("--cluster-node-timeout", "5000", "--dir", str(node_dir)),
                        *("--logfile", str(node_dir / "redis.log"), "--daemonize", "no"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    cwd=node_dir,
                )
            )
        deadline = time.monotonic() + timeout
        clients = [redis.Redis(host="127.0.0.1", port=p, socket_timeout=1, decode_responses=True) for p in self.ports]
        try:
            for client in clients:
                self._wait(lambda c=client: c.ping(), deadline, "PING")
            subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            for client in clients:
                self._wait(
                    lambda c=client: (
                        c.cluster("INFO").get("cluster_state") == "ok"
                        and int(c.cluster("INFO").get("cluster_known_nodes", 0)) == len(self.ports)
                    ),
                    deadline,
                    "cluster_state:ok",
                )
        except BaseException:
            self.stop()
            raise
        finally:
            for client in clients:
                client.close()

    def _wait(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a cluster node exited with {proc.returncode}")
            try:
                if ready():
                    return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster on {self.ports}: no {what} in time")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs = []


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.skip("redis-server and redis-cli not found on PATH; install Redis to run the cluster tests")
    cluster = RedisClusterNodes(binary, cli, tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterNodes) -> Iterator[RedisCluster]:
    """A cluster client on an emptied cluster (FLUSHALL on every master)."""
    client = RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        client.close()


# --- executors: one 2-process pool and one local 2-CPU Ray cluster for the whole session ----------


@pytest.fixture(scope="session")
def pool() -> Iterator[object]:
    from synctwin.infra.executors import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as ex:
        yield ex


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    try:
        import ray
    except ImportError:  # the optional extra: pip install -e ".[ray]"
        pytest.skip('ray is not installed (optional extra: pip install -e ".[ray]")')
    from synctwin.infra.executors import RayExecutor

    # address="local": a cluster of our own, even when `ray start` left one running on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayExecutor()  # joins the session's cluster and leaves it running
    finally:
        ray.shutdown()
