"""The loop's traces as OpenTelemetry spans, through LangSmith's OTel mode.

`langsmith` (0.15) reads `LANGSMITH_TRACING_MODE` (`langsmith`, `otel` or `hybrid`), else
the older `LANGSMITH_OTEL_ENABLED` (hybrid) and `LANGSMITH_OTEL_ONLY` (otel). In OTel mode
it turns each traced run into a span on the global tracer provider, when one is set, with
the run's metadata as `langsmith.metadata.<key>` attributes. Here that provider keeps its
spans in memory, and the LangSmith endpoint is the local collector, to prove what reaches
LangSmith (nothing, in `otel` mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tracers.langchain import wait_for_all_tracers
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentloop_graph import create_agent_loop
from tests.support.helpers import Run
from tests.support.langsmith_collector import LangSmithCollector
from tests.support.tracing import NODE_RUNS, STEP_METADATA, TASK, scripted_model

METADATA = "langsmith.metadata."


@pytest.fixture(scope="session")
def provider_spans() -> InMemorySpanExporter:
    """The spans of the global tracer provider. OpenTelemetry keeps the first provider a
    process sets, so it is set once per test process."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def spans(provider_spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    provider_spans.clear()
    yield provider_spans
    provider_spans.clear()


def model_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    """The spans of model calls, in the order the calls started."""
    found = [
        s for s in spans.get_finished_spans() if s.attributes.get("langsmith.span.kind") == "llm"
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def metadata(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(METADATA + key)


@pytest.mark.parametrize(
    ("settings", "to_langsmith"),
    [
        ({"LANGSMITH_TRACING_MODE": "otel"}, False),
        ({"LANGSMITH_OTEL_ENABLED": "true", "LANGSMITH_OTEL_ONLY": "true"}, False),
        ({"LANGSMITH_OTEL_ENABLED": "true"}, True),
    ],
    ids=["otel", "otel-only-legacy", "hybrid"],
)
def test_spans_carry_the_loops_metadata(
    run: Run,
    langsmith_env: pytest.MonkeyPatch,
    collector: LangSmithCollector,
    spans: InMemorySpanExporter,
    settings: dict[str, str],
    to_langsmith: bool,
) -> None:
    langsmith_env.setenv("LANGSMITH_TRACING", "true")
    langsmith_env.setenv("LANGSMITH_ENDPOINT", collector.url)
    langsmith_env.setenv("LANGSMITH_API_KEY", "test-key")
    for name, value in settings.items():
        langsmith_env.setenv(name, value)
    out = run(create_agent_loop(scripted_model()), {"task": TASK})
    wait_for_all_tracers()  # the client's queue drained: every span exported

    calls = model_spans(spans)
    assert [span.name for span in calls] == [f"agentloop.{node}" for node in NODE_RUNS]
    assert [metadata(span, "langgraph_node") for span in calls] == NODE_RUNS
    assert {metadata(span, "task_id") for span in calls} == {out["task_id"]}
    assert [(metadata(s, "step"), metadata(s, "attempt")) for s in calls] == STEP_METADATA
    # One trace: the loop's run is the root, every node and model call under it.
    (root,) = [s for s in spans.get_finished_spans() if s.parent is None]
    assert root.name == "agent_loop"
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {root.context.trace_id}

    if to_langsmith:
        assert collector.wait_until(lambda c: len(c.runs()) == len(spans.get_finished_spans()))
    else:
        assert collector.paths() == []  # OTel only: nothing went to LangSmith
