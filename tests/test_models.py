"""Model strings, model objects, and errors from unreachable model servers."""

from __future__ import annotations

import socket
import sys

import pytest
from langchain_ollama import ChatOllama

from agentloop_graph import create_agent_loop
from agentloop_graph.demo import DemoChatModel
from agentloop_graph.models import resolve_model
from tests.conftest import Run


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("10.1.2.3:9999", "http://10.1.2.3:9999"),
        ("https://ollama.internal/", "https://ollama.internal"),
    ],
)
def test_ollama_strings(monkeypatch: pytest.MonkeyPatch, host: str | None, url: str) -> None:
    if host is None:
        monkeypatch.delenv("OLLAMA_HOST", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_HOST", host)
    model = resolve_model("ollama:qwen3:8b")
    assert isinstance(model, ChatOllama)
    assert model.model == "qwen3:8b"
    assert model.base_url == url


def test_demo_string() -> None:
    assert isinstance(resolve_model("demo"), DemoChatModel)


def test_provider_strings_go_to_init_chat_model() -> None:
    # langchain-openai is not installed: the error says what to install.
    with pytest.raises(ValueError, match="langchain-openai"):
        resolve_model("openai:gpt-4o-mini")


def test_model_objects_pass_through() -> None:
    model = DemoChatModel()
    assert resolve_model(model) is model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_ollama_names_the_address(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    out = run(create_agent_loop("ollama:llama3.2"), {"task": "t"})
    assert out["status"] == "failed"
    summary = out["summary"]
    assert summary.startswith("Planning failed: cannot reach the Ollama server at ")
    assert f"http://127.0.0.1:{port}" in summary
    assert "ollama serve" in summary and "--model demo" in summary


def test_provider_strings_without_langchain_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "langchain.chat_models", None)
    with pytest.raises(ValueError, match=r"pip install 'agentloop-graph\[providers\]'"):
        resolve_model("anthropic:claude-sonnet")


def test_a_reset_connection_is_not_reported_as_an_unreachable_server() -> None:
    from agentloop_graph.models import describe_error

    model = resolve_model("ollama:llama3.2")
    assert describe_error(model, ConnectionRefusedError("refused")).startswith(
        "cannot reach the Ollama server at "
    )
    assert describe_error(model, ConnectionResetError("reset by peer")) == (
        "ConnectionResetError: reset by peer"
    )
