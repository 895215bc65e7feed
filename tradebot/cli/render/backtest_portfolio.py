"""Rendering of ``backtest --markets`` (several markets replayed together) and of ``--compare-live`` over
several markets (table and JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradebot.cli.render import table
from tradebot.cli.render.backtest import _counts, _exact, _iso, _krw, _pct


def _limits_text(lim: Any) -> str:
    exposure = "none" if lim.max_exposure_krw is None else f"{lim.max_exposure_krw:,f} KRW"
    return (f"min confidence {lim.min_confidence}, max order {lim.max_order_krw:,f} KRW, max position "
            f"{lim.max_position_krw:,f} KRW per market, max exposure {exposure}, max open positions "
            f"{lim.max_open_positions or '-'}, KRW reserve {lim.krw_reserve:,f}, daily loss limit "
            f"{lim.daily_loss_limit_krw:,f} KRW")


def portfolio_json(r: Any) -> dict[str, Any]:
    """``backtest --markets --format json``: one object per market and the total (money as exact strings)."""
    return {
        "markets": [{"market": b.market, "bars": b.bars, "trades": b.trades, "buys": b.buys, "sells": b.sells,
                     "fees": _exact(b.fees), "realized_pnl": _exact(b.realized_pnl), "volume": _exact(b.volume),
                     "value": _exact(b.value), "unrealized_pnl": _exact(b.unrealized_pnl),
                     "buy_hold_return": b.buy_hold_return, "vetoes": dict(sorted(b.vetoes.items())),
                     "clamps": dict(sorted(b.clamps.items()))} for b in r.markets],
        "total": {"since": _iso(r.since), "until": _iso(r.until), "hours": r.hours, "source": r.source,
                  "starting_krw": _exact(r.starting_krw), "final_krw": _exact(r.final_krw),
                  "final_equity": _exact(r.final_equity), "return": r.total_return,
                  "buy_hold_return": r.buy_hold_return, "max_drawdown": r.max_drawdown, "sharpe": r.sharpe,
                  "trades": r.trades, "fees": _exact(r.fees), "win_rate": r.win_rate,
                  "limits": {k: _exact(getattr(r.limits, k)) for k in ("min_confidence", "max_order_krw",
                             "max_position_krw", "max_exposure_krw", "krw_reserve", "daily_loss_limit_krw")}
                  | {"max_open_positions": r.limits.max_open_positions},
                  "compute_seconds": r.compute_seconds},
        "notes": list(r.notes),
    }


def portfolio_table(r: Any) -> str:
    """The human report of ``backtest --markets``: the portfolio, then a row per market and the total."""
    rows = [
        ("Period", f"{r.since:%Y-%m-%d %H:%M} → {r.until:%Y-%m-%d %H:%M} UTC, {r.hours:,} hours ({r.source})"),
        ("Equity", f"{_krw(r.starting_krw)} → {_krw(r.final_equity)} ({_krw(r.final_krw)} in KRW)"),
        ("Return", f"{_pct(r.total_return)} (buy and hold, equal weights {_pct(r.buy_hold_return)})"),
        ("Max drawdown", _pct(r.max_drawdown, signed=False)),
        ("Sharpe", f"{r.sharpe:.2f} (hourly returns, annualized)"),
        ("Trades", f"{r.trades:,}, win rate {'-' if r.win_rate is None else f'{r.win_rate * 100:.1f} %'}"),
        ("Fees paid", f"{r.fees:,.0f} KRW"),
        ("Risk gate", _limits_text(r.limits)),
        ("Sequence", "one KRW balance; each hour sells first, then buys by confidence, each on the KRW really left"),
        ("Fills", "next candle's open, no slippage; no look-ahead"),
        ("Compute", f"{r.compute_seconds:.3f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    head = f"Backtest of {', '.join(b.market for b in r.markets)} together: rule strategy + portfolio risk gate"
    body = table(
        ["MARKET", "BARS", "TRADES", "FEES KRW", "REALIZED KRW", "UNREALIZED KRW", "VALUE KRW", "BUY&HOLD", "HELD BY THE GATE"],
        [[b.market, f"{b.bars:,}", f"{b.trades:,}", f"{b.fees:,.0f}", f"{b.realized_pnl:+,.0f}",
          f"{b.unrealized_pnl:+,.0f}", f"{b.value:,.0f}", _pct(b.buy_hold_return), _counts(b.vetoes)]
         for b in r.markets]
        + [["TOTAL", "", f"{r.trades:,}", f"{r.fees:,.0f}",
            f"{sum(b.realized_pnl for b in r.markets):+,.0f}",
            f"{sum(b.unrealized_pnl for b in r.markets):+,.0f}", f"{sum(b.value for b in r.markets):,.0f}",
            _pct(r.buy_hold_return), ""]],
        [False, True, True, True, True, True, True, True, False])
    return "\n".join([head] + [f"{k.ljust(width)}  {v}" for k, v in rows] + ["", body])


def compare_totals(reports: Sequence[Any]) -> dict[str, Any]:
    """The portfolio's side of ``--compare-live`` over several markets: the markets' figures added up."""
    bot = sum((c.bot_pnl for c in reports), Decimal(0))
    strategy = sum(c.strategy_pnl for c in reports)
    return {"markets": [c.market for c in reports], "decisions": sum(c.decisions for c in reports),
            "matching": sum(c.matching for c in reports), "differing": sum(c.differing for c in reports),
            "orders": sum(c.orders for c in reports), "filled_orders": sum(c.filled_orders for c in reports),
            "bot_fees": _exact(sum((c.bot_fees for c in reports), Decimal(0))),
            "strategy_fees": sum(c.backtest.fees for c in reports), "bot_pnl": _exact(bot),
            "strategy_pnl": strategy, "gap_krw": strategy - float(bot)}


def compare_totals_table(reports: Sequence[Any]) -> str:
    t = compare_totals(reports)
    return "\n".join([
        f"Live vs strategy for the portfolio ({', '.join(t['markets'])}; each market compared on its own above)",
        f"Decisions  {t['decisions']:,} recorded: {t['matching']:,} same as the strategy, {t['differing']:,} different",
        f"Orders     {t['orders']:,} placed, {t['filled_orders']:,} filled",
        f"Fees       bot {Decimal(t['bot_fees']):,.0f} KRW, strategy {t['strategy_fees']:,.0f} KRW",
        f"P&L        bot {_krw(Decimal(t['bot_pnl']), True)}, strategy {_krw(t['strategy_pnl'], True)}",
        f"Gap        {_krw(t['gap_krw'], True)} strategy − bot",
    ])
