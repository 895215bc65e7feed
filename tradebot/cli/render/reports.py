"""Rendering of the reports: ``trades list`` and ``pnl`` (table, JSON, CSV)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from decimal import Decimal
from typing import Any

from tradebot.cli.render import krw, record_dict, table, to_csv, to_json, volume, volumes

PNL_COLUMNS = ("symbol", "mode", "trades", "buys", "sells", "position_volume", "average_cost", "cost_basis", "price",
               "price_source", "unrealized_pnl", "realized_pnl", "total_pnl", "fees", "round_trips", "win_rate",
               "best_trade", "worst_trade", "unmatched_volume", "max_drawdown", "capital", "return_on_capital",
               "buy_hold_pnl", "buy_hold_return")
PERIOD_COLUMNS = ("period", "symbol", "mode", "realized_pnl", "fees", "buys", "sells", "bought_volume", "sold_volume")


def trades_output(trades: Sequence[Any], fmt: str) -> tuple[str, bool]:
    """``trades list`` in ``fmt`` (table, json or csv): (text, whether to end it with a newline)."""
    from tradebot.models import TRADE_COLUMNS

    if fmt == "json":
        return to_json(trades), True
    if fmt == "csv":
        return to_csv(trades, TRADE_COLUMNS), False
    text = trades_table(trades)
    if not trades:
        text += "\nNo trades match these filters."
    return text, True


def pnl_output(reports: Sequence[Any], periods: Sequence[Any], fmt: str, *, by: bool, detail: bool) -> tuple[str, bool]:
    """``pnl`` in ``fmt`` (table, json or csv): (text, whether to end it with a newline). JSON is a list of
    reports, or ``{"reports": …, "periods": …}`` with ``--by``; CSV is the reports, or the periods with ``--by``."""
    if fmt == "json":
        out = []
        for r in reports:
            d = {k: v for k, v in record_dict(r).items() if k in PNL_COLUMNS}
            if detail:
                d["sells_detail"] = [record_dict(x) for x in r.realized_sells]
            out.append(d)
        payload: Any = {"reports": out, "periods": [record_dict(p) for p in periods]} if by else out
        return json.dumps(payload, indent=2), True
    if fmt == "csv":
        return (to_csv(periods, PERIOD_COLUMNS) if by else to_csv(reports, PNL_COLUMNS)), False
    blocks = [] if reports else ["No completed trades match these filters."]
    blocks += [pnl_table(r) for r in reports]
    if by and periods:
        blocks.append(period_table(periods))
    return "\n".join(blocks), True


def trades_table(trades: Sequence[Any]) -> str:
    """The ``trades list`` table: times in UTC, KRW with thousands separators, volumes to 8 decimals."""
    headers = ["ID", "TIME (UTC)", "SYMBOL", "SIDE", "MODE", "STATUS", "PRICE", "AMOUNT", "TOTAL KRW", "FEE KRW", "ORDER"]
    rows = []
    for t in trades:
        rows.append([
            str(t.id),
            t.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            t.symbol,
            t.side,
            t.mode,
            t.status + (" (recovered)" if t.recovered else ""),
            krw(t.price, 2 if t.price is not None and t.price < 100 else 0),
            volume(t.amount),
            krw(t.total),
            krw(t.fee, 2),
            (t.trade_id or "-")[:8],
        ])
    right = [True, False, False, False, False, False, True, True, True, True, False]
    return table(headers, rows, right)


def _pct(x: Decimal | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f} %"


def pnl_table(r: Any) -> str:
    """One P&L report as an aligned block."""
    lines = [
        ("market", f"{r.symbol} ({r.mode})"),
        ("trades", f"{r.trades} ({r.buys} buys, {r.sells} sells, {r.round_trips} round trips)"),
        ("position", f"{volume(r.position_volume)} at average cost {krw(r.average_cost)} KRW (cost basis {krw(r.cost_basis)} KRW)"),
        ("price", f"{krw(r.price)} KRW ({r.price_source})"),
        ("realized P&L", f"{krw(r.realized_pnl)} KRW"),
        ("unrealized P&L", f"{krw(r.unrealized_pnl)} KRW"),
        ("total P&L", f"{krw(r.total_pnl)} KRW ({_pct(r.return_on_capital)} on {krw(r.capital)} KRW of capital)"),
        ("fees paid", f"{krw(r.fees, 2)} KRW"),
        ("win rate", "-" if r.win_rate is None else f"{r.win_rate * 100:.1f} %"),
        ("best / worst sell", f"{krw(r.best_trade)} / {krw(r.worst_trade)} KRW"),
        ("max drawdown", f"{krw(r.max_drawdown)} KRW"),
        ("buy and hold", f"{krw(r.buy_hold_pnl)} KRW ({_pct(r.buy_hold_return)})"),
    ]
    if r.unmatched_volume:
        lines.append(("unmatched", f"{volume(r.unmatched_volume)} sold beyond the recorded position (no cost known)"))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines) + "\n"


def period_table(rows: Sequence[Any]) -> str:
    headers = ["PERIOD", "SYMBOL", "MODE", "REALIZED KRW", "FEES KRW", "BUYS", "SELLS", "BOUGHT", "SOLD"]
    # Column by column, one comprehension each (`--by day` prints 16,000 rows); krw() inlined: a period's
    # realized P&L and fees are never missing.
    columns = [[p.period for p in rows], [p.symbol for p in rows], [p.mode for p in rows],
               [f"{p.realized_pnl:,.0f}" for p in rows], [f"{p.fees:,.2f}" for p in rows], [str(p.buys) for p in rows],
               [str(p.sells) for p in rows], volumes(p.bought_volume for p in rows), volumes(p.sold_volume for p in rows)]
    return table(headers, list(zip(*columns, strict=True)), [False, False, False, True, True, True, True, True, True])


MARKET_COLUMNS = ("market", "korean_name", "english_name", "price", "change_rate", "traded_value_24h", "warning",
                  "cautions")


def markets_output(quotes: Sequence[Any], fmt: str) -> tuple[str, bool]:
    """``markets`` in ``fmt``: a table for people (KRW with separators, the change in %), or JSON/CSV with
    exact decimals (``cautions`` a list in JSON, ``;``-separated in CSV)."""
    if fmt == "json":
        return json.dumps([{**record_dict(q), "cautions": list(q.cautions)} for q in quotes], indent=2,
                          ensure_ascii=False), True
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(MARKET_COLUMNS)
        for q in quotes:
            d = record_dict(q)
            writer.writerow([";".join(q.cautions) if c == "cautions" else d[c] for c in MARKET_COLUMNS])
        return buf.getvalue(), False
    rows = [[str(i), q.market, q.english_name or q.korean_name, krw(q.price, 2 if q.price < 100 else 0),
             f"{q.change_rate * 100:+.2f} %", krw(q.traded_value_24h),
             ", ".join((["warning"] if q.warning else []) + [c.lower() for c in q.cautions]) or "-"]
            for i, q in enumerate(quotes, 1)]
    text = table(["#", "MARKET", "NAME", "PRICE KRW", "CHANGE", "24H TRADED KRW", "UPBIT FLAGS"], rows,
                 [True, False, False, True, True, True, False])
    return (text if quotes else "Upbit listed no KRW market."), True
