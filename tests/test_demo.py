"""The demo model: phases by the calling node, any prompt wording, tools, honest answers."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop, plan_and_execute_tool
from agentloop_graph.demo import PLAN, DemoChatModel, DemoModelError
from tests.support.helpers import Run

PICNIC = "Plan a picnic"
DEMO_PLAN = [step.format(task=PICNIC) for step in PLAN]
SIMULATED = "DemoModelError: simulated failure of step {}, as the task asked"


class Turn(TypedDict):
    messages: list[BaseMessage]
    reply: Any


def one_node(node: str, *messages: BaseMessage, tools: tuple[Any, ...] = ()) -> tuple[Any, Turn]:
    """A graph with one node named `node` in which the demo, `tools` bound, answers its
    input's messages; and that input, holding `messages`."""
    model = DemoChatModel()
    bound = model.bind_tools(list(tools)) if tools else model

    def call(state: Turn, config: RunnableConfig) -> dict[str, Any]:
        return {"reply": bound.invoke(state["messages"], config)}

    async def acall(state: Turn, config: RunnableConfig) -> dict[str, Any]:
        return {"reply": await bound.ainvoke(state["messages"], config)}

    builder = StateGraph(Turn)
    builder.add_node(node, RunnableLambda(call, afunc=acall))
    builder.add_edge(START, node)
    builder.add_edge(node, END)
    return builder.compile(), {"messages": list(messages), "reply": None}


def reply_text(run: Run, node: str, *messages: BaseMessage) -> str:
    graph, graph_input = one_node(node, *messages)
    answer: AIMessage = run(graph, graph_input)["reply"]
    return answer.text


def test_demo_run(run: Run) -> None:
    out = run(create_agent_loop("demo"), {"task": "Plan a picnic"})
    assert out["status"] == "completed"
    assert len(out["steps"]) == 4
    assert all(s["result"].startswith("[demo]") for s in out["steps"])
    assert out["answer"].startswith("[demo]")


def test_demo_can_fail_a_step_to_show_the_adapter(run: Run) -> None:
    out = run(create_agent_loop("demo"), {"task": "Plan a picnic, fail step 3"})
    assert [s["status"] for s in out["steps"]] == ["completed", "completed", "adapted", "completed"]
    assert "simulated failure of step 3" in out["steps"][2]["error"]
    assert out["summary"] == "Plan a picnic, fail step 3: Completed 3/4 steps, 1 adapted."


def test_demo_respects_max_steps(run: Run) -> None:
    out = run(create_agent_loop("demo", max_steps=2), {"task": "t"})
    assert len(out["plan"]) == 2 and out["status"] == "completed"


def test_demo_can_break_a_step_for_good(run: Run) -> None:
    out = run(create_agent_loop("demo", max_adaptations=2), {"task": "Plan a picnic, break step 2"})
    assert [s["status"] for s in out["steps"]] == ["completed", "failed", "completed", "completed"]
    assert out["steps"][1]["attempts"] == 3
    assert out["status"] == "partial"


REWORDED = {
    "planner": "Make a short list of what to do, at most 2 items.\nTask: Plan a picnic",
    "executor": "Task: Plan a picnic\nWork on Step 2/3 now: Pack the basket\nGo.",
    "adapter": "Task: Plan a picnic\nStep 2/3 went wrong: Pack the basket\nError: boom\nRetry?",
    "summariser": "Task: Plan a picnic\n1. Pack: ok\n2. Walk: ok\nSum it up.",
}


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("planner", f"1. {DEMO_PLAN[0]}\n2. {DEMO_PLAN[1]}"),
        ("executor", "[demo] Step 2 done: Pack the basket."),
        ("adapter", "Alternative approach: Pack the basket, one small piece at a time"),
        (
            "summariser",
            "[demo] Final answer for 'Plan a picnic': every step was worked through in order.",
        ),
    ],
)
def test_the_calling_node_names_the_phase_whatever_the_wording(
    run: Run, node: str, expected: str
) -> None:
    system = SystemMessage("You are terse.")
    assert reply_text(run, node, system, HumanMessage(REWORDED[node])) == expected


def test_without_a_task_line_the_whole_prompt_is_the_task(run: Run) -> None:
    plan = reply_text(run, "planner", HumanMessage("Plan a picnic,\nfor two"))
    assert plan.splitlines()[0] == "1. Pin down what is being asked: Plan a picnic, for two"
    assert len(plan.splitlines()) == len(PLAN)
    # "at most 3" in the task itself is not a limit on the plan.
    plan = reply_text(run, "planner", HumanMessage("Task: Walk for at most 3 hours"))
    assert len(plan.splitlines()) == len(PLAN)
    answer = reply_text(run, "executor", HumanMessage("Pack the\nbasket"))
    assert answer == "[demo] Done: Pack the basket."


def test_failures_follow_the_step_line_whatever_the_wording(run: Run) -> None:
    task = "Task: Plan a picnic, fail step 2\n"
    with pytest.raises(DemoModelError, match="step 2"):
        reply_text(run, "executor", HumanMessage(f"{task}Now Step 2/3 is: Pack"))
    revised = f"{task}Now Step 2/3 is: Alternative approach: Pack"
    answer = reply_text(run, "executor", HumanMessage(revised))
    assert answer == "[demo] Step 2 done: Alternative approach: Pack."


