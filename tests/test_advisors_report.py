"""``tradebot advisors report`` (issue 13): counterfactual ledgers checked against hand-computed P&L, the
verdict in words, the sample-size warning and the empty case — the real CLI over real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.conftest import run_cli
from tradebot.models import AdvisorResult, Candle, Decision, GateResult, Market, Position
from tradebot.store.candles import save_candles
from tradebot.store.decisions import CycleContext, record_decision

BTC = Market("KRW-BTC")
T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
# (hour, open, close): the buy of 10:05 fills at 11:00's open, the sell of 12:05 at 13:00's open.
BARS = [(0, "9900000", "10000000"), (1, "10000000", "10500000"), (2, "10500000", "10800000"),
        (3, "11000000", "11000000"), (4, "11000000", "10900000"), (5, "10900000", "11000000")]


def record(conn: Any, hour: int, advisor: str, role: str, action: str, coin: str, price: str,
           cost: str = "0", confidence: str = "0.9", fraction: str = "1") -> None:
    position = Position(BTC, Decimal(1_000_000) - Decimal(coin) * Decimal(price), Decimal(0), Decimal(coin),
                        Decimal(coin), Decimal(0), Decimal(price))
    result = AdvisorResult(advisor=advisor, model=None, decision=Decision(action, Decimal(confidence), Decimal(fraction), "t"),  # type: ignore[arg-type]
                           input_tokens=1000 if cost != "0" else 0, cost_usd=Decimal(cost))
    ctx = CycleContext(market=BTC, mode="paper", advisor=advisor, dry_run=False, position=position, role=role)
    did = record_decision(conn, ctx, result, GateResult("hold"))
    conn.execute("UPDATE decisions SET created_at = %s WHERE id = %s", (T0 + timedelta(hours=hour, minutes=5), did))


@pytest.fixture
def env(tb_env: dict[str, str], db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        save_candles(conn, BTC, "minute60", [Candle(T0 + timedelta(hours=h), Decimal(o), max(Decimal(o), Decimal(c)),
                                                    min(Decimal(o), Decimal(c)), Decimal(c), Decimal(1)) for h, o, c in BARS])
        record(conn, 0, "rules", "acting", "buy", "0", "10000000", fraction="0.5")
        record(conn, 0, "hold", "shadow", "hold", "0", "10000000")
        record(conn, 0, "buy_and_hold", "shadow", "buy", "0", "10000000")
        record(conn, 0, "claude", "shadow", "hold", "0", "10000000", cost="0.01")
        record(conn, 2, "rules", "acting", "sell", "0.005", "10800000")
        record(conn, 2, "hold", "shadow", "hold", "0.005", "10800000")
        record(conn, 2, "buy_and_hold", "shadow", "buy", "0.005", "10800000")
        record(conn, 2, "claude", "shadow", "hold", "0.005", "10800000", cost="0.01")
    return {**tb_env, "TRADEBOT_USD_KRW": "1400"}


def report(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = run_cli(["advisors", "report", "--format", "json", *args], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_ledgers_equal_hand_computed_pnl(env: dict[str, str]) -> None:
    assert run_cli(["advisors", "score", "--no-refresh"], env).returncode == 0
    got = report(env)
    rows = {r["advisor"]: r for r in got["rows"]}
    assert list(rows) == ["acting", "claude", "rules", "buy_and_hold", "hold"]
    # rules: 50,000 KRW (the order cap) at 10,000,000 → 0.005 BTC for 50,000 + 25 fee; sold at 11,000,000:
    # 55,000 − 27.5 fee. 54,972.5 − 50,025 = +4,947.5 → 4,948 KRW (whole KRW).
    assert rows["rules"]["pnl_krw"] == rows["acting"]["pnl_krw"] == "4948"
    assert rows["rules"]["fills"] == 2 and rows["rules"]["max_drawdown"] == "0.0"
    # buy_and_hold: the same first buy, then 50,000 more at 11,000,000 → 0.00454545 BTC (49,999.95 + 24.999975
    # fee); 0.00954545 BTC at the last close 11,000,000 = 104,999.95 + 899,950.050025 KRW left → +4,950.000025.
    assert rows["buy_and_hold"]["pnl_krw"] == "4950" and rows["buy_and_hold"]["fills"] == 2
    assert rows["hold"]["pnl_krw"] == "0" and rows["claude"]["pnl_krw"] == "0"
    assert Decimal(rows["rules"]["pnl_pct"]) == Decimal("0.004948")
    assert rows["claude"]["cost_usd"] == "0.02" and rows["claude"]["cost_krw"] == "28.00"
    assert rows["claude"]["cost_per_decision_usd"] == "0.01"
    # Scores: the buy's +1 h price (11:00 → the 10:00 close) equals its price, a miss; the holds were right.
    assert rows["rules"]["hit_rate_1h"] == "0" and rows["hold"]["hit_rate_1h"] == "1"
    assert rows["hold"]["hit_rate_24h"] is None  # not scorable yet: no figure, not a zero
    assert got["verdicts"] == [
        "claude vs rules: -4,948 KRW over 2 hours, 2 decisions, for 0.02 USD (28 KRW) of model usage — net -4,976 KRW",
        "claude vs buy_and_hold: -4,950 KRW over 2 hours, 2 decisions, for 0.02 USD (28 KRW) of model usage — net -4,978 KRW",
        "claude vs hold: +0 KRW over 2 hours, 2 decisions, for 0.02 USD (28 KRW) of model usage — net -28 KRW"]
    assert all("too small a sample" in w for w in got["warnings"]) and len(got["warnings"]) == 3


def test_table_csv_and_the_empty_case(env: dict[str, str]) -> None:
    table = run_cli(["advisors", "report"], env)
    assert table.returncode == 0, table.stderr
    assert "claude vs rules: -4,948 KRW over 2 hours" in table.stdout and "too small a sample" in table.stdout
    assert "KRW-BTC  buy_and_hold" in table.stdout
    csv = run_cli(["advisors", "report", "--format", "csv"], env)
    assert csv.stdout.splitlines()[0].startswith("market,advisor,reflection,decisions,buys")
    assert len(csv.stdout.splitlines()) == 6
    empty = run_cli(["advisors", "report", "--since", "2027-01-01"], env)
    assert empty.returncode == 0
    assert empty.stdout.strip() == ("No decisions recorded for any market (paper) in this period: run some cycles first "
                                    "(`tradebot run-cycle`).")
    other = run_cli(["advisors", "report", "--market", "KRW-ETH"], env)
    assert other.stdout.startswith("No decisions recorded for KRW-ETH (paper)")
