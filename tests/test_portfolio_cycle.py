"""The portfolio cycle (issue 12) end to end: ``tradebot run-cycle`` with TRADEBOT_MARKETS as a subprocess
against the Upbit simulator serving several markets, the fake Anthropic API (reached by the real client),
the fake Telegram API and a real PostgreSQL. Assertions are on exit codes, rows, the exchange's ledger,
files and messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.stack import live_services
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, TRADE_SQL, Stack, exchange_fill

MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-SOL")


@pytest.fixture(name="stack")
def portfolio_stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The live stack with the simulator serving MARKETS and TRADEBOT_MARKETS listing them."""
    metrics = tmp_path / "metrics"
    with live_services(tb_env, metrics, access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY, bot_token=BOT_TOKEN,
                       sim_markets=MARKETS, TRADEBOT_MARKETS=",".join(MARKETS), TRADEBOT_BACKTEST_FILTER="off",
                       TRADEBOT_LLM_MAX_RETRIES="0", TRADEBOT_LLM_TIMEOUT_S="5") as (sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, metrics)


def entry(market: str, decision: str, confidence: float = 0.8, fraction: float = 0.5, reason: str = "test") -> dict[str, Any]:
    return {"market": market, "decision": decision, "confidence": confidence, "fraction": fraction, "reason": reason}


def answer(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"decisions": list(entries)}


def ledger_matches_trades(stack: Stack) -> None:
    """The exchange's ledger equals the trades table, order by order (every market)."""
    orders = {o["identifier"]: o for o in stack.sim.orders()}
    rows = [r for r in stack.rows(TRADE_SQL) if r[1] != "failed"]
    assert {r[3] for r in rows} == set(orders), "an order on the exchange without its row, or the reverse"
    for side, status, trade_id, cid, price, amount, total, fee, _error, _did in rows:
        order = orders[cid]
        assert status == "completed" and trade_id == order["uuid"]
        assert (price, amount, total, fee) == exchange_fill(order)
        assert side == {"bid": "buy", "ask": "sell"}[order["side"]]


def test_one_request_for_every_market_and_orders_in_sequence(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.7), entry("KRW-ETH", "buy", 0.9, reason="ETH <b>up</b>"),
                                           entry("KRW-SOL", "hold", 0.6, 0)), name="record_decisions")
    out = stack.run()
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "tradebot live cycle for KRW-BTC, KRW-ETH, KRW-SOL"
    assert [line for line in lines if not line.startswith(" ")][1:4] == [
        line for line in lines[1:4]] and lines[1].startswith("✓ reconcile") and lines[2].startswith("✓ markets: 3 of 3")
    assert {"KRW-BTC", "KRW-ETH", "KRW-SOL"} <= set(lines)
    assert lines[-2].startswith("portfolio: free ") and lines[-1].startswith("→ ok: 2 traded, 1 hold")

    # One model request, the portfolio tool naming every market.
    [request] = [r for r in stack.model.requests if r.path.startswith("/v1/messages")]
    tool = request.body["tools"][0]
    assert tool["name"] == "record_decisions"
    assert tool["input_schema"]["properties"]["decisions"]["items"]["properties"]["market"]["enum"] == list(MARKETS)
    user = request.body["messages"][0]["content"]
    assert all(f"## {m}" in user for m in MARKETS) and user.count("Portfolio: free_krw") == 1

    # Buys by confidence: ETH (0.9) before BTC (0.7); both under the 50,000 KRW order cap.
    orders = stack.sim.orders()
    assert [(o["market"], o["side"]) for o in orders] == [("KRW-ETH", "bid"), ("KRW-BTC", "bid")]
    assert all(Decimal(o["price"]) == 50000 for o in orders)
    ledger_matches_trades(stack)

    # One decision row per market, all of one cycle; the trades point at their market's row.
    rows = stack.rows("SELECT ticker, decision, action, cycle_id, error, input_tokens, cost_usd FROM decisions WHERE role = 'acting' ORDER BY ticker")
    assert [r[:3] for r in rows] == [("KRW-BTC", "buy", "buy"), ("KRW-ETH", "buy", "buy"), ("KRW-SOL", "hold", "hold")]
    assert len({r[3] for r in rows}) == 1 and rows[0][3] is not None and all(r[4] is None for r in rows)
    assert all(r[5] > 0 for r in rows)  # the request's tokens shared out: the rows add up to the bill
    assert stack.rows("SELECT count(*) FROM trades t JOIN decisions d ON d.id = t.decision_id WHERE d.ticker = t.symbol") == [(2,)]
    # The run kept the traded markets' P&L checkpoints current: `tradebot pnl` replays nothing it wrote.
    assert stack.rows("SELECT symbol, state->>'trades' FROM pnl_checkpoints ORDER BY symbol") == [
        ("KRW-BTC", "1"), ("KRW-ETH", "1")]

    # One Telegram message listing both fills, escaped.
    [text] = stack.telegram.texts
    assert "2 trades" in text and "KRW-ETH" in text and "KRW-BTC" in text and "ETH &lt;b&gt;up&lt;/b&gt;" in text

    # Metrics: per-market series and the portfolio's.
    m = stack.metrics_samples()
    for market in MARKETS:
        assert m[("tradebot_last_run_success", (("mode", "live"), ("ticker", market)))] == 1.0
    assert m[("tradebot_portfolio_open_positions", (("mode", "live"),))] == 2.0
    assert m[("tradebot_portfolio_markets_failed", (("mode", "live"),))] == 0.0
    krw = Decimal(next(a["balance"] for a in stack.sim.state()["accounts"] if a["currency"] == "KRW"))
    assert m[("tradebot_portfolio_krw_free", (("mode", "live"),))] == pytest.approx(float(krw))
    success = stack.metrics_samples("tradebot_last_success.prom")
    assert {dict(labels)["ticker"] for _, labels in success} == set(MARKETS)


