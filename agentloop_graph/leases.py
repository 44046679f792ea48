"""One run per thread: while a run streams on a thread the loop owns, it holds that thread.

A second run on the same thread (a new task, or a resume) is refused with `ThreadBusyError`
before it writes anything. How the thread is held depends on the checkpointer:

- PostgreSQL (`PostgresSaver`, `AsyncPostgresSaver`): a session-level advisory lock, keyed on
  the thread id, on a connection the run opens for itself. Closing that connection lets the
  thread go; so does the server when the process dies.
- A SQLite file (`SqliteSaver`, `AsyncSqliteSaver`): an exclusive `flock` on a lock file
  beside the database, one per thread id. The kernel lets it go when the process dies.
- Anything else (`InMemorySaver`, an in-memory SQLite database, other checkpointers, SQLite on
  Windows): a hold in this process, per graph (`LocalHolds`); other processes are not kept out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

if sys.platform != "win32":
    import fcntl

T = TypeVar("T")

LocalHolds = dict[tuple[int, str], object]
"""The (checkpointer id, thread id) pairs held by runs in this process, for checkpointers with
no lock of their own, each with its holder. `create_agent_loop` makes one per graph
(`with_config` copies share it), so two runs of one graph on one thread exclude each other;
two graphs built separately do not."""

_KINDS = {
    ("langgraph.checkpoint.postgres", "PostgresSaver"): "postgres",
    ("langgraph.checkpoint.postgres.aio", "AsyncPostgresSaver"): "postgres",
    ("langgraph.checkpoint.sqlite", "SqliteSaver"): "sqlite",
    ("langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver"): "sqlite",
}
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
_UNLOCK = "SELECT pg_advisory_unlock(%s)"


class ThreadBusyError(RuntimeError):
    """Another run is using the thread; nothing was written and no node ran."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(
            f"thread {thread_id!r} is in use by another run; try again when that run ends, "
            "or use another thread_id"
        )
        self.thread_id = thread_id


def _kind(saver: Any) -> str | None:
    """How `saver` holds threads: "postgres", "sqlite" (not on Windows: no `flock`) or None,
    in this process. Classes go by name, subclasses too: importing a database driver nobody
    uses would slow the first run."""
    found = (_KINDS.get((cls.__module__, cls.__qualname__)) for cls in type(saver).__mro__)
    kind = next((kind for kind in found if kind), None)
    return None if kind == "sqlite" and sys.platform == "win32" else kind


@contextmanager
def hold_thread(saver: Any, thread_id: object, local: LocalHolds) -> Iterator[None]:
    """Hold a thread for a blocking run (`stream`, `invoke`), however the run ends;
    `ThreadBusyError` if another run, in this process or another, holds it."""
    thread, kind = str(thread_id), _kind(saver)
    where = _locate(saver, kind) if kind else ""
    if kind == "postgres":
        with _advisory_lock(where, thread):
            yield
    else:
        with _file_lock(where, thread) if where else _held_here(saver, thread, local):
            yield


@asynccontextmanager
async def ahold_thread(saver: Any, thread_id: object, local: LocalHolds) -> AsyncIterator[None]:
    """`hold_thread` for an async run (`astream`, `ainvoke`), never blocking the event loop
    (the file lock's calls never wait)."""
    thread, kind = str(thread_id), _kind(saver)
    where = await _alocate(saver, kind) if kind else ""
    if kind == "postgres":
        async with _aadvisory_lock(where, thread):
            yield
    else:
        with _file_lock(where, thread) if where else _held_here(saver, thread, local):
            yield


def _locate(saver: Any, kind: str) -> str:
    """How to connect to a PostgreSQL saver's database (password included), or the file of
    a SQLite saver's (empty in memory); an async saver's, from a blocking run, on its loop."""
    conn = saver.conn
    if kind == "sqlite":
        if not isinstance(conn, sqlite3.Connection):
            return _on_saver_loop(saver, _alocate(saver, kind))
        with saver.lock:
            rows = conn.execute("PRAGMA database_list").fetchall()
        return str(next(row[2] for row in rows if row[1] == "main"))
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    if isinstance(conn, AsyncConnectionPool):
        return _on_saver_loop(saver, _alocate(saver, kind))
    if isinstance(conn, ConnectionPool):  # a pool lends a connection to find out
        with conn.connection() as lent:
            return _dsn(lent.info)
    return _dsn(conn.info)


