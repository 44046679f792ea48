"""A headless `langgraph dev` server for the Studio and remote-CLI suites.

`langgraph_dev(workdir)` serves the repo's `langgraph.json` offline: tracing, CLI analytics
and the version check are off, no LangSmith key or licence reaches it, and the default model
is Ollama aimed where nothing answers, so runs must pick the demo model by `context`. The
`server_url` fixture (one server per module) is in `tests/conftest.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 60.0
# Variables that would send traces, usage data or licence checks over the network.
NETWORK_ENV = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_TRACING",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NETWORK_ENV}
    env.update(
        LANGSMITH_TRACING="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        # The default model stays Ollama, aimed where nothing answers: runs must pick the
        # demo model through their context.
        OLLAMA_HOST="http://127.0.0.1:9",
    )
    env.pop("AGENTLOOP_MODEL", None)
    return env


def server_config(workdir: Path) -> Path:
    """The repo's `langgraph.json`, with its paths made absolute and persistence off.

    The in-memory server keeps its state in `.langgraph_api/` under its working directory
    (and loads what it finds there), so it runs in a scratch directory: a developer's own
    Studio threads are neither read nor overwritten, and the checkout stays clean.
    """
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["dependencies"] = [str((ROOT / dep).resolve()) for dep in config["dependencies"]]
    for spec in config["graphs"].values():
        path, variable = spec["path"].rsplit(":", 1)
        spec["path"] = f"{(ROOT / path).resolve()}:{variable}"
    config["disable_persistence"] = True
    target = workdir / "langgraph.json"
    target.write_text(json.dumps(config))
    return target


def wait_until_ready(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"langgraph dev exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # URLError included: not listening yet
            pass
        time.sleep(0.25)
    pytest.fail(f"langgraph dev did not answer within {STARTUP_DEADLINE:.0f} s:\n{log.read_text()}")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group, forcefully if it does not exit in time."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    # Whatever the server started is in its group too, and must not outlive the tests.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@contextmanager
def langgraph_dev(workdir: Path) -> Iterator[str]:
    """A headless `langgraph dev` serving the repo's graphs from `workdir`; its URL.

    The server's whole process group is stopped on leaving the block.
    """
    config = server_config(workdir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "server.log"
    langgraph = Path(sys.executable).parent / "langgraph"
    command = [str(langgraph), "dev", "--config", str(config), "--no-browser", "--no-reload"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            cwd=workdir,
            env=server_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(server, url, log)
        yield url
    finally:
        stop(server)