def test_json_lists_every_market_and_the_portfolio_totals(stack: Stack) -> None:
    out = stack.run("--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [m["ticker"] for m in summary["markets"]] == list(MARKETS)
    assert all(m["outcome"] == "hold" for m in summary["markets"])
    assert summary["exit_code"] == 0 and summary["portfolio"]["free_krw"] == "1000000"
    assert summary["portfolio"]["open_positions"] == 0 and summary["portfolio"]["failed_markets"] == []


def test_the_model_answering_for_some_markets_holds_the_others_and_exits_1(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.9), entry("KRW-ETH", "buy"), entry("KRW-ETH", "sell"),
                                           entry("KRW-DOGE", "buy")), name="record_decisions")
    out = stack.run()
    assert out.returncode == 1, out.stdout + out.stderr
    assert [(o["market"], o["side"]) for o in stack.sim.orders()] == [("KRW-BTC", "bid")]
    rows = dict((r[0], r[1:]) for r in stack.rows("SELECT ticker, decision, action, error FROM decisions WHERE role = 'acting'"))
    assert rows["KRW-BTC"] == ("buy", "buy", None)
    assert rows["KRW-ETH"][:2] == (None, "hold") and "2 entries for KRW-ETH" in rows["KRW-ETH"][2]
    assert rows["KRW-SOL"][:2] == (None, "hold") and "no entry for KRW-SOL" in rows["KRW-SOL"][2]
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("Error: KRW-ETH: advisor failed: ") and "KRW-SOL: advisor failed" in err
    [text] = stack.telegram.texts
    assert "1 trade, 2 failures" in text
    ledger_matches_trades(stack)
    m = stack.metrics_samples()
    assert m[("tradebot_last_run_success", (("mode", "live"), ("ticker", "KRW-BTC")))] == 1.0
    assert m[("tradebot_last_run_success", (("mode", "live"), ("ticker", "KRW-SOL")))] == 0.0
    assert m[("tradebot_cycle_errors_total", (("mode", "live"), ("ticker", "KRW-SOL")))] == 1.0
    # The market that succeeded still gets its success time; the failed ones have none yet.
    success = stack.metrics_samples("tradebot_last_success.prom")
    assert {dict(labels)["ticker"] for _, labels in success} == {"KRW-BTC"}


