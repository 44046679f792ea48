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
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from langgraph.checkpoint.base import BaseCheckpointSaver

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from psycopg import ConnectionInfo

T = TypeVar("T")

Saver = BaseCheckpointSaver[Any]

_POSTGRES = (
    ("langgraph.checkpoint.postgres", "PostgresSaver"),
    ("langgraph.checkpoint.postgres.aio", "AsyncPostgresSaver"),
)
_SQLITE = (
    ("langgraph.checkpoint.sqlite", "SqliteSaver"),
    ("langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver"),
)
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"


class ThreadBusyError(RuntimeError):
    """Another run is using the thread; nothing was written and no node ran."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(
            f"thread {thread_id!r} is in use by another run; try again when that run ends, "
            "or use another thread_id"
        )
        self.thread_id = thread_id


class LocalHolds:
    """The threads held by runs in this process, per checkpointer object.

    The hold for checkpointers with no lock of their own. One per graph (`create_agent_loop`
    makes it; `with_config` copies share it), so two runs of one graph on one thread
    exclude each other; two graphs built separately do not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[tuple[int, str]] = set()

    @contextmanager
    def holding(self, saver: Saver, thread_id: str) -> Iterator[None]:
        """Hold `thread_id` of `saver` for the block.

        Raises:
            ThreadBusyError: Another run of this graph holds it.
        """
        key = (id(saver), thread_id)
        with self._lock:
            if key in self._held:
                raise ThreadBusyError(thread_id)
            self._held.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(key)


@contextmanager
def hold_thread(saver: Saver, thread_id: object, local: LocalHolds) -> Iterator[None]:
    """Hold a thread for a blocking run (`stream`, `invoke`), however the run ends.

    Args:
        saver: The run's checkpointer.
        thread_id: The run's `thread_id`.
        local: The graph's in-process holds, for checkpointers with no lock of their own.

    Raises:
        ThreadBusyError: Another run, in this process or another, holds the thread.

    Example:
        >>> from langgraph.checkpoint.memory import InMemorySaver
        >>> saver, local = InMemorySaver(), LocalHolds()
        >>> with hold_thread(saver, "t", local):
        ...     try:
        ...         with hold_thread(saver, "t", local):
        ...             pass
        ...     except ThreadBusyError as busy:
        ...         print(busy)
        thread 't' is in use by another run; try again when that run ends, or use another thread_id
    """
    thread = str(thread_id)
    if _one_of(saver, _POSTGRES):
        with _advisory_lock(_conninfo(cast("PostgresSaver | AsyncPostgresSaver", saver)), thread):
            yield
    elif sys.platform != "win32" and _one_of(saver, _SQLITE) and (path := _database_file(saver)):
        with _file_lock(path, thread):
            yield
    else:
        with local.holding(saver, thread):
            yield


@asynccontextmanager
async def ahold_thread(saver: Saver, thread_id: object, local: LocalHolds) -> AsyncIterator[None]:
    """`hold_thread` for an async run (`astream`, `ainvoke`): it never blocks the event loop.

    Raises:
        ThreadBusyError: Another run, in this process or another, holds the thread.
    """
    thread = str(thread_id)
    if _one_of(saver, _POSTGRES):
        pg = cast("PostgresSaver | AsyncPostgresSaver", saver)
        async with _aadvisory_lock(await _aconninfo(pg), thread):
            yield
    elif (
        sys.platform != "win32"
        and _one_of(saver, _SQLITE)
        and (path := await _adatabase_file(saver))
    ):
        # Local file calls that never wait (`LOCK_NB`): fine on the event loop.
        with _file_lock(path, thread):
            yield
    else:
        with local.holding(saver, thread):
            yield


def _one_of(saver: Saver, classes: tuple[tuple[str, str], ...]) -> bool:
    """Whether `saver` is an instance of one of `classes` (module, name).

    Only imported modules are looked in: a saver of one of these classes means its module
    is imported, and importing a database driver nobody uses would slow the first run.
    """
    for module, name in classes:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(saver, cls):
            return True
    return False


