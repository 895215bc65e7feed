"""The ``tradebot backtest`` command: parse options, make one core call, render table or JSON.

Registered on the main app by :func:`register` (``cli.py`` calls it once). The core is
:mod:`tradebot.app_backtest`; nothing here computes, fetches or speaks SQL. Heavy modules are imported inside
the command so that ``tradebot --help`` stays fast.
"""

import json
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


# Upbit opened its KRW markets on this day: a backtest period before it has no candles anywhere.
UPBIT_KRW_START = datetime(2017, 9, 25, tzinfo=timezone.utc)


def _days(value: Any) -> int:
    """--days: a whole number from 1 to 3,650, read like every number (see tradebot.cli.whole_number)."""
    from tradebot.cli import whole_number

    return whole_number(1, 3650)(value)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


class LiveMode(str, Enum):
    paper = "paper"
    live = "live"


def backtest(
    ctx: typer.Context,
    days: Annotated[Optional[int], typer.Option(parser=_days, metavar="INTEGER", help="Length of the period in days (1-3,650), ending at --until (default 365; with --csv the period ends with the file).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Start of the period: a date (YYYY-MM-DD) or ISO timestamp, UTC unless it has an offset.")] = None,
    until: Annotated[Optional[str], typer.Option(help="End of the period (exclusive; a bare date includes that day). Default: the current hour.")] = None,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Read hourly candles from this CSV (Upbit candle fields, or time,open,high,low,close,volume) instead of the exchange.", dir_okay=False)] = None,
    market: Annotated[Optional[str], typer.Option(help="Market, e.g. KRW-BTC (default: TRADEBOT_TICKER).")] = None,
    starting_krw: Annotated[Optional[str], typer.Option(help="Starting KRW of the simulated account (default: TRADEBOT_PAPER_KRW).")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw the equity curve to this PNG (needs the 'plot' extra: matplotlib).", dir_okay=False)] = None,
    compare_live: Annotated[bool, typer.Option("--compare-live", help="Compare the recorded decisions and fills with what the strategy would have done over their period.")] = False,
    mode: Annotated[Optional[LiveMode], typer.Option(help="With --compare-live: the paper or live records (default: TRADEBOT_MODE).")] = None,
) -> None:
    """Backtest the rule strategy through the live risk gate over hourly candles.

    Same strategy, same risk gate (min confidence, max order, max position, fee headroom, 5,000 KRW minimum,
    dust rule, daily loss limit), same 0.05 % fee as the live cycle. A signal on a completed candle fills at
    the next candle's open, without slippage; no look-ahead. Candles come from the exchange (200 per
    request) and are cached in the database, so a second run needs no network; --csv reads a file instead.
    Hours without trades stay gaps. With --compare-live, the bot's recorded decisions are replayed with the
    strategy and compared: differing decisions, slippage of fills, fees, and the P&L gap.
    """
    import os

    # OpenBLAS starts a thread pool for the indicators' small matrix products; on a busy two-core machine
    # waking it costs more than the products (signals for a year: ~2 ms on one thread, 10-50 ms with the pool
    # under load). Only effective before NumPy is imported, which this command does first.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from tradebot.app_backtest import run_backtest_command, run_compare_command
    from tradebot.backtest.plot import plot_report
    from tradebot.backtest.simulate import BacktestRequest
    from tradebot.cli import market_option, parse_when, positive_decimal, settings_from
    from tradebot.config import MAX_KRW

    settings = settings_from(ctx)
    market = market_option(market, "--market") if market else settings.market
    if days is not None and since is not None and until is not None:
        raise typer.BadParameter("give --days or --since with --until, not all three", param_hint="--days")
    if days is not None and since is not None:
        raise typer.BadParameter("give --days or --since, not both", param_hint="--days")
    krw: Decimal | None = (positive_decimal(starting_krw, "--starting-krw", "amount of KRW", hi=MAX_KRW)
                           if starting_krw is not None else None)
    if compare_live and starting_krw is not None:
        raise typer.BadParameter("--compare-live starts from the bot's recorded equity", param_hint="--starting-krw")
    start: datetime | None = parse_when(since, "--since")
    end: datetime | None = parse_when(until, "--until", end_of_day=True)  # None when far in the future
    for option, text, when in (("--since", since, start), ("--until", until, end)):
        if when is not None and (when < UPBIT_KRW_START or (option == "--until" and when == UPBIT_KRW_START)):
            raise typer.BadParameter(f"{text!r} is before {UPBIT_KRW_START:%Y-%m-%d}, when Upbit opened its KRW markets: "
                                     "there is nothing to backtest before it", param_hint=option)
    if start is not None and end is not None and start >= end:
        raise typer.BadParameter("must be after --since", param_hint="--until")
    req = BacktestRequest(market=market, days=days, since=start, until=end, csv=csv_file, starting_krw=krw)

    if compare_live:
        report: Any = run_compare_command(settings, req, (mode.value if mode else settings.mode))
        backtest_report = report.backtest
    else:
        report = run_backtest_command(settings, req)
        backtest_report = report
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    if plot is not None:
        plot_report(backtest_report, plot)
    if fmt is OutputFormat.json:
        payload = compare_json(report) if compare_live else backtest_json(report)
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        typer.echo(compare_table(report) if compare_live else backtest_table(report))
    if plot is not None:
        typer.echo(f"wrote {plot}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``backtest`` to ``app`` (once; calling it again changes nothing)."""
    if any(c.name == "backtest" for c in app.registered_commands):
        return
    from tradebot.cli import errors_to_exit

    app.command("backtest")(errors_to_exit(backtest))


# ------------------------------------------------------------------------------------------------ render
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
    from tradebot.render import table

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
