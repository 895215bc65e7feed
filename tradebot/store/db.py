"""Connecting to PostgreSQL, creating and upgrading the schema, and checking its version.

Only the ``store`` package speaks SQL, and all of its SQL text lives in ``sql/``: ``schema.sql`` (the
current schema), ``migrations/NNNN_*.sql`` (one file per version), and ``queries/*.sql`` (named,
parameterized statements, see :func:`queries`).
"""

from __future__ import annotations

import functools
import re
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from tradebot.errors import SchemaVersionError, StorageError

if TYPE_CHECKING:
    from typing import TypeAlias

    import psycopg


    Connection: TypeAlias = psycopg.Connection[Any]  # what the layers above the store pass around

P = ParamSpec("P")
R = TypeVar("R")


def storage_errors(message: str = "database error: {reason}") -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Every public store function is wrapped in this: a failed database call (the server went away, a
    statement failed) becomes :class:`StorageError` with ``message`` ({reason} is the driver's error class
    name), so nothing above the store needs to know psycopg."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            import psycopg

            try:
                return fn(*args, **kwargs)
            except psycopg.Error as e:
                reason = type(e).__name__
                raise StorageError(message.format(reason=reason), reason=reason) from e
        return guarded
    return wrap


# Keys of PostgreSQL advisory locks (64-bit); fixed so that every tradebot process agrees.
SCHEMA_LOCK_KEY = 0x7472616465626F74  # "tradebot"


def sql_dir() -> Path:
    """``sql/`` of the source tree, or the copy packed into the wheel as ``tradebot/sql``."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "schema.sql").is_file():
            return candidate
    raise StorageError("sql/schema.sql is missing from this installation; reinstall tradebot")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def migrations() -> list[Migration]:
    """Numbered migration files, in order. ``0001`` is the first released schema."""
    found = []
    for path in sorted((sql_dir() / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql")):
        found.append(Migration(int(path.name[:4]), path.stem[5:], path))
    return found


def code_schema_version() -> int:
    """The schema version this code expects: the highest migration number."""
    return migrations()[-1].version


@cache
def queries(name: str) -> dict[str, str]:
    """Named statements of ``sql/queries/<name>.sql``: blocks that start with ``-- name: <key>``."""
    text = (sql_dir() / "queries" / f"{name}.sql").read_text()
    out: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        key, _, body = block.partition("\n")
        out[key.strip()] = body.strip()
    return out


def float8s(packed: bytes | None) -> array[float]:
    """float8 values packed in PostgreSQL's binary form (big-endian, ``float8send``) as native floats."""
    out = array("d", packed or b"")
    if sys.byteorder == "little":
        out.byteswap()
    return out


def describe_target(url: str) -> str:
    """``host:port/dbname`` of a URL, for messages (never the password)."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


def _reason(error: Exception, url: str) -> str:
    """psycopg's message, last line only, with nothing from the URL's password."""
    from psycopg.conninfo import conninfo_to_dict

    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    # psycopg: 'connection failed: connection to server at "h", port p failed: <reason>' then a hint line.
    text = lines[0].rsplit("failed: ", 1)[-1] if lines else type(error).__name__
    password = conninfo_to_dict(url).get("password")
    if password:
        text = text.replace(str(password), "****")
    return text


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """Open a connection; an unreachable server is a StorageError naming host and port.

    The session's time zone is UTC whatever the server's default or ``PGTZ`` say, so every timestamp read
    back (``trades list``, ``pnl`` JSON/CSV) is in UTC as documented.
    """
    import psycopg

    kwargs: dict[str, Any] = {"autocommit": autocommit, "application_name": "tradebot"}
    if "connect_timeout" not in url:
        kwargs["connect_timeout"] = 5
    try:
        conn = psycopg.connect(url, **kwargs)
    except psycopg.Error as e:
        raise StorageError(f"cannot connect to PostgreSQL at {describe_target(url)}: {_reason(e, url)}") from None
    try:
        conn.execute(queries("schema")["session_utc"])
        if not autocommit:
            conn.commit()  # a rolled-back SET would be undone
    except psycopg.Error as e:
        conn.close()
        raise StorageError(f"cannot use PostgreSQL at {describe_target(url)}: {_reason(e, url)}") from None
    return conn


def current_version(conn: psycopg.Connection[Any]) -> int | None:
    """The database's schema version; None when it has no tradebot schema."""
    row = conn.execute(queries("schema")["has_version_table"]).fetchone()
    if not row or not row[0]:
        return None
    row = conn.execute(queries("schema")["current_version"]).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def check_schema(conn: psycopg.Connection[Any]) -> int:
    """Refuse a database whose schema is missing, older or newer than this code."""
    want = code_schema_version()
    have = current_version(conn)
    if have is None:
        raise SchemaVersionError("the database has no tradebot schema: run `tradebot init-db`")
    if have < want:
        raise SchemaVersionError(f"the database schema is version {have}, this tradebot needs {want}: run `tradebot init-db` to upgrade it")
    if have > want:
        raise SchemaVersionError(f"the database schema is version {have}, newer than this tradebot understands ({want}): upgrade tradebot")
    return have


def open_checked(url: str) -> psycopg.Connection[Any]:
    """Connect and check the schema version (what every command that reads or writes data does)."""
    conn = connect(url)
    try:
        check_schema(conn)
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass(frozen=True)
class MigrateResult:
    before: int | None
    after: int
    applied: tuple[str, ...]  # "schema.sql" for a fresh database, else migration file names


def migrate(url: str) -> MigrateResult:
    """Create or upgrade the schema in one transaction under an advisory lock.

    Safe to run concurrently: the second process waits for the lock, then finds nothing to do.
    """
    with connect(url) as conn:
        with conn.transaction():
            conn.execute(queries("schema")["lock"], {"key": SCHEMA_LOCK_KEY})
            before = current_version(conn)
            want = code_schema_version()
            applied: list[str] = []
            if before is None:
                conn.execute((sql_dir() / "schema.sql").read_text().encode())
                applied.append("schema.sql")
            elif before > want:
                raise SchemaVersionError(f"the database schema is version {before}, newer than this tradebot understands ({want}): upgrade tradebot")
            else:
                for m in migrations():
                    if m.version > before:
                        conn.execute(m.path.read_text().encode())
                        applied.append(m.path.name)
            after = current_version(conn)
            if after != want:
                raise StorageError(f"schema files are inconsistent: reached version {after}, expected {want}")
        return MigrateResult(before, want, tuple(applied))


@storage_errors()
def role_is_superuser(conn: psycopg.Connection[Any]) -> bool:
    """Whether this connection's role is a superuser (``doctor``: the bot's role must not be one)."""
    row = conn.execute(queries("embedded")["role_is_superuser"]).fetchone()
    return bool(row and row[0])