async def _alocate(saver: Any, kind: str) -> str:
    """`_locate` through an async saver's connection, without blocking."""
    conn = saver.conn
    if kind == "sqlite" and not isinstance(conn, sqlite3.Connection):
        await saver.setup()  # the connection may not be open before the saver's first use
        async with saver.lock, conn.execute("PRAGMA database_list") as cursor:
            rows = await cursor.fetchall()
        return str(next(row[2] for row in rows if row[1] == "main"))
    if kind == "postgres":
        from psycopg_pool import AsyncConnectionPool

        if isinstance(conn, AsyncConnectionPool):
            async with conn.connection() as lent:
                return _dsn(lent.info)
    return _locate(saver, kind)


def _dsn(info: Any) -> str:
    """How to open another connection like the one `info` (psycopg's) describes."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(info.dsn, password=info.password or None)


def _digest(thread_id: str) -> bytes:
    """A stable digest of the thread id, apart from anyone else's use of the same names."""
    return hashlib.sha256(f"agentloop-graph thread\0{thread_id}".encode()).digest()


def _lock_key(thread_id: str) -> int:
    return int.from_bytes(_digest(thread_id)[:8], "big", signed=True)  # a PostgreSQL bigint


@contextmanager
def _advisory_lock(conninfo: str, thread_id: str) -> Iterator[None]:
    """Hold the thread's advisory lock on a connection of our own, closed at the end:
    advisory locks are re-entrant within a session, so the connection is never shared.

    The lock is let go explicitly before the connection closes: the server ends a closed
    session on its own time, and until then the next run on the thread would find it held.
    (A killed holder's lock goes with its session all the same.)
    """
    import psycopg

    key = _lock_key(thread_id)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(_TRY_LOCK, (key,)).fetchone()
        if not (row and row[0]):
            raise ThreadBusyError(thread_id)
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):  # a lost session took its lock along
                conn.execute(_UNLOCK, (key,))


@asynccontextmanager
async def _aadvisory_lock(conninfo: str, thread_id: str) -> AsyncIterator[None]:
    import psycopg

    key = _lock_key(thread_id)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute(_TRY_LOCK, (key,))).fetchone()
        if not (row and row[0]):
            raise ThreadBusyError(thread_id)
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.execute(_UNLOCK, (key,))


@contextmanager
def _held_here(saver: Any, thread_id: str, local: LocalHolds) -> Iterator[None]:
    key, holder = (id(saver), thread_id), object()
    # `setdefault` is atomic: of two runs taking the same thread, one finds the other's.
    if local.setdefault(key, holder) is not holder:
        raise ThreadBusyError(thread_id)
    try:
        yield
    finally:
        del local[key]


@contextmanager
def _file_lock(database: str, thread_id: str) -> Iterator[None]:
    """Hold an exclusive `flock` on the thread's lock file beside `database`.

    The holder removes the file as it lets go, so lock files do not pile up (one left by a
    killed holder is reused, then removed, by the thread's next run); a run that locked a
    file already removed tries again on the new one.
    """
    path = f"{database}-thread-{_digest(thread_id).hex()[:16]}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.stat(path), os.fstat(fd)):
                    break  # locked, and still the file at `path`
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise ThreadBusyError(thread_id) from None
            raise
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _on_saver_loop(saver: Any, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on an async saver's event loop from a blocking run, as the saver's own
    blocking methods do: from another thread only, as waiting on that loop would hang."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is saver.loop:
        coro.close()
        raise asyncio.InvalidStateError(
            "a blocking run on an async checkpointer must start outside the checkpointer's "
            "event loop; use astream/ainvoke there"
        )
    return asyncio.run_coroutine_threadsafe(coro, saver.loop).result()
