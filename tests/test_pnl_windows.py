"""``pnl --since`` starts from a day snapshot (issue 12) and must report exactly what replaying the whole ledger
reports — for any window, after new trades, and after an old trade is corrected (which deletes the later
snapshots). Real PostgreSQL; the reference is :func:`tradebot.pnl.report` over every trade."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tradebot.app.reports import pnl_reports
from tradebot.config import load_settings
from tradebot.models import LedgerEntry
from tradebot.pnl import report

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PRICE = Decimal(100_000_000)


def seed(db_url: str, n: int, rng: random.Random, start: datetime = T0, tag: str = "a") -> None:
    """``n`` completed trades of KRW-BTC in both modes over about ``n / 6`` days, with full closes, partial
    sells and sells beyond the recorded position."""
    held = {"paper": Decimal(0), "live": Decimal(0)}
    price = Decimal(90_000_000)
    rows = []
    at = start
    for i in range(n):
        at += timedelta(minutes=rng.choice([7, 60, 240, 600]))
        mode = rng.choice(["paper", "live"])
        price = (price * Decimal(1 + rng.gauss(0, 0.01))).quantize(Decimal(1000))
        if held[mode] > 0 and rng.random() < 0.45:
            amount = held[mode] if rng.random() < 0.5 else (held[mode] * Decimal("0.37")).quantize(Decimal("1e-8"))
            if rng.random() < 0.1:
                amount += Decimal("0.0001")  # coins bought outside the bot
            side = "sell"
            held[mode] = max(held[mode] - amount, Decimal(0))
        else:
            amount = (Decimal(rng.randrange(5000, 60000)) / price).quantize(Decimal("1e-8"))
            side = "buy"
            held[mode] += amount
        total = price * amount
        rows.append((f"tb-{tag}-{i:06d}", f"u-{tag}-{i:06d}", "KRW-BTC", side, mode, "completed", price, amount, total,
                     (total * Decimal("0.0005")).quantize(Decimal("1e-8")), total.quantize(Decimal(1)) if side == "buy" else None,
                     amount if side == "sell" else None, at, at))
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, "
                        "fee, requested_krw, requested_volume, created_at, updated_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


def reference(db_url: str, since: datetime, until: datetime | None, detail: bool) -> list[dict[str, object]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT mode, created_at, side, price, amount, total, fee, trade_id, recovered FROM trades "
                            "WHERE status = 'completed' AND (%s::timestamptz IS NULL OR created_at < %s) "
                            "ORDER BY mode, created_at, id", (until, until)).fetchall()
    out = []
    for mode in ("live", "paper"):
        entries = [LedgerEntry(*r[1:]) for r in rows if r[0] == mode]
        if entries:
            out.append(vars(report("KRW-BTC", mode, entries, price=PRICE, price_source="--at", since=since, until=until,
                                   detail=detail)))
    return out


def windowed(db_url: str, tmp_path: Path, since: datetime, until: datetime | None, detail: bool) -> list[dict[str, object]]:
    settings = load_settings(None, environ={"DATABASE_URL": db_url, "TRADEBOT_STATE_DIR": str(tmp_path)})
    reports, _, notes = pnl_reports(settings, symbol=None, mode=None, since=since, until=until, at=PRICE, by=None,
                                    detail=detail)
    assert notes == []
    return [vars(r) for r in reports]


def snapshots(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM pnl_snapshots").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("seed_no", [1, 2])
def test_every_window_equals_the_whole_replay(db_url: str, tmp_path: Path, seed_no: int) -> None:
    rng = random.Random(seed_no)
    seed(db_url, 400, rng)
    end = T0 + timedelta(days=80)
    windows = [(T0 - timedelta(days=3), None), (T0 + timedelta(days=10, hours=5), None),
               (T0 + timedelta(days=20), T0 + timedelta(days=50, minutes=7)), (end, None), (end + timedelta(days=90), None)]
    windows += [(T0 + timedelta(minutes=rng.randrange(0, 80 * 24 * 60)), None) for _ in range(4)]
    for k, (since, until) in enumerate(windows):
        detail = k % 2 == 0
        assert windowed(db_url, tmp_path, since, until, detail) == reference(db_url, since, until, detail), (since, until)
    assert snapshots(db_url) > 20  # the windows really started from snapshots

    # New trades after the checkpoint, then an old trade corrected: the snapshots after it are rewritten.
    seed(db_url, 60, rng, start=end + timedelta(days=5), tag="b")
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE trades SET fee = fee + 1000 WHERE client_order_id = 'tb-a-000050'")
        conn.execute("DELETE FROM trades WHERE client_order_id = 'tb-a-000200'")
    for since, until in windows[:4]:
        assert windowed(db_url, tmp_path, since, until, True) == reference(db_url, since, until, True), (since, until)