def test_an_unlisted_market_is_skipped_with_close_names_and_the_others_trade(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy"), entry("KRW-SOL", "buy")), name="record_decisions")
    out = stack.run(TRADEBOT_MARKETS="KRW-BTC,KRW-ETC,KRW-SOL")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "✗ markets: 2 of 3 listed on Upbit; not listed, skipped: KRW-ETC" in out.stdout
    assert "KRW-ETC is not among Upbit's 3 KRW markets — did you mean KRW-ETH or KRW-BTC?" in out.stderr
    [request] = [r for r in stack.model.requests if r.path.startswith("/v1/messages")]
    assert "KRW-ETC" not in json.dumps(request.body)
    assert sorted(o["market"] for o in stack.sim.orders()) == ["KRW-BTC", "KRW-SOL"]
    [(error,)] = stack.rows("SELECT error FROM decisions WHERE role = 'acting' AND ticker = 'KRW-ETC'")
    assert error.startswith("market: KRW-ETC is not among")


def test_candles_failing_for_one_market_do_not_stop_the_others(stack: Stack) -> None:
    # The first candle requests of the run are KRW-BTC's: they fail (5xx, after the adapter's retry).
    stack.sim.set_faults(fail_next=3, fail_status=503, fail_path="/v1/candles/minutes/60")
    stack.model.enqueue_tool_answer(answer(entry("KRW-ETH", "buy"), entry("KRW-SOL", "buy", 0.7)), name="record_decisions")
    out = stack.run()
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("Error: KRW-BTC: candles failed: ")
    assert [o["market"] for o in stack.sim.orders()] == ["KRW-ETH", "KRW-SOL"]
    [request] = [r for r in stack.model.requests if r.path.startswith("/v1/messages")]
    assert "## KRW-BTC" not in request.body["messages"][0]["content"]
    ledger_matches_trades(stack)


def test_two_buys_never_overdraw_the_krw_above_the_reserve(stack: Stack) -> None:
    # 1,000,000 KRW, 940,000 kept back: 60,000 to spend. ETH (0.9) takes the 50,000 order cap, BTC (0.8) gets
    # what is really left after ETH's fill and fee, SOL (0.7) nothing (below the minimum order).
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.8, 1), entry("KRW-ETH", "buy", 0.9, 1),
                                           entry("KRW-SOL", "buy", 0.7, 1)), name="record_decisions")
    out = stack.run(TRADEBOT_KRW_RESERVE="940000")
    assert out.returncode == 0, out.stdout + out.stderr
    orders = stack.sim.orders()
    assert [(o["market"], Decimal(o["price"])) for o in orders] == [("KRW-ETH", 50000), ("KRW-BTC", Decimal(9970))]
    krw = Decimal(next(a["balance"] for a in stack.sim.state()["accounts"] if a["currency"] == "KRW"))
    assert krw >= 940000
    [(vetoes,)] = stack.rows("SELECT vetoes FROM decisions WHERE role = 'acting' AND ticker = 'KRW-SOL'")
    assert vetoes[0]["rule"] == "min_order"
    [(clamps,)] = stack.rows("SELECT clamps FROM decisions WHERE role = 'acting' AND ticker = 'KRW-BTC'")
    assert [c["rule"] for c in clamps][-2:] == ["krw_reserve", "fee_headroom"]


