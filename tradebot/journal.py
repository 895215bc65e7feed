"""The fill journal: where a fill goes when the database cannot take it.

When PostgreSQL is unreachable at the moment a fill must be recorded, the fill is appended to
``TRADEBOT_STATE_DIR/journal.jsonl`` (one JSON object per line, written with ``O_APPEND`` and fsync'd,
directory included) and the run fails with an alert. The next run that reaches the database replays the
journal before anything else: each entry completes its ``pending`` row exactly as the cycle would have
(a row already completed — e.g. by reconciliation from the exchange — is left as it is), and the journal
is then rewritten without the replayed entries (atomic rename). For paper trades the journal is the only
record of the fill, since the paper "exchange" is this process.

Appends and replays hold an exclusive ``flock`` on ``journal.lock``: the state directory is shared by the
cycles of every ticker and mode, and a replay must never delete an entry appended after it read the file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.models import Fill, OrderState
from tradebot.store.db import queries

if TYPE_CHECKING:
    import psycopg

FILE = "journal.jsonl"
LOCK = "journal.lock"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Hold the journal's exclusive lock (released when the descriptor closes, or the process dies)."""
    state_dir.mkdir(parents=True, exist_ok=True)
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


def append(state_dir: Path, client_order_id: str, fill: Fill, mode: str) -> Path:
    """Durably append one fill; returns the journal's path. Raises OSError when even that fails."""
    path = state_dir / FILE
    line = json.dumps({"client_order_id": client_order_id, "mode": mode, "fill": fill_to_json(fill)}) + "\n"
    with _locked(state_dir):
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # a torn last line (crash mid-write) must not swallow this entry
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(state_dir)
    return path


def entries(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line from a crash mid-write: its fill is also on the exchange (live)
    return out


def replay(state_dir: Path, conn: psycopg.Connection[Any]) -> list[str]:
    """Apply every journaled fill to its row; returns one line per entry. Empties the journal."""
    from tradebot.store.trades import apply_fill

    if not (state_dir / FILE).exists():
        return []
    with _locked(state_dir):
        items = entries(state_dir)  # read again under the lock: nothing can be appended until we are done
        lines = []
        for item in items:
            fill = fill_from_json(item["fill"])
            status = apply_fill(conn, item["client_order_id"], fill)
            if status == "missing" and fill.filled and item.get("mode") in ("paper", "live"):
                # The pending row is gone (e.g. a database restored from a backup): the journal is the record.
                conn.execute(queries("trades")["insert_recovered"], {
                    "client_order_id": item["client_order_id"], "trade_id": fill.uuid, "symbol": fill.market,
                    "side": fill.side, "mode": item["mode"], "price": fill.avg_price, "amount": fill.volume,
                    "total": fill.gross, "fee": fill.fee, "created_at": fill.created_at})
                status = "recovered"
            lines.append(f"{item['client_order_id']}: replayed from the journal → {status}")
        path = state_dir / FILE
        if path.exists():
            path.unlink()
            _fsync_dir(state_dir)
    return lines
