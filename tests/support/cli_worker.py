"""The `agentloop` command as its own process, its demo model slowed down.

    python tests/support/cli_worker.py LATENCY ARG...

runs `agentloop ARG...` the way the console script does (`main()` reading `sys.argv`),
except that `--model demo` answers each call after LATENCY seconds, so a test has time to
press Ctrl-C mid-run or to watch the activity line. Nothing is imported before `main()`
that the console script would not import, so a Ctrl-C can land in the same places.
"""

from __future__ import annotations

import signal

# A process started in the background (a CI job, say) inherits an ignored SIGINT, which
# Python then leaves ignored; a process run from a terminal handles Ctrl-C. Be the latter.
signal.signal(signal.SIGINT, signal.default_int_handler)

import sys  # noqa: E402
from typing import Any  # noqa: E402

from agentloop_graph import cli  # noqa: E402


def main() -> int:
    latency = float(sys.argv[1])

    def slow_demo(spec: str, **options: Any) -> Any:
        from agentloop_graph.demo import DemoChatModel

        return DemoChatModel(latency=latency), {}

    cli.connect = slow_demo  # type: ignore[assignment]
    sys.argv = ["agentloop", *sys.argv[2:]]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
