"""The emergency exit a confirmed ``/exit`` runs, and the account view ``/status`` and ``/exit`` show.

The exit sells through exactly the cycle's path: the cycle lock of every traded market (so it never runs
beside a cycle; a running cycle is waited for, up to TRADEBOT_LOCK_WAIT_S), the journal replay and
reconciliation of pending orders first, the risk gate's sell rules (Upbit's minimum, dust), one decision row
per market (advisor ``owner``, the exit's id as its cycle id), then :func:`tradebot.cycle.execute`: a
``pending`` row with our client order id before the order, the real fill read back. It can be run again after
a crash: the orders it already placed are skipped, and every sell is sized on the position read from the
exchange after reconciliation, so a position already sold is never sold twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.app.parts import cycle_connection, make_exchange
from tradebot.errors import ExchangeError, LockedError, StorageError
from tradebot.infra.faults import crashpoint

if TYPE_CHECKING:
    from tradebot.config import Settings
    from tradebot.control import ExitLine
    from tradebot.exchange.base import Exchange
    from tradebot.models import Market, Position
    from tradebot.store.db import Connection
    from tradebot.store.telegram import ExitRequest

LOCK_RETRY_S = 2.0


@dataclass(frozen=True)
class Account:
    """Positions of the traded markets (one balances read, one price request)."""

    positions: dict[Market, Position]
    free_krw: Decimal
    equity: Decimal


def read_account(exchange: Exchange, markets: tuple[Market, ...]) -> Account:
    """Every traded market's position from one balances read and one ticker request."""
    from tradebot.models import Position

    balances = {b.currency: b for b in exchange.balances()}
    prices = exchange.ticker_prices(markets)
    krw = balances.get("KRW")
    zero = Decimal(0)
    free = krw.free if krw else zero
    locked = krw.locked if krw else zero
    positions = {}
    for m in markets:
        coin = balances.get(m.base)
        positions[m] = Position(market=m, free_krw=free, locked_krw=locked, coin_volume=coin.total if coin else zero,
                                coin_free=coin.free if coin else zero,
                                avg_buy_price=coin.avg_buy_price if coin else zero, price=prices[m])
    equity = free + locked + sum((p.position_value for p in positions.values()), zero)
    return Account(positions, free, equity)


def sellable(account: Account) -> list[ExitLine]:
    """The positions an exit would sell: worth at least Upbit's minimum order at the last price."""
    from tradebot.control import ExitLine
    from tradebot.upbit_rules import MIN_ORDER_KRW

    return [ExitLine(m, p.coin_free, p.price) for m, p in account.positions.items()
            if p.coin_free > 0 and p.coin_free * p.price >= MIN_ORDER_KRW]


def run_exit(settings: Settings, ex: ExitRequest, who: str, *, sleep: Callable[[float], None] = time.sleep) -> tuple[bool, str]:
    """Sell the whole position of each market of ``ex``; (every market ended as asked, the HTML report).

    Waits for a running cycle up to TRADEBOT_LOCK_WAIT_S; nothing is sold when it does not end by then.
    """
    from tradebot.control import e

    deadline = time.monotonic() + settings.lock_wait_s
    while True:
        try:
            with cycle_connection(settings) as conn:
                return _sell_all(settings, conn, ex, who)
        except LockedError:
            if time.monotonic() >= deadline:
                return False, (f"⚠️ Exit not done: a cycle held the lock for over {settings.lock_wait_s} s "
                               "(TRADEBOT_LOCK_WAIT_S); nothing was sold. Send /exit again.")
            sleep(LOCK_RETRY_S)
        except (StorageError, ExchangeError) as err:
            return False, f"⚠️ Exit failed before any order: {e(err)}"


def _sell_all(settings: Settings, conn: Connection, ex: ExitRequest, who: str) -> tuple[bool, str]:
    from tradebot.control import e
    from tradebot.cycle import CycleParts, CycleReport, execute, read_position, reconcile_pending
    from tradebot.models import AdvisorResult, Decision, plain
    from tradebot.notify import NullNotifier, format_krw
    from tradebot.risk import RiskLimits, gate
    from tradebot.store.decisions import CycleContext, record_decision
    from tradebot.store.telegram import exit_orders

    def no_advisor() -> Any:
        raise AssertionError("an emergency exit never asks an advisor")

    parts = CycleParts(settings=settings, conn=conn, exchange=make_exchange(settings, conn), make_advisor=no_advisor,
                       notifier=NullNotifier(), crashpoint=crashpoint)
    _, attention = reconcile_pending(parts, ex.markets)
    if attention:
        return False, "⚠️ Exit not done: earlier orders need attention first: " + e(" | ".join(attention))
    placed = exit_orders(conn, ex.id)
    reason = f"emergency exit from Telegram, confirmed by {who}"
    lines, ok, fills = [], True, []
    for market in ex.markets:
        if market in placed:  # an earlier run of this exit sent it (reconciled above)
            lines.append(f"{e(market)}: already sold by this exit ({e(placed[market])})")
            continue
        try:
            position = read_position(parts.exchange, market)
            best_bid = parts.exchange.orderbook(market).best_bid
        except ExchangeError as err:
            ok = False
            lines.append(f"⚠️ {e(market)}: not sold, the exchange failed: {e(err)}")
            continue
        decision = Decision("sell", Decimal(1), Decimal(1), reason)
        g = gate(decision, position, best_bid, RiskLimits.from_settings(settings))
        if g.action != "sell":
            why = "; ".join(v["detail"] for v in g.vetoes) or "nothing to sell"
            lines.append(f"{e(market)}: nothing sold — {e(why)}")
            continue
        report = CycleReport(market=market, mode=settings.mode, dry_run=False, started_at=datetime.now(UTC))
        ctx = CycleContext(market=market, mode=settings.mode, advisor="owner", dry_run=False, position=position,
                           cycle_id=ex.id)
        report.decision_id = record_decision(conn, ctx, AdvisorResult(advisor="owner", model=None, decision=decision), g)
        execute(parts, report, g)
        f = report.fill
        if report.failed:
            ok = False
            lines.append(f"⚠️ {e(market)}: sell failed: {e(report.error or '?')}")
        elif f is not None and report.trade_status == "completed":
            fills.append(report)
            lines.append(f"🔴 <b>SELL {e(market)}</b> {e(plain(f.volume))} @ {e(format_krw(f.avg_price))} = "
                         f"{e(format_krw(f.gross))} KRW, fee {e(format_krw(f.fee))} KRW")
        else:
            lines.append(f"{e(market)}: sell {e(report.trade_status or report.outcome)}; the next run reconciles it")
        crashpoint("after_market_order")
    if fills:
        from tradebot.app.trading import keep_pnl_current

        keep_pnl_current(conn, settings.mode, fills)
    head = "✅ <b>Exit done</b>" if ok else "⚠️ <b>Exit finished with failures</b>"
    return ok, f"{head} [{e(settings.mode.upper())}] — buys of these markets stay paused (/resume)\n" + "\n".join(lines)
