"""Rendering of ``tradebot advisors report`` (table, JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

from tradebot.cli.render import exact, krw, table
from tradebot.scorecard.score import HORIZONS_H

CSV_COLUMNS = ("market", "advisor", "reflection", "decisions", "buys", "sells", "holds", "failed",
               *(f"scored_{h}h" for h in HORIZONS_H), *(f"hit_rate_{h}h" for h in HORIZONS_H),
               *(f"mean_return_after_buy_{h}h" for h in HORIZONS_H),
               *(f"mean_return_after_sell_{h}h" for h in HORIZONS_H),
               "start_krw", "pnl_krw", "pnl_pct", "max_drawdown", "fills", "input_tokens", "output_tokens",
               "cache_read_tokens", "cache_write_tokens", "cost_usd", "cost_krw", "cost_per_decision_usd")


def _flat(f: Any, usd_krw: Decimal) -> dict[str, Any]:
    d: dict[str, Any] = {"market": f.market, "advisor": f.advisor, "reflection": f.reflection,
                         "decisions": f.decisions, "buys": f.buys, "sells": f.sells, "holds": f.holds,
                         "failed": f.failed}
    for h in HORIZONS_H:
        d[f"scored_{h}h"] = f.scored.get(h, 0)
        d[f"hit_rate_{h}h"] = f.hit_rate(h)
    for kind in ("buy", "sell"):
        for h in HORIZONS_H:
            d[f"mean_return_after_{kind}_{h}h"] = f.mean_return(h, kind)
    d.update({"start_krw": f.start_krw, "pnl_krw": f.pnl_krw, "pnl_pct": f.pnl_pct, "max_drawdown": f.max_drawdown,
              "fills": f.fills, "input_tokens": f.input_tokens, "output_tokens": f.output_tokens,
              "cache_read_tokens": f.cache_read_tokens, "cache_write_tokens": f.cache_write_tokens,
              "cost_usd": f.cost_usd, "cost_krw": f.cost_krw(usd_krw), "cost_per_decision_usd": f.cost_per_decision})
    return {k: exact(v) for k, v in d.items()}


def advisors_output(card: Any, fmt: str) -> tuple[str, bool]:
    """The scorecard in ``fmt``: (text, whether to end it with a newline). JSON: the rows (exact decimals,
    null where there is nothing to measure yet), the real P&L, verdicts and warnings; CSV: the rows."""
    rows = [_flat(f, card.usd_krw) for f in card.rows]
    if fmt == "json":
        return json.dumps({"mode": card.mode, "since": exact(card.since), "until": exact(card.until),
                           "usd_krw": exact(card.usd_krw), "days": exact(round(card.days, 2)), "rows": rows,
                           "real_pnl": {m: exact(v) for m, v in card.real_pnl.items()},
                           "verdicts": card.verdicts, "warnings": card.warnings, "empty": card.empty},
                          indent=2), True
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow(["" if r[c] is None else r[c] for c in CSV_COLUMNS])
        return buf.getvalue(), False
    if card.empty:
        return card.empty, True
    return _table(card), True


def _pct(x: Decimal | None, places: int = 1) -> str:
    return "-" if x is None else f"{x * 100:.{places}f} %"


def _signed_pct(x: Decimal | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f} %"


def _table(card: Any) -> str:
    window = f"{card.since:%Y-%m-%d %H:%M}" if card.since else "the first decision"
    window += f" to {card.until:%Y-%m-%d %H:%M} UTC" if card.until else " to now"
    out = [f"Advisor scorecard ({card.mode}), {window}: {card.days:.1f} days. Hit: right after the round-trip fee "
           "(see `tradebot advisors report --help`); ledger: its decisions through the risk gate, filled at the next "
           "hour's open.", ""]
    headers = ["MARKET", "ADVISOR", "DECISIONS", "BUY/SELL/HOLD/FAILED", *(f"HIT {h}H" for h in HORIZONS_H),
               "AFTER BUY 24H", "AFTER SELL 24H", "LEDGER KRW", "LEDGER %", "MAX DD", "COST USD", "COST KRW",
               "USD/DECISION"]
    body = []
    for f in card.rows:
        body.append([f.market, f.label, f"{f.decisions:,}", f"{f.buys}/{f.sells}/{f.holds}/{f.failed}",
                     *(_pct(f.hit_rate(h)) + f" ({f.scored.get(h, 0)})" for h in HORIZONS_H),
                     _signed_pct(f.mean_return(24, "buy")), _signed_pct(f.mean_return(24, "sell")),
                     "-" if f.pnl_krw is None else f"{f.pnl_krw:+,.0f}", _signed_pct(f.pnl_pct), _pct(f.max_drawdown),
                     f"{f.cost_usd:,.2f}" if f.cost_usd else "-",
                     krw(f.cost_krw(card.usd_krw)) if f.cost_usd else "-",
                     f"{f.cost_per_decision:.4f}" if f.cost_per_decision is not None else "-"])
    out.append(table(headers, body, [False, False, *([True] * (len(headers) - 2))]))
    for market, real in sorted(card.real_pnl.items()):
        acting = next((f for f in card.rows if f.market == market and f.advisor == "acting" and not f.reflection), None)
        line = f"{market}: the bot's recorded P&L over the window {real:+,.0f} KRW"
        if acting is not None and acting.pnl_krw is not None:
            line += (f"; its decisions' ledger {acting.pnl_krw:+,.0f} KRW — the difference, {real - acting.pnl_krw:+,.0f}"
                     " KRW, is execution and slippage (and any position held before the window)")
        out.append(line)
    if card.verdicts:
        out += ["", "Verdict:"] + [f"  {v}" for v in card.verdicts]
    if card.warnings:
        out += [""] + [f"! {w}" for w in card.warnings]
    return "\n".join(out)
