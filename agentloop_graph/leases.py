"""One run per thread: while a run streams on a thread the loop owns, it holds that thread.

A second run on the same thread (a new task, or a resume) is refused with `ThreadBusyError`
before it writes anything. How the thread is held depends on the checkpointer:

- PostgreSQL (`PostgresSaver`, `AsyncPostgresSaver`): a session-level advisory lock, keyed on
  the thread id, on a connection the graph keeps for its holds (one per database, opened by
  the first run that needs it, not one per run). Advisory locks are re-entrant within a
  session, so the graph's runs also hold threads in this process. The server lets the locks
  go when the process dies.
- A SQLite file (`SqliteSaver`, `AsyncSqliteSaver`): an exclusive `flock` on a lock file
  beside the database, one per thread id. The kernel lets it go when the process dies.
- Anything else (`InMemorySaver`, an in-memory SQLite database, other checkpointers, SQLite on
  Windows): a hold in this process, per graph; other processes are not kept out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

if sys.platform != "win32":
    import fcntl

T = TypeVar("T")

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


class Holds:
    """The threads a graph's runs hold, and what it found out to hold them: where each
    checkpointer keeps its database, and its connections for advisory locks. One per graph;
    copies (`with_config`) share it, so two runs of one graph on one thread exclude each
    other; two graphs built separately do so through the database alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._here: dict[tuple[int, str], object] = {}
        self._where: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._sessions: dict[str, Any] = {}
        # The connections close when the graph (and so this) is collected, or at exit.
        weakref.finalize(self, _close, self._sessions)

    @contextmanager
    def here(self, saver: Any, thread_id: str) -> Iterator[None]:
        """Hold `thread_id` among this graph's runs."""
        key, holder = (id(saver), thread_id), object()
        # `setdefault` is atomic: of two runs taking the same thread, one finds the other's.
        if self._here.setdefault(key, holder) is not holder:
            raise ThreadBusyError(thread_id)
        try:
            yield
        finally:
            del self._here[key]

    def where(self, saver: Any) -> str | None:
        """Where `saver` keeps its database, if found out already."""
        return self._where.get(saver)

    def found(self, saver: Any, where: str) -> str:
        self._where[saver] = where
        return where

    def advisory(self, conninfo: str, thread_id: str, take: bool) -> bool:
        """Take (or let go) the thread's advisory lock on the graph's connection to the
        database; whether it was taken. A connection lost since its last use is opened
        again (its locks went with it).

        Raises:
            RuntimeError: No connection could be opened; the message says why and what to do.
        """
        import psycopg

        key = _lock_key(thread_id)
        for fresh in (False, True):
            session = self._session(conninfo, fresh)
            try:
                row = session.execute(_TRY_LOCK if take else _UNLOCK, (key,)).fetchone()
            except psycopg.OperationalError:
                if fresh:
                    raise
                continue
            return bool(row and row[0])
        raise AssertionError("unreachable")

    def _session(self, conninfo: str, fresh: bool) -> Any:
        import psycopg

        with self._lock:
            session = self._sessions.get(conninfo)
            if session is not None and not fresh and not session.closed:
                return session
            try:
                session = psycopg.connect(conninfo, autocommit=True)
            except psycopg.OperationalError as exc:
                reason = " ".join(str(exc).split())
                raise RuntimeError(
                    "holding the thread needs a connection to PostgreSQL of its own (one per "
                    f"graph and process), and none could be opened: {reason}. Allow the server "
                    "more connections (max_connections, or the role's connection limit) or "
                    "run fewer processes on it"
                ) from None
            self._sessions[conninfo] = session
            return session


def _close(sessions: dict[str, Any]) -> None:
    for session in sessions.values():
        with contextlib.suppress(Exception):
            session.close()


def _kind(saver: Any) -> str | None:
    """How `saver` holds threads: "postgres", "sqlite" (not on Windows: no `flock`) or None,
    in this process. Classes go by name, subclasses too: importing a database driver nobody
    uses would slow the first run."""
    found = (_KINDS.get((cls.__module__, cls.__qualname__)) for cls in type(saver).__mro__)
    kind = next((kind for kind in found if kind), None)
    return None if kind == "sqlite" and sys.platform == "win32" else kind


@contextmanager
def hold_thread(saver: Any, thread_id: object, holds: Holds) -> Iterator[None]:
    """Hold a thread for a blocking run (`stream`, `invoke`), however the run ends;
    `ThreadBusyError` if another run, in this process or another, holds it."""
    thread, kind = str(thread_id), _kind(saver)
    where = holds.where(saver) if kind else ""
    if where is None and kind:
        where = holds.found(saver, _locate(saver, kind))
    if kind == "postgres" and where:
        with holds.here(saver, thread), _advisory_lock(holds, where, thread):
            yield
    else:
        with _file_lock(where, thread) if where else holds.here(saver, thread):
            yield


@asynccontextmanager
async def ahold_thread(saver: Any, thread_id: object, holds: Holds) -> AsyncIterator[None]:
    """`hold_thread` for an async run (`astream`, `ainvoke`), never blocking the event loop:
    the file lock's calls never wait, and the advisory lock's run on a worker thread."""
    thread, kind = str(thread_id), _kind(saver)
    where = holds.where(saver) if kind else ""
    if where is None and kind:
        where = holds.found(saver, await _alocate(saver, kind))
    if kind == "postgres" and where:
        with holds.here(saver, thread):
            if not await asyncio.to_thread(holds.advisory, where, thread, True):
                raise ThreadBusyError(thread)
            try:
                yield
            finally:
                await asyncio.to_thread(_let_go, holds, where, thread)
    else:
        with _file_lock(where, thread) if where else holds.here(saver, thread):
            yield


@contextmanager
def _advisory_lock(holds: Holds, conninfo: str, thread_id: str) -> Iterator[None]:
    if not holds.advisory(conninfo, thread_id, True):
        raise ThreadBusyError(thread_id)
    try:
        yield
    finally:
        _let_go(holds, conninfo, thread_id)


def _let_go(holds: Holds, conninfo: str, thread_id: str) -> None:
    import psycopg

    # A lost session took its locks along; a new one holds none of them.
    with contextlib.suppress(psycopg.Error, RuntimeError):
        holds.advisory(conninfo, thread_id, False)


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
