"""Rendering of ``backtest`` and ``backtest --compare-live`` (table and JSON).

Decimals are written as exact strings; the simulation's own float figures stay JSON numbers.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradebot.cli.render import table


def backtest_output(report: Any, fmt: str, *, compare_live: bool) -> str:
    """The text ``backtest`` prints: the report as a table, or as JSON (``fmt`` "json")."""
    from tradebot.cli.render.backtest_portfolio import compare_totals, compare_totals_table, portfolio_json, portfolio_table

    if isinstance(report, list):  # --compare-live over several markets
        if fmt == "json":
            return json.dumps({"markets": [compare_json(c) for c in report], "portfolio": compare_totals(report)},
                              indent=2, ensure_ascii=False)
        return "\n\n".join([*(compare_table(c) for c in report), compare_totals_table(report)])
    if hasattr(report, "markets"):  # several markets replayed together
        if fmt == "json":
            return json.dumps(portfolio_json(report), indent=2, ensure_ascii=False)
        return portfolio_table(report)
    if fmt == "json":
        payload = compare_json(report) if compare_live else backtest_json(report)
        return json.dumps(payload, indent=2, ensure_ascii=False)
    return compare_table(report) if compare_live else backtest_table(report)


class DownloadProgress:
    """``fetching KRW-BTC candles: 4,000 of 8,760 hours`` on one stderr line, rewritten as chunks arrive."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, market: str, done: int, total: int) -> None:
        import sys

        sys.stderr.write(f"\rfetching {market} candles: {min(done, total):,} of {total:,} hours")
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        """End the progress line (if one was shown), so what follows starts on its own line."""
        import sys

        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def download_progress() -> DownloadProgress:
    return DownloadProgress()


def write_plot(report: Any, path: Path, *, compare_live: bool) -> None:
    """``--plot``: the backtest's equity curve as a PNG (with --compare-live, the strategy's side)."""
    from tradebot.backtest.plot import plot_report

    plot_report(report.backtest if compare_live else report, path)


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None else None