def test_sells_go_first_and_their_proceeds_fund_the_buys(stack: Stack) -> None:
    btc_price = stack.sim.price("KRW-BTC")
    volume = (Decimal(60000) / btc_price).quantize(Decimal("0.00000001"))
    stack.sim.set_balance("BTC", volume, btc_price)
    stack.sim.set_balance("KRW", Decimal(30000))
    stack.model.enqueue_tool_answer(answer(entry("KRW-ETH", "buy", 0.9, 1), entry("KRW-BTC", "sell", 0.6, 1),
                                           entry("KRW-SOL", "hold", 0.5, 0)), name="record_decisions")
    out = stack.run(TRADEBOT_MAX_ORDER_KRW="80000")
    assert out.returncode == 0, out.stdout + out.stderr
    orders = stack.sim.orders()
    assert [(o["market"], o["side"]) for o in orders] == [("KRW-BTC", "ask"), ("KRW-ETH", "bid")]
    # The buy was sized on the 30,000 KRW plus the sell's real proceeds after its fee.
    _, _, gross, fee = exchange_fill(orders[0])
    assert Decimal(orders[1]["price"]) > 30000 and Decimal(orders[1]["price"]) * Decimal("1.0005") <= 30000 + gross - fee
    ledger_matches_trades(stack)


def test_exposure_and_open_position_limits_hold_for_the_portfolio(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.9, 1), entry("KRW-ETH", "buy", 0.8, 1),
                                           entry("KRW-SOL", "buy", 0.7, 1)), name="record_decisions")
    out = stack.run(TRADEBOT_MAX_EXPOSURE_KRW="70000", TRADEBOT_MAX_OPEN_POSITIONS="2")
    assert out.returncode == 0, out.stdout + out.stderr
    orders = stack.sim.orders()
    assert [(o["market"], Decimal(o["price"])) for o in orders] == [("KRW-BTC", 50000), ("KRW-ETH", Decimal(20000))]
    [(vetoes,)] = stack.rows("SELECT vetoes FROM decisions WHERE role = 'acting' AND ticker = 'KRW-SOL'")
    assert vetoes[0]["rule"] in ("max_open_positions", "min_order")


def test_a_dry_run_plans_the_sequence_and_sends_nothing(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.9, 1), entry("KRW-ETH", "buy", 0.8, 1),
                                           entry("KRW-SOL", "hold", 0.5, 0)), name="record_decisions")
    out = stack.run("--dry-run", TRADEBOT_KRW_RESERVE="930000")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dry run: would buy 50000 KRW" in out.stdout and "dry run: would buy 19965 KRW" in out.stdout
    assert stack.sim.orders() == [] and stack.rows("SELECT count(*) FROM trades") == [(0,)]
    assert stack.rows("SELECT count(*) FROM decisions WHERE role = 'acting' AND dry_run") == [(3,)]


def test_the_demo_runs_a_three_market_paper_portfolio(tb_env: dict[str, str], db_url: str) -> None:
    from tests.conftest import run_cli

    out = run_cli(["demo"], tb_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tradebot paper cycle for KRW-BTC, KRW-ETH, KRW-XRP" in out.stdout
    assert "✓ markets: 3 of 3 listed on Upbit" in out.stdout and "portfolio: free " in out.stdout
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT ticker, mode, cycle_id FROM decisions WHERE role = 'acting' ORDER BY ticker").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("KRW-BTC", "paper"), ("KRW-ETH", "paper"), ("KRW-XRP", "paper")]
    assert len({r[2] for r in rows}) == 1


def test_a_failed_market_still_counts_in_the_exposure(stack: Stack) -> None:
    """KRW-BTC holds 60,000 KRW of coin and its candles fail: it takes no turn, but its position still counts,
    so ETH's buy is clamped to the 40,000 KRW left under a 100,000 KRW exposure cap."""
    price = stack.sim.price("KRW-BTC")
    stack.sim.set_balance("BTC", (Decimal(60000) / price).quantize(Decimal("0.00000001")), price)
    stack.sim.set_faults(fail_next=3, fail_status=503, fail_path="/v1/candles/minutes/60")
    stack.model.enqueue_tool_answer(answer(entry("KRW-ETH", "buy", 0.9, 1), entry("KRW-SOL", "hold", 0.5, 0)),
                                    name="record_decisions")
    out = stack.run(TRADEBOT_MAX_EXPOSURE_KRW="100000")
    assert out.returncode == 1, out.stdout + out.stderr
    [order] = stack.sim.orders()
    assert order["market"] == "KRW-ETH" and 39_900 <= Decimal(order["price"]) <= 40_000
    [(clamps,)] = stack.rows("SELECT clamps FROM decisions WHERE role = 'acting' AND ticker = 'KRW-ETH'")
    assert clamps[-1]["rule"] == "max_exposure_krw" or "max_exposure_krw" in [c["rule"] for c in clamps]


def test_one_paper_account_for_every_market_and_paper_balance_lists_each_coin(stack: Stack) -> None:
    from tests.conftest import run_cli

    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "buy", 0.9), entry("KRW-ETH", "buy", 0.8),
                                           entry("KRW-SOL", "hold", 0.5, 0)), name="record_decisions")
    out = stack.run(TRADEBOT_MODE="paper")
    assert out.returncode == 0, out.stdout + out.stderr
    assert stack.sim.orders() == []  # paper: nothing reaches the exchange
    rows = stack.rows("SELECT symbol, total + fee FROM trades WHERE mode = 'paper' AND status = 'completed' ORDER BY id")
    assert [r[0] for r in rows] == ["KRW-BTC", "KRW-ETH"]
    balance = run_cli(["paper", "balance"], {**stack.env, "TRADEBOT_MODE": "paper"})
    assert balance.returncode == 0, balance.stderr
    lines = balance.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["KRW", "BTC", "ETH"]
    krw = Decimal(lines[0].split()[1].replace(",", ""))
    assert krw == 1_000_000 - sum(r[1] for r in rows)  # one KRW balance paid for both


