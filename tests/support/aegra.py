"""Aegra Agent Server processes on loopback ports, for the scale-out suite and benchmark.

An `AegraCluster` serves one `langgraph.json` from N Aegra processes that share one
PostgreSQL database and one Redis, as several machines behind a load balancer would:
Redis carries the job queue and the event streams, PostgreSQL the threads, runs and
checkpoints, and any process may run any run. Each process is `uvicorn aegra_api.main:app`
in its own session on its own port, so `kill` (SIGKILL to its process group) takes it
down the way a lost machine goes.

Aegra needs Python >= 3.12, so the servers run from a venv of their own, whichever Python
runs the client: the one at `AGENTLOOP_AEGRA_VENV`, else
`${XDG_CACHE_HOME:-~/.cache}/agentloop-graph/venv-aegra` (see docs/deploy.md). It lives
outside the checkout, where `langgraph dev` would restart for every file an install writes.
Every cluster gets its own Redis key prefix (job queue, event channels, replay buffers) and
deletes its keys when it stops, so clusters sharing one Redis never take each other's runs.

Nothing here imports pytest: the benchmark uses it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
AEGRA_VENV_ENV = "AGENTLOOP_AEGRA_VENV"
REDIS_ENV = "AGENTLOOP_TEST_REDIS"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
TEST_CONFIG = ROOT / "tests" / "support" / "aegra_langgraph.json"
"""The repo's `agent_loop` graph plus the suite's `slow_loop` and `probe` graphs."""
STARTUP_DEADLINE = 90.0
STOP_DEADLINE = 15.0

FAST_RECOVERY = {
    "LEASE_DURATION_SECONDS": "5",
    "HEARTBEAT_INTERVAL_SECONDS": "1",
    "REAPER_INTERVAL_SECONDS": "1",
}
"""Lease settings that hand a killed process's runs to another within about 6 s
(lease 5 s, reaper every 1 s), instead of Aegra's default of up to 45 s (30 s + 15 s)."""

# Variables that would send traces, usage data or licence checks over the network.
NETWORK_ENV = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_TRACING",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
    "PHOENIX_API_KEY",
)
_DELETE_KEYS = (
    "import sys, redis; r = redis.Redis.from_url(sys.argv[1]); "
    "keys = list(r.scan_iter(match=sys.argv[2] + '*', count=1000)); "
    "keys and r.delete(*keys)"
)


class AegraError(RuntimeError):
    """An Aegra process could not be started, or the environment to run one is missing."""


def aegra_venv() -> Path:
    """The venv the servers run from: `AGENTLOOP_AEGRA_VENV`, else the user's cache."""
    if venv := os.environ.get(AEGRA_VENV_ENV):
        return Path(venv)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "agentloop-graph" / "venv-aegra"


