"""The daily Telegram digest (issue 13): the first cycle at or after TRADEBOT_DIGEST_HOUR sends yesterday's
trades and P&L, equity, the model's spend and the scorecard's verdict — once a day, however many runs come
after; a failed send is retried by the next run. Real CLI, simulator, fake Telegram, real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from tests.conftest import run_cli
from tests.stack import live_services
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET

TRADE = ("INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee, "
         "requested_krw, requested_volume, created_at) VALUES (%s, %s, 'KRW-BTC', %s, 'live', 'completed', %s, "
         "0.001, %s, %s, %s, %s, %s)")


def test_one_digest_a_day_with_yesterdays_figures(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    yesterday = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(10), tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Yesterday: bought 0.001 BTC for 100,000 KRW (+50 fee), sold it for 110,000 (−55 fee): +9,895 realized.
        conn.execute(TRADE, ("digest-buy-0001", "u-1", "buy", 100_000_000, 100_000, 50, 100_000, None, yesterday))
        conn.execute(TRADE, ("digest-sell-001", "u-2", "sell", 110_000_000, 110_000, 55, None, Decimal("0.001"),
                             yesterday + timedelta(hours=2)))
        conn.execute("INSERT INTO decisions (ticker, mode, advisor, action, cost_usd, created_at) "
                     "VALUES ('KRW-BTC', 'live', 'claude', 'hold', 0.25, %s)", (yesterday,))
    with live_services(tb_env, tmp_path / "m", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off", TRADEBOT_ADVISOR="rules",
                       TRADEBOT_DIGEST_HOUR="0", TZ="UTC") as (_sim, _model, telegram, env):
        telegram.enqueue_error(502, "Bad Gateway")  # the first run's digest fails: given back, not lost
        runs = [run_cli(["run-cycle"], env) for _ in range(3)]
        assert all(r.returncode == 0 for r in runs), runs[0].stdout + runs[0].stderr
        digests = [t for t in telegram.texts if "daily digest" in t]
    assert len(digests) == 1  # the second run sent it, the third did not
    [text] = digests
    assert f"(live) — {yesterday:%Y-%m-%d}" in text
    assert "Trades: 2 (1 buys, 1 sells)" in text and "KRW-BTC sell 110,000 KRW at 110,000,000" in text
    assert "Realized P&amp;L: +9,895 KRW" in text
    assert "Model: 0.25 USD (350 KRW) yesterday" in text and "Scorecard (30 days):" in text


def test_no_digest_before_the_hour_or_when_off(tb_env: dict[str, str], tmp_path: Path) -> None:
    # A time zone in which it is 10:xx now (POSIX TZ signs are inverted: "ZZZ-3" is UTC+3), the digest at 11.
    offset = (10 - datetime.now(UTC).hour + 12) % 24 - 12
    zone = f"ZZZ{-offset:+d}"
    for hour in ("11", ""):
        with live_services(tb_env, tmp_path / f"m{hour}", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                           bot_token=BOT_TOKEN, TRADEBOT_ADVISOR="rules", TRADEBOT_DIGEST_HOUR=hour,
                           TZ=zone) as (_sim, _model, telegram, env):
            assert run_cli(["run-cycle"], env).returncode == 0
            assert not [t for t in telegram.texts if "daily digest" in t]
    # The same zone one hour on (the digest hour reached): it is sent.
    with live_services(tb_env, tmp_path / "m10", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_ADVISOR="rules", TRADEBOT_DIGEST_HOUR="10",
                       TZ=zone) as (_sim, _model, telegram, env):
        assert run_cli(["run-cycle"], env).returncode == 0
        assert len([t for t in telegram.texts if "daily digest" in t]) == 1