def test_the_daily_loss_limit_holds_for_the_portfolio_as_a_whole(stack: Stack) -> None:
    """A loss realized today in KRW-BTC stops new buys of KRW-ETH too; sells go on."""
    import psycopg

    with psycopg.connect(stack.db_url) as conn:
        for i, (side, total) in enumerate((("buy", 100_000), ("sell", 60_000))):
            conn.execute(
                "INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee, "
                "requested_krw, requested_volume) VALUES (%s, %s, 'KRW-BTC', %s, 'live', 'completed', %s, 0.001, %s, 0, "
                "%s, %s)", (f"tb-loss-{i:04d}", f"u-loss-{i}", side, total * 1000, total,
                            total if side == "buy" else None, Decimal("0.001") if side == "sell" else None))
    stack.model.enqueue_tool_answer(answer(entry("KRW-BTC", "hold", 0.5, 0), entry("KRW-ETH", "buy", 0.9),
                                           entry("KRW-SOL", "buy", 0.8)), name="record_decisions")
    out = stack.run(TRADEBOT_DAILY_LOSS_LIMIT_KRW="30000")
    assert out.returncode == 0, out.stdout + out.stderr
    assert stack.sim.orders() == []
    vetoes = stack.rows("SELECT ticker, vetoes->0->>'rule' FROM decisions WHERE role = 'acting' AND ticker <> 'KRW-BTC' ORDER BY ticker")
    assert vetoes == [("KRW-ETH", "daily_loss_limit"), ("KRW-SOL", "daily_loss_limit")]
    m = stack.metrics_samples()
    assert m[("tradebot_portfolio_daily_realized_loss_krw", (("mode", "live"),))] == 40000.0


def test_doctor_checks_every_market_against_upbits_list(stack: Stack) -> None:
    from tests.conftest import run_cli

    out = run_cli(["doctor"], stack.env)
    assert "✓ upbit market data: KRW-BTC " in out.stdout and "KRW-SOL " in out.stdout, out.stdout
    assert "upbit markets" not in out.stdout
    out = run_cli(["doctor"], {**stack.env, "TRADEBOT_MARKETS": "KRW-BTC,KRW-ETC"})
    assert out.returncode != 0
    assert ("✗ upbit markets: KRW-ETC is not among Upbit's 3 KRW markets — did you mean KRW-ETH or KRW-BTC? — fix "
            "TRADEBOT_MARKETS") in out.stdout, out.stdout
    assert "✓ upbit market data: KRW-BTC " in out.stdout
