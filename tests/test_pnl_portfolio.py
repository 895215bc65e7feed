"""``pnl`` over several markets (issue 12): a PORTFOLIO row per mode beside each market's — the sums, a win rate
over every sell, and the drawdown of the portfolio's P&L curve marked daily — checked against hand-computed
figures; ``--by day`` adds one total row per day. Real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from tradebot.app.reports import pnl_reports
from tradebot.config import load_settings
from tradebot.pnl import PORTFOLIO

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)
FEE = Decimal("0.0005")


def trade(i: int, symbol: str, side: str, price: int, amount: str, day: int) -> tuple[object, ...]:
    at = T0 + timedelta(days=day, minutes=i)
    volume = Decimal(amount)
    total = Decimal(price) * volume
    return (f"tb-p-{i:04d}", f"u-p-{i:04d}", symbol, side, "paper", "completed", Decimal(price), volume, total, total * FEE,
            total if side == "buy" else None, volume if side == "sell" else None, at, at)


def seed(db_url: str) -> None:
    rows = [
        trade(1, "KRW-BTC", "buy", 100_000, "1", 0),   # day 0: BTC bought at 100,000
        trade(2, "KRW-ETH", "buy", 10_000, "5", 0),    # day 0: ETH 5 at 10,000
        trade(3, "KRW-BTC", "sell", 90_000, "1", 1),   # day 1: BTC sold at a loss
        trade(4, "KRW-ETH", "sell", 12_000, "5", 2),   # day 2: ETH sold at a profit
    ]
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, "
                        "fee, requested_krw, requested_volume, created_at, updated_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


def settings(db_url: str, tmp_path: Path) -> object:
    return load_settings(None, {"DATABASE_URL": db_url, "TRADEBOT_STATE_DIR": str(tmp_path / "state"),
                                "UPBIT_API_URL": "http://127.0.0.1:9"})


def test_the_portfolio_row_sums_the_markets_and_marks_its_curve_daily(db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    reports, _, _ = pnl_reports(settings(db_url, tmp_path), symbol=None, mode=None, since=None, until=None,  # type: ignore[arg-type]
                                at=None, by=None)
    by = {r.symbol: r for r in reports}
    assert list(by) == ["KRW-BTC", "KRW-ETH", PORTFOLIO]
    btc, eth, total = by["KRW-BTC"], by["KRW-ETH"], by[PORTFOLIO]
    # Hand-computed: BTC cost 100,050, proceeds 90,000 − 45 → −10,095; ETH cost 50,025, proceeds 60,000 − 30 → +9,945.
    assert btc.realized_pnl == Decimal(-10095) and eth.realized_pnl == Decimal(9945)
    assert total.realized_pnl == Decimal(-150) and total.fees == btc.fees + eth.fees == Decimal(50 + 45 + 25 + 30)
    assert (total.trades, total.buys, total.sells) == (4, 2, 2) and total.win_rate == Decimal("0.5")
    assert total.unrealized_pnl == 0 and total.total_pnl == Decimal(-150)
    # Daily marks: start of day 0 nothing held: 0; day 1 BTC marked at its last fill 100,000 → −50, ETH at
    # 10,000 → −25: −75; day 2 BTC realized −10,095, ETH still −25: −10,120; now −150. Peak 0 → −10,120.
    assert total.max_drawdown == Decimal(10120)
    assert total.best_trade == Decimal(9945) and total.worst_trade == Decimal(-10095)


def test_by_day_adds_a_total_row_per_day_and_one_market_has_no_total(db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    s = settings(db_url, tmp_path)
    _, rows, _ = pnl_reports(s, symbol=None, mode="paper", since=None, until=None, at=None, by="day")  # type: ignore[arg-type]
    totals = [(r.period, r.realized_pnl, r.buys, r.sells) for r in rows if r.symbol == PORTFOLIO]
    assert totals == [("2026-03-01", Decimal(0), 2, 0), ("2026-03-02", Decimal(-10095), 0, 1),
                      ("2026-03-03", Decimal(9945), 0, 1)]
    reports, rows, _ = pnl_reports(s, symbol="KRW-BTC", mode=None, since=None, until=None, at=None, by="day")  # type: ignore[arg-type]
    assert [r.symbol for r in reports] == ["KRW-BTC"] and all(r.symbol != PORTFOLIO for r in rows)