def _digest(thread_id: str) -> bytes:
    """A stable digest of the thread id, apart from anyone else's use of the same names."""
    return hashlib.sha256(f"agentloop-graph thread\0{thread_id}".encode()).digest()


def _lock_key(thread_id: str) -> int:
    """The thread's advisory lock key (a PostgreSQL bigint)."""
    return int.from_bytes(_digest(thread_id)[:8], "big", signed=True)


def _dsn(info: ConnectionInfo) -> str:
    """How to open another connection like the one `info` describes, password included."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(info.dsn, password=info.password or None)


def _conninfo(saver: PostgresSaver | AsyncPostgresSaver) -> str:
    """How to connect to `saver`'s database (a pool lends a connection to find out)."""
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    conn = saver.conn
    if isinstance(conn, ConnectionPool):
        with conn.connection() as lent:
            return _dsn(lent.info)
    if isinstance(conn, AsyncConnectionPool):
        return _on_saver_loop(cast("AsyncPostgresSaver", saver), _aconninfo(saver))
    return _dsn(conn.info)


async def _aconninfo(saver: PostgresSaver | AsyncPostgresSaver) -> str:
    """`_conninfo`, borrowing from an async pool without blocking."""
    from psycopg_pool import AsyncConnectionPool

    if isinstance(saver.conn, AsyncConnectionPool):
        async with saver.conn.connection() as lent:
            return _dsn(lent.info)
    return _conninfo(saver)


@contextmanager
def _advisory_lock(conninfo: str, thread_id: str) -> Iterator[None]:
    """Hold the thread's advisory lock on a connection of our own, closed at the end.

    Advisory locks are re-entrant within a session, so the connection is never shared.
    """
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(_TRY_LOCK, (_lock_key(thread_id),)).fetchone()
        if not (row and row[0]):
            raise ThreadBusyError(thread_id)
        yield


@asynccontextmanager
async def _aadvisory_lock(conninfo: str, thread_id: str) -> AsyncIterator[None]:
    """`_advisory_lock` on an async connection."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute(_TRY_LOCK, (_lock_key(thread_id),))).fetchone()
        if not (row and row[0]):
            raise ThreadBusyError(thread_id)
        yield


def _database_file(saver: Saver) -> str:
    """The file of a SQLite saver's main database; empty for an in-memory one."""
    if not isinstance(getattr(saver, "conn", None), sqlite3.Connection):
        return _on_saver_loop(cast("AsyncSqliteSaver", saver), _adatabase_file(saver))
    sync = cast("SqliteSaver", saver)
    with sync.lock:
        rows = sync.conn.execute("PRAGMA database_list").fetchall()
    return _main_file(rows)


async def _adatabase_file(saver: Saver) -> str:
    """`_database_file` through an async saver's connection."""
    if isinstance(getattr(saver, "conn", None), sqlite3.Connection):
        return _database_file(saver)
    async_saver = cast("AsyncSqliteSaver", saver)
    await async_saver.setup()  # the connection may not be open before the saver's first use
    async with async_saver.lock, async_saver.conn.execute("PRAGMA database_list") as cursor:
        rows = await cursor.fetchall()
    return _main_file(rows)


def _main_file(rows: Any) -> str:
    """The main database's file among `PRAGMA database_list` rows (seq, name, file)."""
    file: str = next(row[2] for row in rows if row[1] == "main")
    return file


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
        except BlockingIOError:
            os.close(fd)
            raise ThreadBusyError(thread_id) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(fd)):
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _on_saver_loop(saver: AsyncPostgresSaver | AsyncSqliteSaver, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on an async saver's event loop from a blocking run, as the saver's own
    blocking methods do (from another thread only).

    Raises:
        asyncio.InvalidStateError: Called on the saver's event loop, where waiting would hang.
    """
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
