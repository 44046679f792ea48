.PHONY: setup format lint test test-all bench notebooks

setup:
	python3 -m venv .venv && .venv/bin/python -m pip install -q -U pip
	.venv/bin/python -m pip install -q -e '.[viz]' --group test --group lint --group studio --group notebooks --group durable --group real-model

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
