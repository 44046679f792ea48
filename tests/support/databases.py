"""Throwaway databases for the checkpointer suites.

PostgreSQL is found through `AGENTLOOP_TEST_POSTGRES` (a libpq connection string or URL for a
database the user may connect to and whose role may create databases), by default the local
server's `test` database as `postgres`. Each suite creates a uniquely named database there and
drops it afterwards, so runs never see each other's threads. When PostgreSQL (or its driver) is
unavailable the tests skip with the reason, except under CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest

POSTGRES_ENV = "AGENTLOOP_TEST_POSTGRES"
DEFAULT_POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing service, or fail it under CI, where every backend must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create a uniquely named PostgreSQL database, yield its connection string, drop it."""
    try:
        import psycopg
        from psycopg.conninfo import make_conninfo
    except ImportError:
        unavailable("psycopg is not installed (dependency group `durable`)")
    admin = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    name = f"agentloop_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {admin!r} (set {POSTGRES_ENV}): {exc}")
    try:
        yield make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            # FORCE ends connections a killed worker may have left behind.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
