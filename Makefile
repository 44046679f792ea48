.PHONY: setup format lint test test-all bench notebooks

# llama.cpp (the real-model suite) built for any x86-64 processor with AVX2, in a pip cache of
# its own: see .ci/run.
PORTABLE_LLAMA = CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX=OFF" .venv/bin/python -m pip install -q \
	--force-reinstall --cache-dir "$${XDG_CACHE_HOME:-$$HOME/.cache}/agentloop-graph/pip-portable"

setup:
	python3 -m venv .venv && .venv/bin/python -m pip install -q -U pip
	.venv/bin/python -m pip install -q -e '.[viz]' --group test --group lint --group studio --group notebooks --group durable
	$(PORTABLE_LLAMA) --group real-model

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

lint:
	.venv/bin/ruff format --check . && .venv/bin/ruff check . && .venv/bin/mypy

test:
	.venv/bin/python -m pytest

test-all:
	bash .ci/run

bench:
	.venv/bin/python benchmarks/concurrency.py

notebooks:
	.venv/bin/python notebooks/build.py
