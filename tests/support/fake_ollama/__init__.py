"""A fake Ollama server for HTTP-level tests: Ollama's API in front of swappable backends.

`FakeOllama` speaks Ollama's REST API (`/api/chat` streamed and not, `/api/tags`,
`/api/show`, `/api/version`, `GET`/`HEAD /`) with Ollama's errors, records every request,
and takes its answers from a backend:

- `Scripted` (the default): responses played in order, or a function of the request;
  recorded answers (`fixture("plan")`), built ones (`reply("...")`) and faults (`HttpError`,
  `Drop`, `StreamError`, `Delay`, `Trickle`, `Hang`);
- `Recorded`: every phase of the agent loop answered from `tests/fixtures/ollama`;
- `RealModel`: SmolLM2-135M through llama.cpp, with Ollama's limits (`num_predict`,
  `num_ctx`), options and counts.

In a test:

    pytestmark = [pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_WARNINGS]

    @pytest.fixture
    def ollama(monkeypatch):
        with FakeOllama() as server:
            monkeypatch.setenv("OLLAMA_HOST", server.url)
            yield server

    def test_retried(ollama):
        ollama.play(fixture("plan"), error_fixture("runner_terminated"), fixture("step_1"))
        ...
        assert ollama.chat_requests[0].options["temperature"] == 0

with the real model: `with RealModel.load() as model, FakeOllama(model) as server: ...`
(or `serve_real_model()`); with the recordings: `FakeOllama(Recorded())`. From a shell
(port 0 picks a free port):

    python -m tests.support.fake_ollama --port 11434                # recorded answers
    python -m tests.support.fake_ollama --port 11434 --real-model   # SmolLM2

Only the standard library is needed, except by `RealModel` (llama-cpp-python).
"""

from tests.support.fake_ollama.backends import Backend, FixtureModels, Recorded, Scripted, phase_of
from tests.support.fake_ollama.llama import RealModel, RealModelUnavailable, serve_real_model
from tests.support.fake_ollama.protocol import (
    FIXTURES,
    Answer,
    Delay,
    Drop,
    Generation,
    Hang,
    HttpError,
    Request,
    Response,
    Served,
    StreamError,
    Trickle,
    error_fixture,
    fixture,
    reply,
)
from tests.support.fake_ollama.server import (
    UNCLOSED_CLIENT_WARNINGS,
    FakeOllama,
    collect_unclosed_clients,
)

__all__ = [
    "FIXTURES",
    "UNCLOSED_CLIENT_WARNINGS",
    "Answer",
    "Backend",
    "Delay",
    "Drop",
    "FakeOllama",
    "FixtureModels",
    "Generation",
    "Hang",
    "HttpError",
    "RealModel",
    "RealModelUnavailable",
    "Recorded",
    "Request",
    "Response",
    "Scripted",
    "Served",
    "StreamError",
    "Trickle",
    "collect_unclosed_clients",
    "error_fixture",
    "fixture",
    "phase_of",
    "reply",
    "serve_real_model",
]