CHAT_PROMPT = "Break this task into numbered steps (at most 3).\n\nTask: Plan a picnic"
"""The loop's planner wording, which outside the loop's nodes is just a message."""


def test_outside_the_loop_it_is_a_chat_model(run: Run) -> None:
    answer = reply_text(run, "assistant", SystemMessage("Be kind."), HumanMessage(CHAT_PROMPT))
    assert answer == f"[demo] (answered directly) You said: {CHAT_PROMPT}"


async def test_called_outside_any_graph_it_is_a_chat_model() -> None:
    model = DemoChatModel()
    for answer in (model.invoke(CHAT_PROMPT), await model.ainvoke(CHAT_PROMPT)):
        assert answer.text == f"[demo] (answered directly) You said: {CHAT_PROMPT}"


def test_every_break_and_fail_in_the_task_counts(run: Run) -> None:
    task = "Plan a picnic, break step 2 and break step 4"
    out = run(create_agent_loop("demo"), {"task": task})
    assert [s["status"] for s in out["steps"]] == ["completed", "failed", "completed", "failed"]
    assert [s["error"] for s in out["steps"]] == [
        None,
        SIMULATED.format(2),
        None,
        SIMULATED.format(4),
    ]
    task = "Plan a picnic, fail step 1, fail step 3"
    out = run(create_agent_loop("demo"), {"task": task})
    assert [s["status"] for s in out["steps"]] == ["adapted", "completed", "adapted", "completed"]
    assert out["status"] == "completed"


def test_the_final_answer_says_which_steps_failed(run: Run) -> None:
    task = "Plan a picnic, fail step 1, break step 2, break step 4"
    out = run(create_agent_loop("demo", max_adaptations=0), {"task": task})
    assert out["status"] == "partial"
    assert out["answer"] == (
        f"[demo] Final answer for '{task}': 1 of 4 steps done; "
        f"step 1 failed ({SIMULATED.format(1)}); step 2 failed ({SIMULATED.format(2)}); "
        f"step 4 failed ({SIMULATED.format(4)})."
    )


def test_the_final_answer_of_a_clean_run_is_unchanged(run: Run) -> None:
    out = run(create_agent_loop("demo"), {"task": "Plan a picnic, fail step 2"})
    assert out["answer"] == (
        "[demo] Final answer for 'Plan a picnic, fail step 2': every step was worked through "
        "in order."
    )


def test_with_tools_each_step_calls_one_and_reports_what_it_said(run: Run) -> None:
    calls: list[tuple[str, str, int]] = []

    def measure(text: str, scale: int) -> str:
        """Count the words of a text."""
        calls.append(("measure", text, scale))
        return f"{len(text.split()) * scale} words"

    def weather(place: str) -> str:
        """The weather at a place."""
        calls.append(("weather", place, 0))
        return "Sunny,\n  20 C"

    task = "Plan a picnic, check the weather, fail step 3"
    out = run(create_agent_loop("demo", tools=[measure, weather]), {"task": task})
    plan = out["plan"]
    revised = out["steps"][2]["adaptation"]
    # The first step quotes the task, which names `weather`; the others use the first tool.
    assert calls == [
        ("weather", plan[0], 0),
        ("measure", plan[1], 1),
        ("measure", revised, 1),
        ("measure", plan[3], 1),
    ]
    assert [s["status"] for s in out["steps"]] == ["completed", "completed", "adapted", "completed"]
    assert (
        out["steps"][0]["result"] == f"[demo] Step 1 done: {plan[0]} (weather said: Sunny, 20 C)."
    )
    words = len(plan[1].split())
    assert out["steps"][1]["result"] == (
        f"[demo] Step 2 done: {plan[1]} (measure said: {words} words)."
    )
    assert out["steps"][2]["result"].startswith(f"[demo] Step 3 done: {revised} (measure said: ")


def test_tool_calls_are_deterministic() -> None:
    def measure(text: str) -> str:
        """Count the words of a text."""
        return str(len(text.split()))

    graph, graph_input = one_node(
        "executor", HumanMessage("Task: t\nStep 1/1: go"), tools=(measure,)
    )
    first, second = (graph.invoke(graph_input)["reply"].tool_calls for _ in range(2))
    assert first == second
    assert [(c["name"], c["args"]) for c in first] == [("measure", {"text": "go"})]
    assert first[0]["id"].startswith("call_")


def test_arguments_follow_the_tools_schema() -> None:
    def book(
        place: str, people: int, budget: float, outdoors: bool, items: list[str], note: str = ""
    ) -> str:
        """Book a spot."""
        return "booked"

    graph, graph_input = one_node(
        "executor", HumanMessage("Task: t\nStep 1/2: Find a park"), tools=(book,)
    )
    (call,) = graph.invoke(graph_input)["reply"].tool_calls
    assert call["args"] == {
        "place": "Find a park",
        "people": 1,
        "budget": 1,
        "outdoors": True,
        "items": ["Find a park"],
    }


def test_the_loop_tool_is_never_called_from_a_step(run: Run) -> None:
    inner = plan_and_execute_tool(create_agent_loop("demo"))
    out = run(create_agent_loop("demo", tools=[inner]), {"task": PICNIC})
    assert out["steps"][0]["result"] == f"[demo] Step 1 done: {DEMO_PLAN[0]}."
    assert out["status"] == "completed"
