"""Model strings, model objects, and errors from unreachable model servers."""

from __future__ import annotations

import re
import socket
import sys

import pytest
from langchain_ollama import ChatOllama

from agentloop_graph import create_agent_loop
from agentloop_graph.demo import DemoChatModel
from agentloop_graph.models import resolve_model
from agentloop_graph.ollama import ollama_base_url
from tests.support.helpers import Run


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("10.1.2.3:9999", "http://10.1.2.3:9999"),
        ("https://ollama.internal/", "https://ollama.internal:443"),
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


OLLAMA_HOSTS = [
    "127.0.0.1",
    ":11434",
    ":56789",
    "localhost:8080",
    "example.com",
    "example.com:56789/",
    "http://example.com",
    "https://example.com",
    "https://example.com:56789/path/",
    "example.com/path",
    "  10.0.0.7:1234  ",
    "[::1]",
    "[fe80::1]:56789",
    "https://[0001:002:003:0004::1]",
]


@pytest.mark.parametrize("host", OLLAMA_HOSTS)
def test_ollama_host_is_read_as_the_ollama_client_reads_it(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    from ollama._client import _parse_host

    monkeypatch.setenv("OLLAMA_HOST", host)
    assert ollama_base_url() == _parse_host(host.strip())
    assert ollama_base_url(host) == _parse_host(host.strip())


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("http://0.0.0.0", "http://127.0.0.1:80"),
        ("[::]:11434", "http://[::1]:11434"),
    ],
)
def test_a_servers_listen_everywhere_address_means_this_machine(host: str, url: str) -> None:
    # The ollama client would dial 0.0.0.0 itself; as a client address it means "here".
    assert ollama_base_url(host) == url


def test_an_explicit_host_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "elsewhere:1")
    assert ollama_base_url("here:2") == "http://here:2"
    model = resolve_model("ollama:llama3.2", options={"base_url": ollama_base_url("here:2")})
    assert isinstance(model, ChatOllama) and model.base_url == "http://here:2"


@pytest.mark.parametrize("host", ["host:port", "example.com:99999", "[::1"])
def test_a_host_that_is_no_address_is_a_value_error(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    with pytest.raises(ValueError, match=rf"^OLLAMA_HOST '{re.escape(host)}' is not a host"):
        resolve_model("ollama:llama3.2")
    with pytest.raises(ValueError, match=r"^--ollama-host '"):
        ollama_base_url(host, argument="--ollama-host")


def test_demo_string() -> None:
    assert isinstance(resolve_model("demo"), DemoChatModel)


def test_provider_strings_go_to_init_chat_model() -> None:
    # langchain-mistralai is not installed (langchain-anthropic is: deepagents, a test
    # dependency, needs it): the error says what to install.
    with pytest.raises(ValueError, match=r"pip install langchain-mistralai"):
        resolve_model("mistralai:mistral-large-latest")


def test_an_unknown_provider_names_the_known_ones_not_init_chat_models_advice() -> None:
    with pytest.raises(ValueError) as caught:
        resolve_model("nonsense:x")
    message = str(caught.value)
    assert message.startswith("model 'nonsense:x' names no provider LangChain knows: ")
    assert "openai" in message and "anthropic" in message
    assert "model_provider" not in message and "\n" not in message


def test_a_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain_openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError) as caught:
        resolve_model("openai:gpt-4o-mini")
    message = str(caught.value)
    assert message.startswith("model 'openai:gpt-4o-mini' cannot be built: set OPENAI_API_KEY (")
    assert "OpenAIError: Missing credentials" in message and "\n" not in message


def _fail_to_build(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    import langchain.chat_models

    def init_chat_model(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(langchain.chat_models, "init_chat_model", init_chat_model)


def test_a_provider_refusing_for_want_of_a_key_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    _fail_to_build(monkeypatch, ValueError("Did not find anthropic_api_key, set the API key"))
    with pytest.raises(ValueError, match=r"cannot be built: set ANTHROPIC_API_KEY \(ValueError"):
        resolve_model("anthropic:claude-sonnet")


def test_other_build_failures_keep_their_reason_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    _fail_to_build(monkeypatch, RuntimeError("the region\nis closed"))
    with pytest.raises(ValueError) as caught:
        resolve_model("openai:gpt-4o-mini", argument="--model")
    assert str(caught.value) == (
        "--model 'openai:gpt-4o-mini' cannot be built: RuntimeError: the region is closed"
    )


def _without_socksio() -> None:
    try:
        import socksio  # noqa: F401
    except ImportError:
        return
    pytest.skip("socksio is installed, so httpx can use a SOCKS proxy")


@pytest.mark.parametrize("variable", ["ALL_PROXY", "https_proxy"])
def test_a_socks_proxy_without_socksio_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    _without_socksio()
    monkeypatch.setenv(variable, "socks5://127.0.0.1:9")
    with pytest.raises(ValueError) as caught:
        resolve_model("ollama:llama3.2")
    assert str(caught.value) == (
        "model 'ollama:llama3.2' cannot be built: a SOCKS proxy is set "
        f"({variable}) but the socksio package is missing: pip install socksio, "
        f"or unset {variable}"
    )


def test_a_socks_proxy_breaks_langchain_providers_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("langchain_openai")
    _without_socksio()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with pytest.raises(ValueError, match=r"pip install socksio, or unset ALL_PROXY$"):
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
