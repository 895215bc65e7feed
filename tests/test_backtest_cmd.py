"""``tradebot backtest`` (issue 6): the rule strategy through the live risk gate over hourly candles — from a
CSV, or from the exchange (the local Upbit simulator) through the ``candles`` cache — and ``--compare-live``
over databases filled by real paper cycles and by hand. The CLI runs as a subprocess against a real
PostgreSQL; figures are checked against ``run_backtest`` called directly."""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.conftest import ROOT, run_cli
from tradebot.backtest.csv import read_candles_csv
from tradebot.backtest.simulate import _GateSizer, backtest_candles
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer
from tradebot.market import strategy
from tradebot.market.engine import run_backtest
from tradebot.models import AdvisorInput, Candle, Decision, IndicatorSnapshot, Position
from tradebot.risk import RiskLimits, gate

_RUNNER = "from tradebot.cli import main; main()"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
LIMITS = RiskLimits(Decimal("0.6"), Decimal(50000), Decimal(200000), Decimal(30000))


def backtest(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RUNNER, "backtest", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def ok_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    r = backtest([*args, "--format", "json"], env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def hourly_rows(n: int, seed: int = 7, start: float = 60_000_000.0) -> list[tuple[datetime, int, int, int, int, str]]:
    """A deterministic year-like path: slow regimes (sine drift) plus noise, whole-KRW prices."""
    rng = random.Random(seed)
    price = start
    rows = []
    for i in range(n):
        o = price
        c = round(o * math.exp(0.0005 * math.sin(i / 240) + rng.gauss(0, 0.006)), -3)
        h = max(o, c) * (1 + abs(rng.gauss(0, 0.002)))
        lo = min(o, c) * (1 - abs(rng.gauss(0, 0.002)))
        rows.append((T0 + timedelta(hours=i), round(o), round(h), round(lo), round(c), f"{rng.uniform(5, 50):.8f}"))
        price = c
    return rows


def write_upbit_csv(path: Path, rows: list[tuple[datetime, int, int, int, int, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["market", "candle_date_time_utc", "candle_date_time_kst", "opening_price", "high_price", "low_price",
                    "trade_price", "candle_acc_trade_volume", "candle_acc_trade_price"])
        for t, o, h, lo, c, v in rows:
            w.writerow(["KRW-BTC", t.strftime("%Y-%m-%dT%H:%M:%S"), (t + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S"),
                        o, h, lo, c, v, ""])
    return path


def direct_backtest(rows: list[tuple[datetime, int, int, int, int, str]], limits: RiskLimits,
                    starting_krw: float = 1_000_000.0) -> Any:
    """The reference: run_backtest with a plain sizer that asks risk.gate on every possible order (no shortcuts;
    the daily loss limit must be off)."""
    assert limits.daily_loss_limit_krw == 0
    o, h, lo, c = (np.array([r[k] for r in rows], dtype=float) for k in (1, 2, 3, 4))
    signal, strength = strategy.signal_strengths(o, c)

    def size(i: int, side: str, cash: float, coin: float, price: float) -> float:
        fraction = strategy.BUY_FRACTION if side == "buy" else strategy.SELL_FRACTION
        d = Decision(side, strategy.confidence(float(strength[i])), fraction, "test")  # type: ignore[arg-type]
        pos = Position("KRW-BTC", Decimal(repr(cash)), Decimal(0), Decimal(repr(coin)), Decimal(repr(coin)), Decimal(0),
                       Decimal(repr(price)))
        g = gate(d, pos, pos.price, limits)
        if g.action == "buy":
            return float(g.krw) * 1.0005  # type: ignore[arg-type]
        return float(g.volume) if g.action == "sell" else 0.0  # type: ignore[arg-type]

    return run_backtest(o, h, lo, c, signal, starting_krw=starting_krw, min_order_krw=0.0,
                        times=[r[0] for r in rows], size_order_at=size)


BACKTEST_KEYS = {"market", "source", "since", "until", "first_candle", "last_candle", "bars", "warmup_bars", "gaps",
                 "missing_hours", "starting_krw", "final_equity", "return", "buy_hold_return", "max_drawdown", "sharpe",
                 "trades", "buys", "sells", "win_rate", "fees", "fee_rate", "limits", "gate_calls", "vetoes", "clamps",
                 "compute_seconds", "fills", "notes"}


# --- a year from a CSV ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[datetime, int, int, int, int, str]]]:
    rows = hourly_rows(8760)
    return write_upbit_csv(tmp_path_factory.mktemp("csv") / "year.csv", rows), rows


def test_csv_year_report_equals_run_backtest(tb_env: dict[str, str], year: Any) -> None:
    path, rows = year
    env = {**tb_env, "TRADEBOT_DAILY_LOSS_LIMIT_KRW": "0"}
    want = direct_backtest(rows, RiskLimits(Decimal("0.6"), Decimal(50000), Decimal(200000), Decimal(0)))
    assert want.n_trades > 50  # the path exercises buys, sells, clamps and vetoes

    got = ok_json(["--csv", str(path)], env)
    assert set(got) == BACKTEST_KEYS
    assert set(got["limits"]) == {"min_confidence", "max_order_krw", "max_position_krw", "daily_loss_limit_krw"}
    assert set(got["fills"][0]) == {"time", "side", "price", "volume", "krw", "fee", "pnl"}
    assert got["limits"] == {"min_confidence": "0.6", "max_order_krw": "50000", "max_position_krw": "200000",
                             "daily_loss_limit_krw": "0"}
    # The same numbers, not just close ones: JSON floats round-trip exactly.
    assert got["bars"] == 8760 and got["gaps"] == 0 and got["missing_hours"] == 0 and got["warmup_bars"] == 0
    assert got["first_candle"] == "2024-01-01T00:00:00+00:00" and got["last_candle"] == "2024-12-30T23:00:00+00:00"
    assert (got["final_equity"], got["return"], got["buy_hold_return"]) == (want.final_equity, want.total_return, want.buy_hold_return)
    assert (got["max_drawdown"], got["sharpe"], got["win_rate"]) == (want.max_drawdown, want.sharpe, want.win_rate)
    assert got["trades"] == want.n_trades == got["buys"] + got["sells"]
    assert got["fees"] == sum(t.fee for t in want.trades)
    assert [(f["side"], f["price"], f["volume"], f["krw"], f["pnl"]) for f in got["fills"]] == \
        [(t.side, t.price, t.volume, t.krw, t.pnl) for t in want.trades]
    assert [f["time"] for f in got["fills"]] == [t.at.isoformat() for t in want.trades]
    # The live gate's rules hold in every simulated order.
    assert all(f["krw"] <= 50_000 for f in got["fills"] if f["side"] == "buy")
    assert got["clamps"]["max_order_krw"] > 0 and got["vetoes"]["min_confidence"] > 0
    # Issue 7: a year in milliseconds, gate included (generous bound against a loaded CI machine).
    assert got["compute_seconds"] < 0.25

    r = backtest(["--csv", str(path)], env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("Backtest of KRW-BTC: rule strategy + risk gate\n")
    assert "Candles       2024-01-01 00:00 → 2024-12-30 23:00 UTC (csv year.csv)" in out
    assert "Bars          8,760 hourly, 0 gap(s) (0 hour(s) without a candle), 0 warm-up" in out
    assert f"Return        {want.total_return * 100:+.2f} % (buy and hold {want.buy_hold_return * 100:+.2f} %)" in out
    assert f"Max drawdown  {want.max_drawdown * 100:.2f} %" in out
    assert f"Sharpe        {want.sharpe:.2f} (hourly returns, annualized)" in out
    sells = sum(1 for t in want.trades if t.side == "sell")
    assert (f"Trades        {want.n_trades:,} ({want.n_trades - sells:,} buys, {sells:,} sells), "
            f"win rate {want.win_rate * 100:.1f} %") in out
    assert f"Fees paid     {sum(t.fee for t in want.trades):,.0f} KRW (0.05 % per side)" in out
    assert "the strategy needs 60, so it holds on the period's first 59 bar(s)" in r.stderr


def test_days_window_uses_earlier_candles_as_warmup(tb_env: dict[str, str], year: Any) -> None:
    path, rows = year
    got = ok_json(["--csv", str(path), "--days", "30", "--starting-krw", "2,000,000"], tb_env)
    assert got["bars"] == 720 and got["warmup_bars"] == 248  # TRADEBOT_HOURLY_CANDLES 200 + 48
    assert got["since"] == "2024-12-01T00:00:00+00:00" and got["first_candle"] == "2024-12-01T00:00:00+00:00"
    assert got["starting_krw"] == 2_000_000.0 and got["notes"] == []
    assert got["buy_hold_return"] == rows[-1][4] / rows[-720][1] - 1


def test_gaps_are_kept_and_the_simple_header_works(tb_env: dict[str, str], tmp_path: Path) -> None:
    rows = hourly_rows(600, seed=3)
    missing = {100, 101, 102, 350}
    path = tmp_path / "gappy.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "open", "high", "low", "close", "volume"])
        for i, (t, o, h, lo, c, v) in enumerate(rows):
            if i not in missing:
                w.writerow([t.strftime("%Y-%m-%d %H:%M:%S"), o, h, lo, c, v])
    got = ok_json(["--csv", str(path), "--since", "2024-01-01"], tb_env)
    assert got["bars"] == 596 and got["gaps"] == 2 and got["missing_hours"] == 4
    assert got["last_candle"] == rows[-1][0].isoformat()
    present = {t.isoformat() for i, (t, *_rest) in enumerate(rows) if i not in missing}
    assert got["fills"] and all(f["time"] in present for f in got["fills"])
    # The backtest ran on the 596 candles as they are: no hour filled in, a fill after a gap at the next open.
    kept = [r for i, r in enumerate(rows) if i not in missing]
    want = direct_backtest(kept, RiskLimits(Decimal("0.6"), Decimal(50000), Decimal(200000), Decimal(0)))
    got_dl0 = ok_json(["--csv", str(path), "--since", "2024-01-01"], {**tb_env, "TRADEBOT_DAILY_LOSS_LIMIT_KRW": "0"})
    assert got_dl0["final_equity"] == want.final_equity and got_dl0["trades"] == want.n_trades
    candles, notes = read_candles_csv(path)
    assert len(candles) == 596 and notes == ()
    report = backtest_candles(candles, since=T0, until=T0 + timedelta(days=30), limits=LIMITS)
    assert report.final_equity == got["final_equity"] and report.gaps == 2


def test_a_signal_fills_at_the_next_candle_and_never_sees_the_future() -> None:
    """Command level: the report's fills and equity up to hour k do not change when every later candle does."""
    rows = hourly_rows(1500, seed=11)
    candles = [Candle(t, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v)) for t, o, h, lo, c, v in rows]
    until = T0 + timedelta(hours=1500)
    base = backtest_candles(candles, since=T0, until=until, limits=LIMITS)
    assert base.trades > 10
    rng = random.Random(5)
    for k in (300, 777, 1200):
        future = [Candle(x.start, x.open * m, x.high * m * Decimal("1.01"), x.low * m, x.close * m, x.volume)
                  for x in candles[k + 1:] for m in [Decimal(str(round(rng.uniform(0.7, 1.3), 3)))]]
        other = backtest_candles(candles[:k + 1] + future, since=T0, until=until, limits=LIMITS)
        assert [t for t in other.fills if t.index <= k] == [t for t in base.fills if t.index <= k]
        assert np.array_equal(other.equity[:k + 1], base.equity[:k + 1])
    # Each fill is at the open of the candle after its signal's.
    opens = [float(x.open) for x in candles]
    assert all(t.price == opens[t.index] and t.at == candles[t.index].start for t in base.fills)


def test_daily_loss_limit_stops_buys_until_the_next_utc_day() -> None:
    prices = [100_000_000.0, 100_000_000.0, 80_000_000.0, 80_000_000.0, 80_000_000.0, 80_000_000.0]
    times = [datetime(2024, 1, 1, 20, tzinfo=UTC) + timedelta(hours=i) for i in range(6)]  # day changes at index 4
    limits = RiskLimits(Decimal("0.6"), Decimal(100000), Decimal(1000000), Decimal(10000))
    sizer = _GateSizer("KRW-BTC", [1.0] * 6, times, limits, 0.0005)
    # buy @1, sell @2 (loses ~20,000 KRW), buy signals filling @3 (same day: vetoed) and @4 (next day: allowed)
    r = run_backtest(prices, prices, prices, prices, [1, -1, 1, 1, 0, 0], min_order_krw=0.0, times=times,
                     size_order_at=sizer)
    assert [(t.index, t.side) for t in r.trades] == [(1, "buy"), (2, "sell"), (4, "buy")]
    assert r.trades[1].pnl is not None and r.trades[1].pnl < -10_000
    assert sizer.vetoes == {"daily_loss_limit": 1}
    assert sizer.clamps == {"max_order_krw": 2}


def test_signal_strengths_give_the_rules_advisors_confidence() -> None:
    from tests.reference_impl import random_ohlcv

    for seed in range(3):
        o, _h, _l, c, _v = random_ohlcv(seed, 260, vol=0.02)
        signal, strength = strategy.signal_strengths(o, c)
        np.testing.assert_array_equal(signal, strategy.signals(o, o, o, c, c))
        for k in range(200, 260):
            candles = tuple(Candle(T0 + timedelta(hours=i), Decimal(repr(float(a))), Decimal(repr(float(max(a, b)))),
                                   Decimal(repr(float(min(a, b)))), Decimal(repr(float(b))), Decimal(1))
                            for i, (a, b) in enumerate(zip(o[:k + 1], c[:k + 1])))
            pos = Position("KRW-BTC", Decimal(10**7), Decimal(0), Decimal(1), Decimal(1), Decimal(0), candles[-1].close)
            d = strategy.decide(AdvisorInput(pos, IndicatorSnapshot(0.0, *([None] * 13)), candles, (), ()))
            if signal[k] != 0:
                assert d.action == ("buy" if signal[k] > 0 else "sell")
                assert d.confidence == strategy.confidence(float(strength[k]))
            else:
                assert math.isnan(strength[k])


# --- bad input --------------------------------------------------------------------------------------------
def test_bad_options_and_files_exit_2(tb_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,price\n2024-01-01,1\n")
    r = backtest(["--csv", str(bad)], tb_env)
    assert r.returncode == 2 and r.stderr.startswith("Error: --csv ") and "time,open,high,low,close,volume" in r.stderr
    r = backtest(["--csv", str(bad), "--days", "3", "--since", "2024-01-01"], tb_env)
    assert r.returncode == 2 and "--days or --since, not both" in r.stderr
    r = backtest(["--csv", str(bad), "--starting-krw", "-5"], tb_env)
    assert r.returncode == 2 and "not a positive amount of KRW" in r.stderr


# --- the plot ---------------------------------------------------------------------------------------------
def test_plot_writes_a_png_or_says_how_to_install_matplotlib(tb_env: dict[str, str], year: Any, tmp_path: Path) -> None:
    path, _rows = year
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    r = backtest(["--csv", str(path), "--days", "20", "--plot", str(tmp_path / "x.png")],
                 {**tb_env, "PYTHONPATH": f"{shim.parent}:{tb_env['PYTHONPATH']}"})
    assert r.returncode == 2 and "Error: --plot needs matplotlib: pip install 'tradebot[plot]'" in r.stderr
    pytest.importorskip("matplotlib")
    png = tmp_path / "equity.png"
    r = backtest(["--csv", str(path), "--days", "20", "--plot", str(png)], tb_env)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in r.stderr


# --- candles from the exchange, cached --------------------------------------------------------------------
def candle_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM candles WHERE market = 'KRW-BTC' AND interval = 'minute60'").fetchone()
    assert row is not None
    return int(row[0])


def test_exchange_candles_are_cached_and_a_second_run_needs_no_network(tb_env: dict[str, str], db_url: str) -> None:
    until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    since = until - timedelta(days=10)
    period = ["--since", since.isoformat(), "--until", until.isoformat()]
    sim = SimulatorServer(SimulatorConfig(port=0)).start()
    env = {**tb_env, "UPBIT_API_URL": sim.url}
    try:
        early = ok_json(["--since", since.isoformat(), "--until", (until - timedelta(hours=6)).isoformat()], env)
        assert early["source"] == "exchange" and early["bars"] == 240 - 6 and early["warmup_bars"] == 248
        assert candle_count(db_url) == 248 + 234
        first = ok_json(period, env)  # only the 6 newer candles are fetched
        assert first["source"] == "cache+exchange" and candle_count(db_url) == 248 + 240
    finally:
        sim.stop()
    assert first["bars"] == 240 and first["gaps"] == 0 and first["notes"] == []
    assert first["first_candle"] == since.isoformat() and first["last_candle"] == (until - timedelta(hours=1)).isoformat()

    again = ok_json(period, env)  # the simulator is gone: everything comes from the cache
    assert again["source"] == "cache" and again["notes"] == []
    assert {k: v for k, v in again.items() if k not in ("source", "compute_seconds")} == \
        {k: v for k, v in first.items() if k not in ("source", "compute_seconds")}

    # Asking for older candles than cached while the exchange is unreachable: the cached ones, with a note.
    r = backtest(["--since", (since - timedelta(days=2)).isoformat(), "--until", until.isoformat()], env)
    assert r.returncode == 0, r.stderr
    assert "note: could not fetch KRW-BTC candles" in r.stderr and "using the cached ones" in r.stderr
    assert "Bars          288 hourly" in r.stdout


# --- --compare-live ---------------------------------------------------------------------------------------
COMPARE_KEYS = {"market", "mode", "first_decision", "last_decision", "decisions", "comparable", "matching", "differing",
                "candle_mismatches", "differences", "orders", "filled_orders", "slippage", "fees", "pnl", "backtest",
                "notes"}


def waves(sim: SimulatorServer, n: int, up: str, down: str) -> int:
    """Advance the market n × (one hour up, one hour down): a trend with pullbacks. Returns the hours added."""
    for _ in range(n):
        sim.advance(hours=1, pct=Decimal(up))
        sim.advance(hours=1, pct=Decimal(down))
    return 2 * n


def test_compare_live_on_a_database_filled_by_paper_cycles(tb_env: dict[str, str], db_url: str) -> None:
    # The simulator's clock stands still 3 hours in the past, so every candle it serves is complete and its
    # times do not move while the test runs; /_sim/advance appends the hours between two cycles.
    anchor = (int(time.time()) // 3600 - 3) * 3600
    plan = [(20, "1.2", "-0.7"), (1, "1.2", "-0.7"), (1, "1.2", "-0.7"), (15, "-1.2", "0.6"), (1, "-1.2", "0.6"),
            (2, "1.2", "-0.7")]
    with SimulatorServer(SimulatorConfig(port=0, clock=lambda: anchor + 1800.0, seed=3)) as sim:
        env = {**tb_env, "TRADEBOT_MODE": "paper", "TRADEBOT_ADVISOR": "rules", "UPBIT_API_URL": sim.url,
               "TRADEBOT_BACKTEST_FILTER": "off"}
        advanced: list[int] = []
        for n, up, down in plan:
            advanced.append((advanced[-1] if advanced else 0) + waves(sim, n, up, down))
            r = run_cli(["run-cycle"], env)
            assert r.returncode == 0, r.stdout + r.stderr
        # The cycles ran seconds apart; date each decision (and its order) in the hour after the newest candle
        # it saw, as if the bot had run hourly. Candle i of the final path starts at anchor - (len - 1 - i) h.
        total = advanced[-1]
        with psycopg.connect(db_url) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM decisions WHERE role = 'acting' ORDER BY id")]
            assert len(ids) == len(plan)
            for decision_id, a in zip(ids, advanced):
                at = datetime.fromtimestamp(anchor, UTC) - timedelta(hours=total - a) + timedelta(minutes=90)
                conn.execute("UPDATE decisions SET created_at = %s WHERE id = %s", (at, decision_id))
                conn.execute("UPDATE trades SET created_at = %s WHERE decision_id = %s", (at + timedelta(seconds=3), decision_id))
            trades = conn.execute("SELECT side, price, amount, total, fee FROM trades WHERE status = 'completed' "
                                  "ORDER BY id").fetchall()
        assert [t[0] for t in trades] == ["buy", "buy", "buy", "sell"]

        got = ok_json(["--compare-live"], env)
        table = backtest(["--compare-live"], env)
    assert set(got) == COMPARE_KEYS
    # The bot ran the rules advisor: replayed on the same candles through the same gate, nothing differs.
    assert (got["decisions"], got["comparable"], got["matching"], got["differing"]) == (6, 6, 6, 0)
    assert got["candle_mismatches"] == 0 and got["differences"] == []
    assert (got["orders"], got["filled_orders"]) == (4, 4)
    fills = got["slippage"]["fills"]
    assert [f["side"] for f in fills] == ["buy", "buy", "buy", "sell"]
    assert all(Decimal(f["bps"]) >= 0 for f in fills)  # buys walk the asks up, sells the bids down
    assert Decimal(got["slippage"]["worst_bps"]) == max(Decimal(f["bps"]) for f in fills)
    assert Decimal(got["fees"]["bot"]) == sum(t[4] for t in trades)
    # Flat again after the sell: the bot's P&L is its realized P&L.
    realized = sum(t[3] - t[4] if t[0] == "sell" else -(t[3] + t[4]) for t in trades)
    assert Decimal(got["pnl"]["bot_pnl"]) == realized
    assert got["pnl"]["gap_krw"] == pytest.approx(got["pnl"]["strategy_pnl"] - float(realized))
    assert got["backtest"]["trades"] >= 4
    assert table.returncode == 0, table.stderr
    assert "Decisions  6 recorded, 6 comparable: 6 same as the strategy, 0 different; 0 candle mismatch(es)" in table.stdout
    assert "Orders     4 placed, 4 filled" in table.stdout


def insert_rows(db_url: str, candles: list[Candle], decisions: list[dict[str, Any]], trades: list[dict[str, Any]]) -> list[int]:
    with psycopg.connect(db_url) as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO candles (market, interval, start, open, high, low, close, volume, value) "
                            "VALUES ('KRW-BTC', 'minute60', %s, %s, %s, %s, %s, %s, 0)",
                            [(c.start, c.open, c.high, c.low, c.close, c.volume) for c in candles])
        ids = []
        for d in decisions:
            row = conn.execute(
                "INSERT INTO decisions (created_at, ticker, mode, advisor, decision, confidence, fraction, action, "
                "order_krw, order_volume, vetoes, indicators, position, price, error) VALUES (%(at)s, 'KRW-BTC', "
                "'live', 'claude', %(decision)s, 0.8, 0.5, %(action)s, %(order_krw)s, %(order_volume)s, '[]', "
                "%(indicators)s, %(position)s, %(price)s, %(error)s) RETURNING id",
                {"order_krw": None, "order_volume": None, "error": None, **d}).fetchone()
            assert row is not None
            ids.append(int(row[0]))
        for t in trades:
            conn.execute(
                "INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee, "
                "requested_krw, requested_volume, decision_id, created_at) VALUES (%(cid)s, %(cid)s, 'KRW-BTC', "
                "%(side)s, 'live', 'completed', %(price)s, %(amount)s, %(total)s, %(fee)s, %(requested_krw)s, "
                "%(requested_volume)s, %(decision_id)s, %(at)s)", {"requested_krw": None, "requested_volume": None, **t})
    return ids


def test_compare_live_on_recorded_rows(tb_env: dict[str, str], db_url: str) -> None:
    from psycopg.types.json import Jsonb

    # 300 hours of a rising market (+0.6 %, +0.6 %, -0.6 %): the rule says "buy" (confidence 1) on the two up
    # candles of every three, and holds on the down candle.
    start = datetime(2024, 3, 1, tzinfo=UTC)
    price = Decimal(80_000_000)
    candles = []
    for i in range(300):
        close = (price * (Decimal("0.994") if i % 3 == 2 else Decimal("1.006"))).quantize(Decimal(1000))
        candles.append(Candle(start + timedelta(hours=i), price, max(price, close), min(price, close), close, Decimal(3)))
        price = close
    o, c = np.array([float(x.open) for x in candles]), np.array([float(x.close) for x in candles])
    signal, strength = strategy.signal_strengths(o, c)
    idx = [255, 256, 258, 259, 261]  # the last completed candle of each decision
    assert all(signal[k] == 1 and strategy.confidence(float(strength[k])) == 1 for k in idx)

    def at(h: int) -> datetime:  # decision h: made 10 minutes into the hour after its candle
        return candles[idx[h]].start + timedelta(hours=1, minutes=10)

    def pos(krw: str, coin: str, h: int) -> Jsonb:
        return Jsonb({"free_krw": krw, "locked_krw": "0", "coin_volume": coin, "coin_free": coin, "avg_buy_price": "0",
                      "price": str(candles[idx[h]].close)})

    def ind(h: int, close: float | None = None) -> Jsonb:
        return Jsonb({"close": close if close is not None else float(candles[idx[h]].close)})

    p1, p2 = candles[idx[1]].close, candles[idx[2]].close
    # The bot's fills: 5 bps worse than its decision's price on each side.
    buy_price, sell_price = p1 * Decimal("1.0005"), p2 * Decimal("0.9995")
    volume = (Decimal(50000) / buy_price).quantize(Decimal("0.00000001"), rounding="ROUND_DOWN")
    buy_total, sell_total = buy_price * volume, sell_price * volume
    buy_fee, sell_fee = buy_total * Decimal("0.0005"), sell_total * Decimal("0.0005")
    krw_after_buy = Decimal(1_000_000) - buy_total - buy_fee
    decisions: list[dict[str, Any]] = [
        {"at": at(0), "decision": "hold", "action": "hold", "position": pos("1000000", "0", 0), "indicators": ind(0),
         "price": candles[idx[0]].close},
        {"at": at(1), "decision": "buy", "action": "buy", "order_krw": 50000, "position": pos("1000000", "0", 1),
         "indicators": ind(1), "price": p1},
        {"at": at(2), "decision": "sell", "action": "sell", "order_volume": volume,
         "position": pos(str(krw_after_buy), str(volume), 2), "indicators": ind(2), "price": p2},
        {"at": at(3), "decision": None, "action": "hold", "position": None, "indicators": None, "price": None,
         "error": "portfolio: exchange unreachable"},
        {"at": at(4), "decision": "hold", "action": "hold", "position": pos(str(krw_after_buy + sell_total - sell_fee), "0", 4),
         "indicators": ind(4, 1.0), "price": candles[idx[4]].close},
    ]
    ids = insert_rows(db_url, candles, decisions, [])
    trades: list[dict[str, Any]] = [
        {"cid": "tb-test-buy-0001", "side": "buy", "price": buy_price, "amount": volume, "total": buy_total,
         "fee": buy_fee, "requested_krw": 50000, "decision_id": ids[1], "at": at(1) + timedelta(seconds=2)},
        {"cid": "tb-test-sell-001", "side": "sell", "price": sell_price, "amount": volume, "total": sell_total,
         "fee": sell_fee, "requested_volume": volume, "decision_id": ids[2],
         "at": at(2) + timedelta(seconds=2)},
    ]
    insert_rows(db_url, [], [], trades)

    # Live mode, candles all cached: no exchange needed (UPBIT_API_URL points nowhere).
    env = {**tb_env, "TRADEBOT_MODE": "live", "UPBIT_API_URL": "http://127.0.0.1:9"}
    got = ok_json(["--compare-live"], env)
    assert set(got) == COMPARE_KEYS and got["mode"] == "live" and got["notes"][0].startswith("1 decision(s) saw")
    assert (got["decisions"], got["comparable"], got["matching"], got["differing"], got["candle_mismatches"]) == (5, 4, 1, 3, 1)
    diffs = {d["decision_id"]: d for d in got["differences"]}
    assert set(diffs) == {ids[0], ids[2], ids[4]}
    assert set(got["differences"][0]) == {"decision_id", "at", "candle", "strategy_proposal", "strategy_action",
                                          "strategy_krw", "strategy_volume", "bot_advisor", "bot_proposal", "bot_action",
                                          "bot_krw", "bot_volume", "note"}
    first = diffs[ids[0]]
    assert (first["strategy_action"], first["strategy_krw"], first["bot_action"]) == ("buy", "50000", "hold")
    assert first["candle"] == candles[idx[0]].start.isoformat() and first["note"] == "advisor claude"
    assert (diffs[ids[2]]["strategy_action"], diffs[ids[2]]["bot_action"]) == ("buy", "sell")
    assert "the bot saw close 1" in diffs[ids[4]]["note"]
    slip = got["slippage"]
    assert [Decimal(f["bps"]) for f in slip["fills"]] == [Decimal(5), Decimal(5)]
    assert Decimal(slip["avg_bps"]) == 5 and Decimal(slip["worst_bps"]) == 5
    assert set(slip["fills"][0]) == {"decision_id", "trade_id", "at", "side", "decision_price", "fill_price", "bps",
                                     "requested", "filled", "fee"}
    fees = trades[0]["fee"] + trades[1]["fee"]
    assert Decimal(got["fees"]["bot"]) == fees
    bot_pnl = (sell_total - trades[1]["fee"]) - (buy_total + trades[0]["fee"])
    assert Decimal(got["pnl"]["bot_pnl"]) == bot_pnl and Decimal(got["pnl"]["starting_equity"]) == 1_000_000
    assert Decimal(got["pnl"]["bot_return"]) == bot_pnl / 1_000_000
    bt = got["backtest"]
    assert bt["first_candle"] == candles[idx[0]].start.isoformat()
    assert bt["last_candle"] == candles[idx[-1] + 1].start.isoformat()  # the candle the last decision traded in
    assert bt["starting_krw"] == 1_000_000.0 and got["pnl"]["strategy_return"] == bt["return"]
    assert got["pnl"]["gap_krw"] == bt["final_equity"] - 1_000_000.0 - float(bot_pnl)

    r = backtest(["--compare-live", "--mode", "live"], env)
    assert r.returncode == 0, r.stderr
    assert "Slippage   average +5.0 bps, worst +5.0 bps (fill vs the decision's price; + is worse)" in r.stdout
    assert f"  {at(2):%Y-%m-%d %H:%M}  {candles[idx[2]].start:%m-%d %H:%M}  buy→buy   sell→sell  advisor claude\n" in r.stdout
    assert "Decisions  5 recorded, 4 comparable: 1 same as the strategy, 3 different; 1 candle mismatch(es)" in r.stdout
    r = backtest(["--compare-live", "--mode", "paper"], env)
    assert r.returncode == 1 and "Error: no recorded decisions for KRW-BTC (paper)" in r.stderr


# --- issue 10: far times, absurd prices, a large file ------------------------------------------------------
def _simple_csv(path: Path, rows: list[tuple[str, str, str, str, str]], pad_before: int = 0, pad_after: int = 0) -> Path:
    """A ``time,open,high,low,close,volume`` file: ``pad_before`` sane hourly rows, then ``rows``, then more."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "open", "high", "low", "close", "volume"])
        for i in range(pad_before):
            w.writerow([(T0 + timedelta(hours=i)).isoformat(), 100_000, 101_000, 99_000, 100_000, 1])
        for row in rows:
            w.writerow([*row, 1])
        for i in range(pad_after):
            w.writerow([(T0 + timedelta(hours=1000 + i)).isoformat(), 100_000, 101_000, 99_000, 100_000, 1])
    return path


@pytest.mark.parametrize(("rows", "pad", "line", "says"), [
    # Year 1 (with 2024 rows after it: the report used to start in year 1; alone: OverflowError).
    ([("0001-01-01T00:00:00", "100", "100", "100", "100")], 0, 2, "time '0001-01-01T00:00:00' is outside"),
    ([("0001-01-01T%02d:00:00" % i, "100", "100", "100", "100") for i in range(5)], 0, 2, "is outside"),
    # The last hour of 9999: its end is not a datetime (OverflowError).
    ([("9999-12-31T23:00:00", "100", "100", "100", "100")], 3, 5, "time '9999-12-31T23:00:00' is outside"),
    # A Unix time that is no date at all (OSError: Value too large).
    ([("99999999999999999999", "100", "100", "100", "100")], 0, 2, "time '99999999999999999999' is outside"),
    # Prices beyond float (the simulation is float64: ValueError) and below anything tradable.
    ([("2024-03-01T00:00:00", "1e400", "1e400", "1e400", "1e400")], 0, 2, "price 1e400 is outside"),
    ([("2024-03-01T00:00:00", "1e-300", "1e-300", "1e-300", "1e-300")], 70, 72, "price 1e-300 is outside"),
])
def test_far_times_and_absurd_prices_are_an_error_naming_the_line(tb_env: dict[str, str], tmp_path: Path,
                                                                   rows: Any, pad: int, line: int, says: str) -> None:
    path = _simple_csv(tmp_path / "far.csv", rows, pad_before=pad, pad_after=3)
    r = backtest(["--csv", str(path)], tb_env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"Error: --csv {path}, line {line}: "), r.stderr
    assert says in r.stderr


def _old_read_candles_csv(path: Path) -> tuple[list[Candle], tuple[str, ...]]:
    """read_candles_csv as it was before issue 10 (whole file in memory, Decimal per cell): the reference the
    streaming reader must agree with on every file that is inside the supported range."""
    from tradebot.backtest.csv import _SIMPLE_COLUMNS, _UPBIT_COLUMNS
    from tradebot.errors import ConfigError

    def parse_time(text: str) -> datetime:
        text = text.strip()
        if text.replace(".", "", 1).isdigit():
            seconds = float(text)
            return datetime.fromtimestamp(seconds / 1000 if seconds > 1e11 else seconds, UTC)
        dt = datetime.fromisoformat(text)
        return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).astimezone(UTC)

    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    names = _UPBIT_COLUMNS if set(_UPBIT_COLUMNS[:5]) <= set(header) else _SIMPLE_COLUMNS
    t_col, o_col, h_col, l_col, c_col, v_col, value_col = names
    by_start: dict[datetime, Candle] = {}
    bad: list[int] = []
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            start = parse_time(row[t_col])
            o, h, lo, c = (Decimal(row[k]) for k in (o_col, h_col, l_col, c_col))
            volume = Decimal(row.get(v_col) or "0")
            value = Decimal(row.get(value_col) or "0")
        except (KeyError, ValueError, ArithmeticError):
            raise ConfigError("--csv", f"{path}, line {line}: not a candle (time and prices must be numbers)") from None
        if not (all(x.is_finite() for x in (o, h, lo, c, volume, value)) and lo > 0 and lo <= min(o, c)
                and h >= max(o, c) and volume >= 0):
            bad.append(line)
            continue
        by_start[start] = Candle(start, o, h, lo, c, volume, value)
    notes: list[str] = []
    if bad:
        notes.append(f"{path.name}: skipped {len(bad)} row(s) whose prices are not a valid candle "
                     f"(first at line {bad[0]})")
    if len(by_start) < len(rows) - len(bad):
        notes.append(f"{path.name}: {len(rows) - len(bad) - len(by_start)} repeated time(s); the last row of each was kept")
    return [by_start[k] for k in sorted(by_start)], tuple(notes)


def _as_floats(candles: list[Candle]) -> list[tuple[object, ...]]:
    return [(c.start, *(float(x) for x in (c.open, c.high, c.low, c.close, c.volume, c.value))) for c in candles]


TRICKY_ROWS = [  # (time, open, high, low, close, volume); the file is written in this order
    ("2024-01-01T05:00:00", "100", "110", "90", "105", "1"),
    ("2024-01-01T01:00:00+09:00", "100", "100", "100", "100", ""),  # offset; empty volume is 0
    ("2024-01-01T03:00:00Z", " 99.5 ", "101", "99", "100", "0.5"),  # spaces around a number
    ("2024-01-01T05:00:00", "101", "111", "91", "106", "2"),  # repeated time: the last row wins
    ("1704070800", "100", "102", "98", "101", "1"),  # Unix seconds (2024-01-01 01:00)
    ("1704078000000", "100", "102", "98", "101", "1"),  # Unix milliseconds (03:00: repeats the Z row)
    ("2024-01-01T06:00:00", "100", "99", "98", "100", "1"),  # high below open: skipped
    ("2024-01-01T07:00:00", "100", "101", "0", "100", "1"),  # low 0: skipped
    ("2024-01-01T08:00:00", "NaN", "101", "99", "100", "1"),  # not finite: skipped
    ("2024-01-01T09:00:00", "sNaN", "101", "99", "100", "1"),  # Decimal's signalling NaN: skipped too
    ("2024-01-01T10:00:00", "100", "101", "99", "100", "-1"),  # negative volume: skipped
    ("2024-01-01T11:00:00", "100", "101", "99", "100", "-1e-400"),  # ... even when float would say -0.0
    ("2024-01-01T12:00:00", "100", "100.00000000000000001", "100", "100", "1"),  # equal as floats, valid
    ("2024-01-01T13:00:00", "100.00000000000000001", "100.00000000000000001", "100", "100", "1"),  # open = high: valid
    ("2024-01-01T14:00:00", "100", "100", "100.00000000000000001", "100", "1"),  # low above open: skipped
    ("2024-01-01T15:00:00", "1_000", "1_000", "1_000", "1_000", "1e400"),  # underscores; a huge volume is finite
    ("2024-01-01 16:00:00", "100", "101", "99", "100", "1"),  # a space instead of T
]


def test_streaming_reader_agrees_with_the_old_reader(tmp_path: Path) -> None:
    path = tmp_path / "tricky.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "open", "high", "low", "close", "volume"])
        for i, row in enumerate(TRICKY_ROWS):
            w.writerow(row)
            if i == 3:
                f.write("\n")  # a blank line: csv skips it and it does not count as a line of the file's rows
    new, new_notes = read_candles_csv(path)
    old, old_notes = _old_read_candles_csv(path)
    assert new_notes == old_notes and len(new_notes) == 2, new_notes
    assert _as_floats(new) == _as_floats(old)
    # The Upbit header, extra columns, a short row, a BOM, and a shuffled order.
    upbit = tmp_path / "upbit.csv"
    rows = hourly_rows(300, seed=9)
    write_upbit_csv(upbit, rows)
    lines = upbit.read_text().splitlines()
    body = lines[1:]
    random.Random(3).shuffle(body)
    upbit.write_text("\ufeff" + "\n".join([lines[0], *body]) + "\n", encoding="utf-8")
    new, new_notes = read_candles_csv(upbit)
    old, old_notes = _old_read_candles_csv(upbit)
    assert new_notes == old_notes == () and _as_floats(new) == _as_floats(old) and len(new) == 300
    # Errors name the same line.
    for bad_value in ("abc", "1,5", ""):
        broken = tmp_path / "broken.csv"
        with broken.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", "open", "high", "low", "close"])
            w.writerow(["2024-01-01T00:00:00", "100", "101", "99", "100"])
            w.writerow(["2024-01-01T01:00:00", "100", bad_value, "99", "100"])
        from tradebot.errors import ConfigError

        with pytest.raises(ConfigError) as new_error:
            read_candles_csv(broken)
        with pytest.raises(ConfigError) as old_error:
            _old_read_candles_csv(broken)
        assert str(new_error.value) == str(old_error.value)
        assert str(new_error.value) == f"--csv {broken}, line 3: not a candle (time and prices must be numbers)"


def test_compare_live_from_a_long_csv_equals_the_cached_candles(tb_env: dict[str, str], db_url: str,
                                                                tmp_path: Path) -> None:
    """--compare-live --csv uses only the candles around the decisions (not the whole file as Candles): the
    comparison is the one the same candles give from the database cache."""
    from psycopg.types.json import Jsonb

    rows = hourly_rows(3500, seed=21)
    candles = [Candle(t, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v)) for t, o, h, lo, c, v in rows]
    idx = [2600, 2601, 2605, 2620, 2650]

    def pos(h: int) -> Jsonb:
        return Jsonb({"free_krw": "1000000", "locked_krw": "0", "coin_volume": "0", "coin_free": "0",
                      "avg_buy_price": "0", "price": str(candles[idx[h]].close)})

    decisions = [{"at": candles[k].start + timedelta(hours=1, minutes=5), "decision": "hold", "action": "hold",
                  "position": pos(h), "indicators": Jsonb({"close": float(candles[k].close)}),
                  "price": candles[k].close} for h, k in enumerate(idx)]
    insert_rows(db_url, candles, decisions, [])
    env = {**tb_env, "TRADEBOT_MODE": "live", "UPBIT_API_URL": "http://127.0.0.1:9"}
    cached = ok_json(["--compare-live"], env)
    from_csv = ok_json(["--compare-live", "--csv", str(write_upbit_csv(tmp_path / "long.csv", rows))], env)
    for got in (cached, from_csv):
        assert got["decisions"] == 5 and got["comparable"] == 5
        got["backtest"].pop("compute_seconds")
    assert cached["backtest"].pop("source") == "cache" and from_csv["backtest"].pop("source") == "csv long.csv"
    assert from_csv == cached
