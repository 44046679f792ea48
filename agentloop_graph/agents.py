"""Your own agents do the steps: `executor=` (one agent) and `executors=` (a roster the planner
assigns steps to).

An agent runs inside the `executor` node, called with the node's config, so LangGraph treats
a graph agent as a subgraph of the loop: its events stream under the executor's namespace,
its `interrupt`s pause the loop, and its checkpoints live under the loop's thread. Its model
calls pass through a callback handler that counts them, and refuses the next one once the
run's budget is spent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable, RunnableConfig

from agentloop_graph.budget import BudgetExhausted


@dataclass(frozen=True)
class StepAgent:
    """An agent that can do a plan's steps: any Runnable taking `{"messages": [...]}` and
    returning a dict with `messages` (LangChain's `create_agent`, a compiled `StateGraph`, a
    deepagents agent).

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> from langchain_core.runnables import RunnableLambda
        >>> from agentloop_graph import StepAgent, create_agent_loop
        >>> echo = RunnableLambda(lambda inputs: {"messages": [AIMessage("done")]})
        >>> loop = create_agent_loop("demo", executors=[StepAgent("echo", "Says done.", echo)])
        >>> loop.invoke({"task": "Plan a picnic"})["steps"][0]["result"]
        'done'
    """

    name: str
    """How the planner names it (`[name]` in text plans, `"agent"` in JSON ones)."""
    description: str
    """What the planner reads about it, to choose it for a step."""
    runnable: Runnable[Any, Any]


def as_agents(executor: object, executors: object, tools: object) -> tuple[StepAgent, ...]:
    """The agents that do the steps (none: the built-in executor), from the factory's
    `executor=` (one agent, named after the runnable) or `executors=` (a roster of
    `StepAgent`s or dicts with their fields).

    Raises:
        ValueError: Both are given, `tools` is given too, or the roster names an agent
            twice or has an agent without a name (an empty roster is the built-in executor).
        TypeError: An agent is not a Runnable, or a roster entry neither a `StepAgent` nor
            a dict of its fields.
    """
    if executor is None and not executors:
        return ()
    if executor is not None and executors:
        raise ValueError("pass executor= (one agent) or executors= (a roster), not both")
    if tools:
        raise ValueError(
            "tools= is for the built-in executor; with executor= or executors= the agents "
            "bring their own tools"
        )
    if executor is not None:
        name = getattr(executor, "name", None) or "agent"
        return (StepAgent(str(name), "", _runnable("executor", executor)),)
    if isinstance(executors, str | bytes | Mapping) or not isinstance(executors, Sequence):
        raise TypeError(f"executors must be a list of StepAgent or dicts, got {executors!r}")
    roster = tuple(_agent(entry) for entry in executors)
    names = [agent.name for agent in roster]
    if dupes := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"executors names agents more than once: {dupes}")
    return roster


def _agent(entry: object) -> StepAgent:
    if isinstance(entry, Mapping):
        if missing := sorted({"name", "description", "runnable"} - set(entry)):
            raise TypeError(f"an executors entry lacks {missing}: {dict(entry)!r}")
        entry = StepAgent(entry["name"], entry["description"], entry["runnable"])
    if not isinstance(entry, StepAgent):
        raise TypeError(f"executors entries must be StepAgent or dicts, got {entry!r}")
    if not isinstance(entry.name, str) or not entry.name.strip() or "]" in entry.name:
        raise ValueError(f"an agent's name must be a non-empty word, got {entry.name!r}")
    _runnable(f"executors[{entry.name!r}]", entry.runnable)
    return entry


def _runnable(argument: str, agent: object) -> Runnable[Any, Any]:
    if not isinstance(agent, Runnable):
        raise TypeError(
            f"{argument} must be a Runnable taking {{'messages': [...]}} (a create_agent "
            f"agent, a compiled StateGraph), got {type(agent).__name__}"
        )
    return agent


class Spending(BaseCallbackHandler):
    """Counts an agent's model calls and tokens as they happen, and stops the agent before a
    call the run's budget does not allow (`BudgetExhausted` raised from the call)."""

    raise_error = True
    run_inline = True
    # It listens to model calls only: every other event of the agent's runs passes it by.
    ignore_chain = ignore_agent = ignore_retriever = ignore_custom_event = True

    def __init__(self, take: Any, spend: Any) -> None:
        self._take = take
        self._spend = spend
        self.calls = 0
        """The model calls it let through."""

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        if (spent := self._take()) is not None:
            raise BudgetExhausted(spent)
        self.calls += 1

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                if isinstance(message, AIMessage):
                    self._spend(message)


def agent_config(config: RunnableConfig, handler: BaseCallbackHandler) -> RunnableConfig:
    """The node's config with `handler` listening to the agent's runs."""
    callbacks: Any = config.get("callbacks")
    if callbacks is None:
        callbacks = [handler]
    elif isinstance(callbacks, list):
        callbacks = [*callbacks, handler]
    else:
        callbacks = callbacks.copy()
        callbacks.add_handler(handler, inherit=True)
    return {**config, "callbacks": callbacks}


def agent_input(prompt: str) -> dict[str, Any]:
    """What an agent is called with: the step's prompt as one human message."""
    return {"messages": [HumanMessage(prompt)]}


def replies_of(output: object) -> list[AIMessage]:
    """The AI messages an agent returned: one per model call of its attempt."""
    messages = output.get("messages") if isinstance(output, Mapping) else None
    if not isinstance(messages, Sequence):
        return []
    return [m for m in convert_to_messages(messages) if isinstance(m, AIMessage)]


def answer_of(output: object) -> str:
    """The text of the last AI message an agent returned ("" when there is none)."""
    replies = replies_of(output)
    return replies[-1].text if replies else ""
