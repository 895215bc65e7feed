"""The fill journal: where a fill goes when the database cannot take it.

When PostgreSQL is unreachable at the moment a fill must be recorded, the fill is appended to
``TRADEBOT_STATE_DIR/journal.jsonl`` (one JSON object per line, written completely with ``O_APPEND`` and
fsync'd, directory included) and the run fails with an alert. :func:`append` returns only once every byte is
on disk; if the line cannot be written whole (a full disk, a size limit, a read-only directory) the file is
cut back to what it was and ``OSError`` is raised, so a caller never reports "saved" for a torn line.

The next run that reaches the database replays the journal before anything else: each entry completes its
``pending`` row exactly as the cycle would have (a row already completed — e.g. by reconciliation from the
exchange — is left as it is), and the journal is then removed. For paper trades the journal is the only
record of the fill, since the paper "exchange" is this process.

A line that cannot be read (torn by a crash mid-write, or damaged) is never dropped: replay moves it,
byte for byte, to ``journal.quarantine.jsonl`` beside the journal, and reports it so that the run alerts and
says what to do. The journal is removed only once the quarantine file holds those lines durably.

Appends and replays hold an exclusive ``flock`` on ``journal.lock``: the state directory is shared by the
cycles of every market and mode, and a replay must never delete an entry appended after it read the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.infra.fsutil import fsync_dir, make_private_dirs, write_all
from tradebot.models import Fill, OrderState, plain

if TYPE_CHECKING:
    from tradebot.store.db import Connection

FILE = "journal.jsonl"
QUARANTINE = "journal.quarantine.jsonl"
LOCK = "journal.lock"


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Hold the journal's exclusive lock (released when the descriptor closes, or the process dies)."""
    make_private_dirs(state_dir)
    fd = os.open(state_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fill_to_json(f: Fill) -> dict[str, Any]:
    return {"uuid": f.uuid, "client_order_id": f.client_order_id, "market": f.market, "side": f.side,
            "state": f.state.value, "volume": str(f.volume), "gross": str(f.gross), "fee": str(f.fee),
            "created_at": f.created_at.isoformat() if f.created_at else None, "resolved": f.resolved}


def fill_from_json(d: dict[str, Any]) -> Fill:
    return Fill(uuid=d["uuid"], client_order_id=d["client_order_id"], market=d["market"], side=d["side"],
                state=OrderState(d["state"]), volume=Decimal(d["volume"]), gross=Decimal(d["gross"]),
                fee=Decimal(d["fee"]), created_at=datetime.fromisoformat(d["created_at"]) if d["created_at"] else None,
                resolved=bool(d["resolved"]))


def describe_fill(client_order_id: str, fill: Fill) -> str:
    """Everything an owner needs to record a fill by hand, on one line."""
    return (f"order {client_order_id} ({fill.uuid or 'no exchange uuid'}): {fill.side} {plain(fill.volume)} "
            f"{fill.market} at average {plain(fill.avg_price)} = {plain(fill.gross)} KRW total, fee {plain(fill.fee)} KRW "
            f"(state {fill.state.value})")


def append(state_dir: Path, client_order_id: str, fill: Fill, mode: str) -> Path:
    """Durably append one fill; returns the journal's path once the whole line is on disk.

    Raises OSError when that cannot be done, after cutting the file back to its previous length so that no
    partial line is left behind.
    """
    path = state_dir / FILE
    line = json.dumps({"client_order_id": client_order_id, "mode": mode, "fill": fill_to_json(fill)}) + "\n"
    with _locked(state_dir):
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            data = line.encode()
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a torn last line (a crash mid-write) must not swallow this entry
            try:
                write_all(fd, data)
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # best effort: replay quarantines whatever remains
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                raise
        finally:
            os.close(fd)
        if created:
            fsync_dir(state_dir)
    return path


@dataclass(frozen=True)
class Damaged:
    """A journal line that cannot be read back: its line number and exact text."""

    line: int
    text: str

    def client_order_id(self) -> str | None:
        m = re.search(r"tb-[0-9A-Za-z-]{4,60}", self.text)
        return m.group(0) if m else None


def _parse(raw: str) -> dict[str, Any]:
    """One journal line as an entry; ValueError (or KeyError/TypeError) when it is not a complete one."""
    item = json.loads(raw)
    if not isinstance(item, dict) or not isinstance(item.get("client_order_id"), str):
        raise ValueError("not a journal entry")
    fill_from_json(item["fill"])  # every field present and well-formed
    return item


def read(state_dir: Path) -> tuple[list[dict[str, Any]], list[Damaged]]:
    """The journal's readable entries, in order, and its damaged lines."""
    path = state_dir / FILE
    if not path.exists():
        return [], []
    good: list[dict[str, Any]] = []
    bad: list[Damaged] = []
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    for n, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            good.append(_parse(raw))
        except (ValueError, KeyError, TypeError, ArithmeticError):
            bad.append(Damaged(n, raw))
    return good, bad


def entries(state_dir: Path) -> list[dict[str, Any]]:
    """The journal's readable entries (``reconcile --dry-run`` lists them)."""
    return read(state_dir)[0]


def damaged_note(state_dir: Path, d: Damaged) -> str:
    """What a damaged line means and what the owner should do about it."""
    cid = d.client_order_id()
    order = f"order {cid}" if cid else "an order"
    return (f"journal line {d.line} could not be read (torn by a crash or damaged) and was moved to "
            f"{state_dir / QUARANTINE}: it held the fill of {order}. A live order is recovered from Upbit by "
            "`tradebot reconcile`; a paper fill cannot be recovered — compare the line with the alert of the run "
            "that wrote it, record it by hand if you need it, then delete the quarantine file")


def _quarantine(state_dir: Path, bad: list[Damaged]) -> Path:
    """Append the damaged lines, unchanged, to the quarantine file (durably). Raises OSError."""
    path = state_dir / QUARANTINE
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        write_all(fd, "".join(d.text + "\n" for d in bad).encode("utf-8", errors="surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(state_dir)
    return path


def replay(state_dir: Path, conn: Connection, *, damaged: list[str] | None = None) -> list[str]:
    """Apply every journaled fill to its row; returns one line per entry. Empties the journal.

    Damaged lines are moved to the quarantine file, never dropped; a note for each (what it was, what to
    do) is appended to ``damaged`` so the caller can alert. If the quarantine cannot be written the journal
    is left exactly as it was (and OSError is raised).
    """
    from tradebot.store.trades import apply_fill, insert_recovered

    if not (state_dir / FILE).exists():
        return []
    with _locked(state_dir):
        items, bad = read(state_dir)  # read again under the lock: nothing can be appended until we are done
        lines = []
        for item in items:
            fill = fill_from_json(item["fill"])
            status = apply_fill(conn, item["client_order_id"], fill)
            if status == "missing" and fill.filled and item.get("mode") in ("paper", "live"):
                # The pending row is gone (e.g. a database restored from a backup): the journal is the record.
                insert_recovered(conn, item["client_order_id"], fill, item["mode"])
                status = "recovered"
            lines.append(f"{item['client_order_id']}: replayed from the journal → {status}")
        if bad:
            _quarantine(state_dir, bad)
            if damaged is not None:
                damaged.extend(damaged_note(state_dir, d) for d in bad)
        path = state_dir / FILE
        if path.exists():
            path.unlink()
            fsync_dir(state_dir)
    return lines