def _exact(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _pct(x: float | Decimal | None, places: int = 2, signed: bool = True) -> str:
    if x is None:
        return "-"
    return f"{float(x) * 100:{'+' if signed else ''}.{places}f} %"


def _krw(x: float | Decimal | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{float(x):{'+' if signed else ''},.0f} KRW"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items())) or "none"


def backtest_json(r: Any) -> dict[str, Any]:
    """The ``--format json`` object of a backtest (floats are the simulation's own numbers)."""
    return {
        "market": r.market, "source": r.source, "since": _iso(r.since), "until": _iso(r.until),
        "first_candle": _iso(r.first_candle), "last_candle": _iso(r.last_candle), "bars": r.bars,
        "warmup_bars": r.warmup_bars, "gaps": r.gaps, "missing_hours": r.missing_hours,
        "starting_krw": r.starting_krw, "final_equity": r.final_equity, "return": r.total_return,
        "buy_hold_return": r.buy_hold_return, "max_drawdown": r.max_drawdown, "sharpe": r.sharpe,
        "trades": r.trades, "buys": r.buys, "sells": r.sells, "win_rate": r.win_rate, "fees": r.fees,
        "fee_rate": r.fee_rate,
        "limits": {"min_confidence": _exact(r.limits.min_confidence), "max_order_krw": _exact(r.limits.max_order_krw),
                   "max_position_krw": _exact(r.limits.max_position_krw),
                   "daily_loss_limit_krw": _exact(r.limits.daily_loss_limit_krw)},
        "gate_calls": r.gate_calls, "vetoes": dict(sorted(r.vetoes.items())), "clamps": dict(sorted(r.clamps.items())),
        "compute_seconds": r.compute_seconds,
        "fills": [{"time": _iso(t.at), "side": t.side, "price": t.price, "volume": t.volume, "krw": t.krw,
                   "fee": t.fee, "pnl": t.pnl} for t in r.fills],
        "notes": list(r.notes),
    }


def backtest_table(r: Any) -> str:
    """The human report of a backtest."""
    lim = r.limits
    rows = [
        ("Candles", f"{r.first_candle:%Y-%m-%d %H:%M} → {r.last_candle:%Y-%m-%d %H:%M} UTC ({r.source})"),
        ("Bars", f"{r.bars:,} hourly, {r.gaps:,} gap(s) ({r.missing_hours:,} hour(s) without a candle), "
                 f"{r.warmup_bars:,} warm-up"),
        ("Equity", f"{_krw(r.starting_krw)} → {_krw(r.final_equity)}"),
        ("Return", f"{_pct(r.total_return)} (buy and hold {_pct(r.buy_hold_return)})"),
        ("Max drawdown", _pct(r.max_drawdown, signed=False)),
        ("Sharpe", f"{r.sharpe:.2f} (hourly returns, annualized)"),
        ("Trades", f"{r.trades:,} ({r.buys:,} buys, {r.sells:,} sells), win rate "
                   f"{'-' if r.win_rate is None else f'{r.win_rate * 100:.1f} %'}"),
        ("Fees paid", f"{r.fees:,.0f} KRW ({r.fee_rate * 100:.2f} % per side)"),
        ("Risk gate", f"min confidence {lim.min_confidence}, max order {lim.max_order_krw:,f} KRW, max position "
                      f"{lim.max_position_krw:,f} KRW, daily loss limit {lim.daily_loss_limit_krw:,f} KRW"),
        ("", f"{r.gate_calls:,} gate call(s); held: {_counts(r.vetoes)}; clamped: {_counts(r.clamps)}"),
        ("Fills", "next candle's open, no slippage; no look-ahead"),
        ("Compute", f"{r.compute_seconds:.3f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    head = f"Backtest of {r.market}: rule strategy + risk gate"
    return "\n".join([head] + [f"{k.ljust(width)}  {v}" for k, v in rows])


def compare_json(c: Any) -> dict[str, Any]:
    """The ``--compare-live --format json`` object (Decimals as exact strings, simulation floats as numbers)."""
    return {
        "market": c.market, "mode": c.mode, "first_decision": _iso(c.first_decision),
        "last_decision": _iso(c.last_decision), "decisions": c.decisions, "comparable": c.comparable,
        "matching": c.matching, "differing": c.differing, "candle_mismatches": c.candle_mismatches,
        "differences": [{
            "decision_id": d.decision_id, "at": _iso(d.at), "candle": _iso(d.candle),
            "strategy_proposal": d.strategy_proposal, "strategy_action": d.strategy_action,
            "strategy_krw": _exact(d.strategy_krw), "strategy_volume": _exact(d.strategy_volume),
            "bot_advisor": d.bot_advisor, "bot_proposal": d.bot_proposal, "bot_action": d.bot_action,
            "bot_krw": _exact(d.bot_krw), "bot_volume": _exact(d.bot_volume), "note": d.note,
        } for d in c.differences],
        "orders": c.orders, "filled_orders": c.filled_orders,
        "slippage": {
            "avg_bps": _exact(c.slippage_avg_bps), "worst_bps": _exact(c.slippage_worst_bps),
            "fills": [{"decision_id": s.decision_id, "trade_id": s.trade_id, "at": _iso(s.at), "side": s.side,
                       "decision_price": _exact(s.decision_price), "fill_price": _exact(s.fill_price),
                       "bps": _exact(s.bps), "requested": _exact(s.requested), "filled": _exact(s.filled),
                       "fee": _exact(s.fee)} for s in c.slippage],
        },
        "fees": {"bot": _exact(c.bot_fees), "strategy": c.backtest.fees},
        "pnl": {"starting_equity": _exact(c.starting_equity), "bot_pnl": _exact(c.bot_pnl),
                "bot_return": _exact(c.bot_return), "strategy_pnl": c.strategy_pnl,
                "strategy_return": c.strategy_return, "gap_krw": c.pnl_gap, "gap_return": c.return_gap},
        "backtest": backtest_json(c.backtest),
        "notes": list(c.notes),
    }


def compare_table(c: Any) -> str:
    """The human report of ``--compare-live``: summary, differing decisions, fills."""
    b = c.backtest
    slip = ("no filled orders" if c.slippage_avg_bps is None else
            f"average {float(c.slippage_avg_bps):+.1f} bps, worst {float(c.slippage_worst_bps):+.1f} bps "
            f"(fill vs the decision's price; + is worse)")
    rows = [
        ("Period", f"{c.first_decision:%Y-%m-%d %H:%M} → {c.last_decision:%Y-%m-%d %H:%M} UTC; candles "
                   f"{b.first_candle:%Y-%m-%d %H:%M} → {b.last_candle:%Y-%m-%d %H:%M} ({b.bars:,} bars, {b.source})"),
        ("Decisions", f"{c.decisions:,} recorded, {c.comparable:,} comparable: {c.matching:,} same as the strategy, "
                      f"{c.differing:,} different; {c.candle_mismatches:,} candle mismatch(es)"),
        ("", f"(the backtest decides on every one of the {b.bars:,} hourly candles, the bot decided {c.decisions:,} "
             "time(s))"),
        ("Orders", f"{c.orders:,} placed, {c.filled_orders:,} filled"),
        ("Slippage", slip),
        ("Fees", f"bot {float(c.bot_fees):,.0f} KRW, strategy {b.fees:,.0f} KRW"),
        ("P&L", f"bot {_krw(c.bot_pnl, True)} ({_pct(c.bot_return)}), strategy {_krw(c.strategy_pnl, True)} "
                f"({_pct(c.strategy_return)}) from {_krw(c.starting_equity)}"),
        ("Gap", f"{_krw(c.pnl_gap, True)} ({_pct(c.return_gap)}) strategy − bot"),
    ]
    width = max(len(k) for k, _ in rows)
    out = [f"Live vs strategy for {c.market} ({c.mode})"] + [f"{k.ljust(width)}  {v}" for k, v in rows]
    diffs = c.differences
    if diffs:
        out += ["", "Decisions that differ"]
        out.append(table(
            ["ID", "TIME (UTC)", "CANDLE", "STRATEGY", "BOT", "NOTE"],
            [[str(d.decision_id), f"{d.at:%Y-%m-%d %H:%M}", f"{d.candle:%m-%d %H:%M}" if d.candle else "-",
              f"{d.strategy_proposal}→{d.strategy_action}", f"{d.bot_proposal or '-'}→{d.bot_action}", d.note]
             for d in diffs],
            [True, False, False, False, False, False]))
    if c.slippage:
        out += ["", "Fills"]
        out.append(table(
            ["DECISION", "TIME (UTC)", "SIDE", "DECISION PRICE", "FILL PRICE", "BPS", "REQUESTED", "FILLED", "FEE KRW"],
            [[str(s.decision_id), f"{s.at:%Y-%m-%d %H:%M}", s.side, f"{s.decision_price:,.0f}", f"{s.fill_price:,.2f}",
              f"{float(s.bps):+.1f}", (f"{s.requested:,.0f} KRW" if s.side == "buy" else f"{s.requested:f}"),
              (f"{s.filled:,.0f} KRW" if s.side == "buy" else f"{s.filled:f}"), f"{s.fee:,.2f}"] for s in c.slippage],
            [True, False, False, True, True, True, True, True, True]))
    return "\n".join(out)