def aegra_python() -> Path:
    """The Python with `aegra-api` installed that runs the servers."""
    venv = aegra_venv()
    path = venv / "bin" / "python"
    if not path.exists():
        raise AegraError(
            f"no Python for Aegra at {path}: create it with `python3.12 -m venv {venv} && "
            f"{path} -m pip install -e . --group aegra` (docs/deploy.md), or point "
            f"{AEGRA_VENV_ENV} at a venv with aegra-api installed"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_unreachable(url: str) -> str | None:
    """Why Redis at `url` does not answer a PING, or None when it does."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3
        ) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return f"Redis is not reachable at {url} (set {REDIS_ENV}): {exc}"
    if not reply.startswith(b"+PONG"):
        return f"Redis at {url} answered PING with {reply!r} (set {REDIS_ENV})"
    return None


def database_url(conninfo: str) -> str:
    """A `postgresql://` URL, as Aegra's DATABASE_URL wants, for a libpq connection string."""
    from psycopg.conninfo import conninfo_to_dict

    if conninfo.startswith(("postgresql://", "postgres://")):
        return conninfo
    parts = conninfo_to_dict(conninfo)
    user = quote(str(parts.get("user") or "postgres"), safe="")
    password = parts.get("password")
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    host = parts.get("host") or "127.0.0.1"
    port = parts.get("port") or "5432"
    return f"postgresql://{auth}@{host}:{port}/{parts.get('dbname') or 'postgres'}"


@contextmanager
def scratch_database(admin_conninfo: str, prefix: str = "agentloop_aegra") -> Iterator[str]:
    """Create a uniquely named database next to `admin_conninfo`'s; yield its URL; drop it."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(make_conninfo(admin_conninfo, dbname=name))
    finally:
        with psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class AegraProcess:
    """One Aegra server process."""

    index: int
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and everything it started: no shutdown, no lease handed back."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_DEADLINE)

    def stop(self) -> None:
        """SIGTERM (Aegra drains its runs and hands the rest back to the queue), then SIGKILL."""
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=STOP_DEADLINE)
        self.kill()


@dataclass
class AegraCluster:
    """N Aegra processes sharing one PostgreSQL database and one Redis.

    Args:
        database_url: A `postgresql://` URL of a database the cluster may migrate and fill.
        workdir: Scratch directory for the processes' logs (and their working directory).
        redis_url: The Redis all processes share.
        config: The `langgraph.json` (or `aegra.json`) to serve, as is.
        env: Extra environment for the servers (worker, lease and graph settings).
    """

    database_url: str
    workdir: Path
    redis_url: str = DEFAULT_REDIS
    config: Path = TEST_CONFIG
    env: Mapping[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"agentloop-{uuid.uuid4().hex[:10]}:")
    processes: list[AegraProcess] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in NETWORK_ENV}
        env.pop("AGENTLOOP_MODEL", None)
        env.update(
            AEGRA_CONFIG=str(self.config),
            DATABASE_URL=self.database_url,
            REDIS_BROKER_ENABLED="true",
            REDIS_URL=self.redis_url,
            REDIS_CHANNEL_PREFIX=f"{self.prefix}run:",
            WORKER_QUEUE_KEY=f"{self.prefix}jobs",
            AUTH_TYPE="noop",
            # JSON log lines, a run's exception (its traceback) in each one's `exception`.
            ENV_MODE="PRODUCTION",
            CRON_ENABLED="false",
            LANGSMITH_TRACING="false",
            OTEL_TARGETS="",
            PYTHONUNBUFFERED="1",
            # The loop's default model stays Ollama, aimed where nothing answers: runs of
            # `agent_loop` pick the demo model through their context.
            OLLAMA_HOST="http://127.0.0.1:9",
        )
        env.update(self.env)
        return env

    def _spawn(self, index: int, port: int) -> AegraProcess:
        log = self.workdir / f"aegra-{index}.log"
        command = [str(aegra_python()), "-m", "uvicorn", "aegra_api.main:app"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        with log.open("ab") as output:
            popen = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return AegraProcess(index, port, log, popen)

    def _wait_healthy(self, process: AegraProcess, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not process.alive():
                raise AegraError(
                    f"Aegra process {process.index} exited with {process.popen.returncode}:\n"
                    f"{process.log.read_text()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(f"{process.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):  # not listening yet, or 503
                pass
            time.sleep(0.2)
        raise AegraError(
            f"Aegra process {process.index} was not healthy within {STARTUP_DEADLINE:g} s:\n"
            f"{process.log.read_text()[-4000:]}"
        )

    def start(self, count: int) -> list[AegraProcess]:
        """Start `count` more processes; return them once every one is healthy.

        On a new database the first process starts alone: it creates Aegra's tables and the
        checkpointer's, which two processes creating at once would race on. The rest start
        together.
        """
        started: list[AegraProcess] = []
        if not self.processes and count:
            first = self._spawn(0, free_port())
            self.processes.append(first)
            self._wait_healthy(first, time.monotonic() + STARTUP_DEADLINE)
            started.append(first)
        rest = [
            self._spawn(len(self.processes) + i, free_port()) for i in range(count - len(started))
        ]
        self.processes += rest
        deadline = time.monotonic() + STARTUP_DEADLINE
        for process in rest:
            self._wait_healthy(process, deadline)
        return started + rest

    def restart(self, process: AegraProcess) -> AegraProcess:
        """Start a process anew in `process`'s place (same index and port), once it is down."""
        if process.alive():
            process.stop()
        fresh = self._spawn(process.index, process.port)
        self.processes[self.processes.index(process)] = fresh
        self._wait_healthy(fresh, time.monotonic() + STARTUP_DEADLINE)
        return fresh

    def by_pid(self, pid: int) -> AegraProcess:
        return next(p for p in self.processes if p.pid == pid)

    def stop(self) -> None:
        """Stop every process and delete the cluster's Redis keys."""
        for process in self.processes:
            if process.alive():
                process.stop()
        with contextlib.suppress(AegraError, OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(aegra_python()), "-c", _DELETE_KEYS, self.redis_url, self.prefix],
                timeout=30,
                capture_output=True,
            )

    def __enter__(self) -> AegraCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
