"""The tests' harness, kept apart from the test modules: worker processes the slow suites
start (by path or with `-m`), fake and real servers, values and helpers several modules
share. No tests here; shared fixtures are in `tests/conftest.py`."""
