"""``tradebot pnl`` against a hand-computed ledger (every figure below was worked out by hand).

Ledger (KRW-BTC, paper), average-cost method, fees on both sides:

| # | day   | side | price   | amount | total  | fee   | after: volume | cost basis | realized        |
|---|-------|------|---------|--------|--------|-------|---------------|------------|-----------------|
| 1 | 11-01 | buy  | 100,000 | 0.5    | 50,000 | 25    | 0.5           | 50,025     |                 |
| 2 | 11-01 | buy  | 120,000 | 0.5    | 60,000 | 30    | 1.0           | 110,055    |                 |
| 3 | 11-02 | sell | 130,000 | 0.4    | 52,000 | 26    | 0.6           | 66,033     | 51,974−44,022 = 7,952 |
| 4 | 11-03 | sell | 100,000 | 0.6    | 60,000 | 30    | 0             | 0          | 59,970−66,033 = −6,063 |
| 5 | 11-10 | buy  | 90,000  | 0.2    | 18,000 | 9     | 0.2           | 18,009     |                 |
| 6 | 11-10 | sell (recovered) | 95,000 | 0.1 | 9,500 | 4.75 | 0.1       | 9,004.5    | 9,495.25−9,004.5 = 490.75 |

At 100,000: unrealized 10,000 − 9,004.5 = 995.5; realized 2,379.75; total 3,375.25; fees 124.75.
P&L curve at each fill: −25, 9,945, 19,919, 1,889, 1,880, 2,875.25, then 3,375.25 → max drawdown 19,919 − 1,880 = 18,039.
Buy and hold: the largest cost basis, 110,055, bought at 100,000 with the fee = 1.1 coin, sold at 100,000 minus
the fee = 109,945 → −110.
"""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest

from tests.conftest import run_cli

ROWS = [
    ("tb-ledger-01", "buy", "100000", "0.5", "50000", "25", "2026-11-01T01:00:00Z", False),
    ("tb-ledger-02", "buy", "120000", "0.5", "60000", "30", "2026-11-01T02:00:00Z", False),
    ("tb-ledger-03", "sell", "130000", "0.4", "52000", "26", "2026-11-02T01:00:00Z", False),
    ("tb-ledger-04", "sell", "100000", "0.6", "60000", "30", "2026-11-03T01:00:00Z", False),
    ("tb-ledger-05", "buy", "90000", "0.2", "18000", "9", "2026-11-10T01:00:00Z", False),
    ("tb-ledger-06", "sell", "95000", "0.1", "9500", "4.75", "2026-11-10T02:00:00Z", True),
]


@pytest.fixture
def ledger_env(tb_env: dict[str, str], db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        for i, (cid, side, price, amount, total, fee, at, recovered) in enumerate(ROWS):
            conn.execute(
                """INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
                                       requested_krw, requested_volume, recovered, created_at)
                   VALUES (%s, %s, 'KRW-BTC', %s, 'paper', 'completed', %s, %s, %s, %s, %s, %s, %s, %s)""",
                (cid, f"uuid-{i}", side, Decimal(price), Decimal(amount), Decimal(total), Decimal(fee),
                 None if recovered or side == "sell" else Decimal(total),
                 None if recovered or side == "buy" else Decimal(amount), recovered, at))
        # Rows that must not count: failed, pending, and another mode.
        conn.execute("""INSERT INTO trades (client_order_id, symbol, side, mode, status, requested_krw, error)
                        VALUES ('tb-ledger-07', 'KRW-BTC', 'buy', 'paper', 'failed', 5000, 'rejected'),
                               ('tb-ledger-08', 'KRW-BTC', 'buy', 'paper', 'pending', 5000, NULL)""")
    return tb_env


D = Decimal


def test_pnl_json_matches_the_hand_computed_ledger(ledger_env: dict[str, str]) -> None:
    out = run_cli(["pnl", "--format", "json", "--at", "100000"], ledger_env)
    assert out.returncode == 0, out.stderr
    [r] = json.loads(out.stdout)
    detailed = run_cli(["pnl", "--format", "json", "--at", "100000", "--detail"], ledger_env)
    [d] = json.loads(detailed.stdout)
    assert {k: v for k, v in d.items() if k != "sells_detail"} == r  # checkpoint path == full replay
    expected = {
        "symbol": "KRW-BTC", "mode": "paper", "trades": 6, "buys": 3, "sells": 3,
        "position_volume": D("0.1"), "average_cost": D("90045"), "cost_basis": D("9004.5"),
        "price": D("100000"), "price_source": "--at",
        "unrealized_pnl": D("995.5"), "realized_pnl": D("2379.75"), "total_pnl": D("3375.25"),
        "fees": D("124.75"), "round_trips": 1, "win_rate": D(2) / D(3),
        "best_trade": D("7952"), "worst_trade": D("-6063"), "unmatched_volume": D(0),
        "max_drawdown": D("18039"), "capital": D("110055"), "return_on_capital": D("3375.25") / D("110055"),
        "buy_hold_pnl": D("-110"), "buy_hold_return": D("-110") / D("110055"),
    }
    for key, want in expected.items():
        have = r[key]
        assert (D(have) if isinstance(want, Decimal) else have) == want, key
        if isinstance(want, Decimal):
            assert isinstance(have, str), f"{key} must be an exact decimal string"
    assert [(D(s["pnl"]), s["trade_id"]) for s in d["sells_detail"]] == [
        (D("7952"), "uuid-2"), (D("-6063"), "uuid-3"), (D("490.75"), "uuid-5")]


def test_pnl_window_and_periods(ledger_env: dict[str, str]) -> None:
    out = run_cli(["pnl", "--format", "json", "--at", "100000", "--since", "2026-11-03"], ledger_env)
    [r] = json.loads(out.stdout)
    # Trades before the window build the position (average cost) but are not counted.
    assert (r["trades"], r["sells"], D(r["realized_pnl"]), D(r["fees"])) == (3, 2, D("-5572.25"), D("43.75"))
    out = run_cli(["pnl", "--format", "csv", "--at", "100000", "--by", "day"], ledger_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "period,symbol,mode,realized_pnl,fees,buys,sells,bought_volume,sold_volume",
        "2026-11-01,KRW-BTC,paper,0,55,2,0,1.0,0",
        "2026-11-02,KRW-BTC,paper,7952.0,26,0,1,0,0.4",
        "2026-11-03,KRW-BTC,paper,-6063.0,30,0,1,0,0.6",
        "2026-11-10,KRW-BTC,paper,490.75,13.75,1,1,0.2,0.1",
    ]
    out = run_cli(["pnl", "--format", "json", "--at", "100000", "--by", "month"], ledger_env)
    [month] = json.loads(out.stdout)["periods"]
    assert (month["period"], D(month["realized_pnl"]), D(month["fees"])) == ("2026-11", D("2379.75"), D("124.75"))


def test_pnl_table_and_errors(ledger_env: dict[str, str]) -> None:
    out = run_cli(["pnl", "--at", "100000"], ledger_env)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert "realized P&L       2,380 KRW" in lines and "max drawdown       18,039 KRW" in lines
    assert "total P&L          3,375 KRW (+3.07 % on 110,055 KRW of capital)" in lines
    assert run_cli(["pnl", "--at", "-1"], ledger_env).returncode == 2
    empty = run_cli(["pnl", "--mode", "live", "--format", "json"], ledger_env)
    assert empty.returncode == 0 and empty.stdout.strip() == "[]"


def test_pnl_without_price_falls_back_to_the_last_fill_with_a_note(ledger_env: dict[str, str]) -> None:
    from tradebot.infra.localpg import free_port

    out = run_cli(["pnl", "--format", "json"], {**ledger_env, "UPBIT_API_URL": f"http://127.0.0.1:{free_port()}"})
    assert out.returncode == 0, out.stderr
    [r] = json.loads(out.stdout)
    assert r["price_source"] == "last fill" and D(r["price"]) == D("95000")
    assert "note: KRW-BTC: the exchange is unreachable" in out.stderr


def test_sell_beyond_recorded_position_is_unmatched() -> None:
    from datetime import UTC, datetime

    from tradebot.pnl import LedgerEntry, replay

    t = datetime(2026, 11, 1, tzinfo=UTC)
    ledger = replay([LedgerEntry(t, "buy", D(100), D(1), D(100), D("0.05")),
                     LedgerEntry(t, "sell", D(110), D(2), D(220), D("0.11"))])
    [sell] = ledger.realized
    # Half of the sell is matched: proceeds (220 − 0.11) / 2 = 109.945, cost 100.05 → 9.895.
    assert sell.unmatched_volume == D(1) and sell.pnl == D("9.895") and ledger.volume == 0


def test_checkpoints_follow_new_recovered_and_corrected_trades(ledger_env: dict[str, str], db_url: str) -> None:
    def both() -> tuple[dict[str, object], dict[str, object]]:
        fast = json.loads(run_cli(["pnl", "--format", "json", "--at", "100000"], ledger_env).stdout)[0]
        full = json.loads(run_cli(["pnl", "--format", "json", "--at", "100000", "--detail"], ledger_env).stdout)[0]
        full.pop("sells_detail")
        return fast, full

    fast, full = both()
    assert fast == full
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pnl_checkpoints").fetchone() == (1,)
        # A later trade: replayed on top of the checkpoint.
        conn.execute("""INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total,
                        fee, requested_volume, created_at) VALUES ('tb-ledger-09', 'uuid-9', 'KRW-BTC', 'sell', 'paper',
                        'completed', 110000, 0.05, 5500, 2.75, 0.05, '2026-11-11T00:00:00Z')""")
    fast, full = both()
    assert fast == full and D(fast["realized_pnl"]) == D("2379.75") + D("5497.25") - D("4502.25")
    with psycopg.connect(db_url) as conn:
        # A recovered trade dated before the checkpoint, then a correction: the checkpoint must not be trusted.
        conn.execute("""INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total,
                        fee, recovered, created_at) VALUES ('tb-ledger-10', 'uuid-10', 'KRW-BTC', 'buy', 'paper',
                        'completed', 80000, 0.1, 8000, 4, true, '2026-11-05T00:00:00Z')""")
        assert conn.execute("SELECT count(*) FROM pnl_checkpoints").fetchone() == (0,)
    fast, full = both()
    assert fast == full
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE trades SET fee = 5 WHERE client_order_id = 'tb-ledger-01'")
    fast2, full2 = both()
    assert fast2 == full2 and D(fast2["fees"]) == D(fast["fees"]) - D(25) + D(5)


def test_a_full_close_realizes_the_whole_remaining_cost(tb_env: dict[str, str], db_url: str) -> None:
    """Buy 3 for 10, sell 1 for 4, sell 2 for 8, no fees (issue 10, found by exact rational arithmetic):

    | # | side | amount | total | after: volume | cost basis   | realized            |
    |---|------|--------|-------|---------------|--------------|---------------------|
    | 1 | buy  | 3      | 10    | 3             | 10           |                     |
    | 2 | sell | 1      | 4     | 2             | 20/3         | 4 − 10/3 = 2/3      |
    | 3 | sell | 2      | 8     | 0             | 0            | 8 − 20/3 = 4/3      |

    Realized: exactly 2. 10/3 has no exact decimal, so the second sell must take the whole remaining cost basis
    (not 2 × its rounded average cost, which left 1.999999999999999999999999999).
    """
    from datetime import UTC, datetime, timedelta

    from tradebot.pnl import Accumulator, LedgerEntry, periods, replay, report

    t = datetime(2026, 11, 1, tzinfo=UTC)
    entries = [LedgerEntry(t, "buy", D(10) / D(3), D(3), D(10), D(0), "b1"),
               LedgerEntry(t + timedelta(hours=1), "sell", D(4), D(1), D(4), D(0), "s1"),
               LedgerEntry(t + timedelta(hours=2), "sell", D(4), D(2), D(8), D(0), "s2")]
    ledger = replay(entries)
    assert ledger.realized_pnl == 2 and sum(r.pnl for r in ledger.realized) == 2
    assert (ledger.volume, ledger.cost, ledger.round_trips) == (0, 0, 1)
    assert report("KRW-BTC", "paper", entries, price=D(4), price_source="--at").realized_pnl == 2
    assert periods("KRW-BTC", "paper", entries, "day")[0].realized_pnl == 2
    # The checkpointed accumulator (state saved as JSON after the first sell) gives the same.
    acc = Accumulator()
    for e in entries[:2]:
        acc.apply(e)
    restored = Accumulator.from_json(json.loads(json.dumps(acc.to_json())))
    restored.apply(entries[2])
    r = restored.report("KRW-BTC", "paper", price=D(4), price_source="--at")
    assert r.realized_pnl == 2 and r.cost_basis == 0 and r.total_pnl == 2

    # And through the command: a checkpoint after the first sell, then the closing sell on top of it.
    def insert(i: int, side: str, amount: str, total: str, price: str) -> None:
        with psycopg.connect(db_url) as conn:
            conn.execute(
                """INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
                                       requested_krw, requested_volume, created_at)
                   VALUES (%s, %s, 'KRW-BTC', %s, 'paper', 'completed', %s, %s, %s, 0, %s, %s, %s)""",
                (f"tb-close-{i}", f"uuid-close-{i}", side, D(price), D(amount), D(total),
                 D(total) if side == "buy" else None, D(amount) if side == "sell" else None,
                 t + timedelta(hours=i)))

    insert(0, "buy", "3", "10", "3.3333333333")
    insert(1, "sell", "1", "4", "4")
    first = run_cli(["pnl", "--format", "json", "--at", "4"], tb_env)
    assert first.returncode == 0, first.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pnl_checkpoints").fetchone() == (1,)
    insert(2, "sell", "2", "8", "4")
    for args in (["pnl", "--format", "json", "--at", "4"], ["pnl", "--format", "json", "--at", "4", "--detail"]):
        out = run_cli(args, tb_env)
        assert out.returncode == 0, out.stderr
        [got] = json.loads(out.stdout)
        assert D(got["realized_pnl"]) == 2 and D(got["total_pnl"]) == 2 and D(got["cost_basis"]) == 0, got
