"""One trading cycle — what cron runs every hour — as plain functions over injected parts.

Order of steps (each one line of output): reconcile pending orders → portfolio → candles → indicators →
backtest filter → advisor → risk gate → decision log → order (recorded before it is sent) → notify.
Metrics are written by the caller after the cycle, success or not.

Failure policy: any failure before an order is sent means *no order*: the cycle records a decision row
with the error, alerts, and reports ``failed`` (exit code 1). An exchange rejection marks the pending
trade ``failed`` with the exchange's error. An order accepted but not seen final in time stays ``pending``
and is finished by the next run's reconciliation.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tradebot.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    ExchangeError,
    OrderRejectedError,
    StorageError,
    TradebotError,
)
from tradebot.exchange.base import Exchange
from tradebot.models import (
    AdvisorInput,
    AdvisorResult,
    Candle,
    Fill,
    GateResult,
    IndicatorSnapshot,
    Market,
    PastDecision,
    Position,
    plain,
)
from tradebot.risk import RiskLimits, gate, no_order_possible
from tradebot.upbit_rules import MIN_ORDER_KRW

if TYPE_CHECKING:
    from tradebot.advisor import Advisor
    from tradebot.config import Settings
    from tradebot.store.db import Connection

log = logging.getLogger(__name__)

Outcome = Literal["traded", "hold", "filtered", "vetoed", "pending", "dry_run", "failed"]


class Notifier(Protocol):
    """What the cycle needs from a notifier (:mod:`tradebot.notify` has the Telegram one and a null one)."""

    def send(self, text_html: str) -> None:
        """Deliver one HTML message (raises ``NotifierError``)."""
        ...


@dataclass
class StepLine:
    step: str
    ok: bool
    text: str
    seconds: float = 0.0


@dataclass
class CycleReport:
    """What happened, for the CLI to render (text or ``--json``) and for metrics."""

    market: Market
    mode: str
    dry_run: bool
    started_at: datetime
    steps: list[StepLine] = field(default_factory=list)
    outcome: Outcome = "hold"
    action: str = "hold"
    decision_id: int | None = None
    client_order_id: str | None = None
    trade_status: str | None = None
    fill: Fill | None = None
    failed_step: str | None = None
    error: str | None = None
    position: Position | None = None
    advisor: AdvisorResult | None = None
    reconciled: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    shadow: Any = None  # the ShadowCase the shadow advisors decide (tradebot.shadow), once indicators exist

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if self.failed else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        f = self.fill
        return {
            "ticker": self.market, "mode": self.mode, "dry_run": self.dry_run, "outcome": self.outcome,
            "action": self.action, "decision_id": self.decision_id, "client_order_id": self.client_order_id,
            "trade_status": self.trade_status, "failed_step": self.failed_step, "error": self.error,
            "exit_code": self.exit_code, "duration_s": round(self.duration_s, 3),
            "fill": None if f is None else {
                "uuid": f.uuid, "state": f.state.value, "volume": plain(f.volume), "avg_price": plain(f.avg_price),
                "gross": plain(f.gross), "fee": plain(f.fee), "resolved": f.resolved},
            "steps": [{"step": s.step, "ok": s.ok, "text": s.text, "seconds": round(s.seconds, 4)} for s in self.steps],
            "reconciled": self.reconciled,
        }


class StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class CycleParts:
    """Everything a cycle talks to, injected."""

    settings: Settings
    conn: Connection  # autocommit: each write is durable before the next step
    exchange: Exchange
    make_advisor: Callable[[], Advisor]  # built only when the model is actually asked
    notifier: Notifier
    # The model as a shadow advisor (TRADEBOT_SHADOW_MODEL=on while the rules act); None: never asked in the shadow.
    make_shadow_model: Callable[[], Advisor] | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Fault injection (tradebot.infra.faults.crashpoint in the real wiring): called at each named point of
    # an order's life; a no-op unless the fault-injection tests ask it to kill the process there.
    crashpoint: Callable[[str], None] = lambda point: None


def new_client_order_id() -> str:
    """Our order id, sent to Upbit as ``identifier`` (unique forever on Upbit, so never reused)."""
    return f"tb-{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------------------ steps
def reconcile_pending(parts: CycleParts, markets: Sequence[Market] | None = None) -> tuple[list[str], list[str]]:
    """Replay the fill journal, then finish our orders still ``pending`` from earlier runs (of ``markets``,
    default the configured market).

    Returns (one line per order, what needs the owner's attention: a damaged journal line moved to the
    quarantine file, a paper fill that was made but lost). A journal that cannot be replayed is a failed
    step: it is kept as it is, and no order is sent this run.
    """
    from tradebot import journal
    from tradebot.reconcile import resolve_pending

    damaged: list[str] = []
    try:
        lines = journal.replay(parts.settings.state_dir, parts.conn, damaged=damaged)
    except OSError as e:
        raise StepFailed("reconcile", f"the fill journal in {parts.settings.state_dir} could not be replayed "
                         f"({e.strerror or type(e).__name__}); it is kept unchanged — make TRADEBOT_STATE_DIR "
                         "writable (free disk space) and run again") from None
    changes = []
    for market in markets or (parts.settings.market,):
        changes += resolve_pending(parts.conn, parts.exchange, market, parts.settings.mode).changes
    attention = damaged + [f"{c.client_order_id}: {c.detail}" for c in changes if c.kind == "unknown"]
    return lines + [f"{c.client_order_id}: {c.kind} ({c.detail})" for c in changes], attention


def read_position(exchange: Exchange, market: Market) -> Position:
    balances = {b.currency: b for b in exchange.balances()}
    krw = balances.get("KRW")
    coin = balances.get(market.base)
    price = exchange.ticker_price(market)
    zero = Decimal(0)
    return Position(
        market=market,
        free_krw=krw.free if krw else zero,
        locked_krw=krw.locked if krw else zero,
        coin_volume=coin.total if coin else zero,
        coin_free=coin.free if coin else zero,
        avg_buy_price=coin.avg_buy_price if coin else zero,
        price=price,
    )


def clean_candles(candles: list[Candle]) -> list[Candle]:
    """Oldest first, one candle per start time, only well-formed OHLC. Gaps stay gaps."""
    by_start: dict[datetime, Candle] = {}
    for c in candles:
        if c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) and c.low > 0 and c.volume >= 0:
            by_start[c.start] = c
    return [by_start[k] for k in sorted(by_start)]


def backtest_filter(hourly: list[Candle], threshold: Decimal) -> dict[str, Any]:
    """Backtest the rule strategy over the recent hourly window (with fees)."""
    from tradebot.market import indicators as ind
    from tradebot.market import strategy
    from tradebot.market.engine import run_backtest

    o, h, lo, c, v = ind.arrays(hourly)
    result = run_backtest(o, h, lo, c, strategy.signals(o, h, lo, c, v))
    return {"return": round(result.total_return, 6), "buy_hold_return": round(result.buy_hold_return, 6),
            "trades": result.n_trades, "bars": len(hourly), "threshold": -float(threshold),
            "losing": result.total_return < -float(threshold)}


def realized_loss_today(parts: CycleParts) -> Decimal:
    """Realized loss since 00:00 UTC (09:00 KST, when Upbit's daily candle starts) for this market/mode."""
    from tradebot.pnl import realized_loss_since
    from tradebot.store.trades import ledger_entries

    now = parts.now()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return realized_loss_since(ledger_entries(parts.conn, parts.settings.market, parts.settings.mode), start)


def _order_text(g: GateResult) -> str:
    if g.action == "buy" and g.krw is not None:
        return f"buy {plain(g.krw)} KRW"
    if g.action == "sell" and g.volume is not None:
        return f"sell {plain(g.volume)}"
    return "hold"


# ------------------------------------------------------------------------------------------------ cycle
def run_cycle(parts: CycleParts, *, dry_run: bool = False) -> CycleReport:
    """Run one cycle, then let the shadow advisors decide (:mod:`tradebot.shadow`: after the order, never
    changing the outcome). Never raises for exchange, advisor or notifier failures: they are in the report."""
    report = _cycle(parts, dry_run)
    if report.shadow is not None:
        from tradebot.shadow import record_shadows

        record_shadows(parts, [report.shadow])
    return report


def _cycle(parts: CycleParts, dry_run: bool) -> CycleReport:
    from tradebot.store.decisions import (
        CycleContext,
        recent_decisions,
        record_decision,
        scored_recent,
        set_decision_error,
    )
    from tradebot.store.state import is_paused

    s = parts.settings
    report = CycleReport(market=s.market, mode=s.mode, dry_run=dry_run, started_at=parts.now())
    cycle_id = str(uuid.uuid4())  # names this run in every decision row it writes
    t0 = time.perf_counter()
    clock = [t0]

    def step(name: str, ok: bool, text: str) -> None:
        now = time.perf_counter()
        report.steps.append(StepLine(name, ok, text, now - clock[0]))
        clock[0] = now

    position: Position | None = None
    snap: IndicatorSnapshot | None = None
    filter_result: dict[str, Any] | None = None
    result: AdvisorResult | None = None
    inp: AdvisorInput | None = None
    skipped: str | None = None
    gate_result = GateResult("hold")
    best_bid = Decimal(0)
    current = "reconcile"
    try:
        report.reconciled, attention = reconcile_pending(parts)
        if attention:  # the owner must look first: no order this run (the next run goes on as usual)
            raise StepFailed("reconcile", "needs attention: " + " | ".join(attention))
        step("reconcile", True, f"{len(report.reconciled)} pending order(s) checked" +
             (": " + "; ".join(report.reconciled) if report.reconciled else ""))

        current = "portfolio"
        position = read_position(parts.exchange, s.market)
        report.position = position
        step("portfolio", True, f"free {plain(position.free_krw, 0)} KRW, {plain(position.coin_volume)} "
             f"{s.market.base} worth {plain(position.position_value, 0)} KRW, equity {plain(position.equity, 0)} KRW")

        current = "candles"
        from tradebot.market.candle_cache import recent_candles

        now = parts.now()
        got_h = recent_candles(parts.conn, parts.exchange, s.market, "minute60", s.hourly_candles, now, clean_candles)
        got_d = recent_candles(parts.conn, parts.exchange, s.market, "day", s.daily_candles, now, clean_candles)
        hourly, daily = got_h.candles, got_d.candles
        if len(hourly) < 30:
            raise StepFailed("candles", f"only {len(hourly)} hourly candles for {s.market}; at least 30 are needed")
        corrected = [name for name, got in (("hourly", got_h), ("daily", got_d)) if got.corrected]
        step("candles", True, f"{len(hourly)} hourly, {len(daily)} daily (forming candle excluded)" +
             (f"; the cached {' and '.join(corrected)} candles differed from Upbit's and were replaced" if corrected else ""))

        current = "indicators"
        from tradebot.market.indicators import snapshot

        snap = snapshot(hourly)
        inp = AdvisorInput(position=position, indicators=snap, hourly=tuple(hourly), daily=tuple(daily), history=())
        step("indicators", True, ", ".join(f"{k} {v:,.2f}" for k, v in snap.as_dict().items()
                                           if v is not None and k in ("close", "rsi14", "ema20", "ema60", "macd_hist")))

        current = "filter"
        position_open = position.coin_volume * position.price >= MIN_ORDER_KRW
        filtered = False
        if s.backtest_filter:
            filter_result = backtest_filter(hourly, s.backtest_filter_threshold)
            filtered = bool(filter_result["losing"]) and not position_open
            step("filter", True, f"rule backtest over {len(hourly)}h: {filter_result['return'] * 100:+.2f} % "
                 f"({filter_result['trades']} trades) → " + ("filtered: hold without asking the advisor" if filtered else "pass"))
        else:
            step("filter", True, "off (TRADEBOT_BACKTEST_FILTER=off)")

        current = "advisor"
        skipped = None if filtered else no_order_possible(position.free_krw - s.krw_reserve, position)
        if filtered:
            report.outcome = "filtered"
        elif skipped:
            step("advisor", True, skipped)
        else:
            orderbook = parts.exchange.orderbook(s.market)
            best_bid = orderbook.best_bid
            advisor = parts.make_advisor()
            history = [PastDecision.of(d, position.price) for d in recent_decisions(parts.conn, s.market, s.mode)]
            reflection = scored_recent(parts.conn, s.market, s.mode, "claude") if s.reflection and s.advisor == "claude" else None
            inp = replace(inp, history=tuple(history), reflection=reflection)
            result = advisor.advise(inp)
            report.advisor = result
            if result.decision is not None:  # a failure gets its ✗ line when StepFailed is raised below
                d = result.decision
                step("advisor", True, f"{result.advisor}: {d.action} (confidence {plain(d.confidence)}, "
                     f"fraction {plain(d.fraction)}) — {d.reason[:160]}")

            if result.decision is None:
                gate_result = gate(None, position, best_bid, RiskLimits.from_settings(s))
                raise StepFailed("advisor", f"{result.advisor}: {result.error or 'no decision'}")

            current = "risk"
            gate_result = gate(result.decision, position, best_bid, RiskLimits.from_settings(s),
                               paused=is_paused(parts.conn, s.market), realized_loss_today=realized_loss_today(parts))
            notes = [f"{n['rule']}: {n['detail']}" for n in (*gate_result.clamps, *gate_result.vetoes)]
            step("risk", True, _order_text(gate_result) + (" — " + "; ".join(notes) if notes else ""))
            report.action = gate_result.action
            report.outcome = "vetoed" if gate_result.vetoes else "hold"
    except StepFailed as e:
        report.outcome, report.failed_step, report.error = "failed", e.step, str(e)
        step(e.step, False, str(e))
    except (ExchangeError, StorageError, ValueError) as e:
        # StorageError: the database went away mid-cycle (the paper broker reads its account there).
        # ValueError: malformed market data (e.g. an indicator over broken candles) — no order either way.
        report.outcome, report.failed_step, report.error = "failed", current, f"{type(e).__name__}: {e}" if isinstance(e, ValueError) else str(e)
        step(current, False, report.error)

    # The decision row is written for every cycle: holds, filtered, vetoed and failed ones included.
    ctx = CycleContext(market=s.market, mode=s.mode, advisor=s.advisor, dry_run=dry_run, position=position,
                       cycle_id=cycle_id,
                       indicators=snap, filter_result=filter_result, filtered=report.outcome == "filtered", note=skipped,
                       reflection=inp is not None and inp.reflection is not None and result is not None
                       and result.advisor == "claude",
                       error=f"{report.failed_step}: {report.error}" if report.outcome == "failed" else None)
    try:
        report.decision_id = record_decision(parts.conn, ctx, result, gate_result)
    except StorageError as e:
        report.outcome, report.failed_step, report.error = "failed", "decision log", str(e)
        step("decision log", False, str(e))
        return _finish(report, parts, t0)
    if inp is not None:
        from tradebot.shadow import ShadowCase

        report.shadow = ShadowCase(ctx, inp, best_bid or inp.position.price)

    if report.outcome == "failed" or gate_result.action == "hold":
        step("order", True, "none")
        return _finish(report, parts, t0)
    if dry_run:
        report.outcome = "dry_run"
        step("order", True, f"dry run: would {_order_text(gate_result)}")
        return _finish(report, parts, t0)

    execute(parts, report, gate_result)
    if report.failed and report.decision_id is not None and report.error:
        try:
            set_decision_error(parts.conn, report.decision_id, f"{report.failed_step}: {report.error}")
        except StorageError:  # the trade row already carries the error
            log.warning("could not record the order error on decision %s", report.decision_id)
    return _finish(report, parts, t0)


def execute(parts: CycleParts, report: CycleReport, g: GateResult) -> None:
    """Record the order of ``report.market`` as ``pending``, send it, and complete the row from the exchange's
    answer."""
    from tradebot.store.trades import apply_fill, insert_pending

    s = parts.settings
    cid = new_client_order_id()
    report.client_order_id = cid
    try:
        insert_pending(parts.conn, client_order_id=cid, symbol=report.market, side=g.action, mode=s.mode,
                       requested_krw=g.krw, requested_volume=g.volume, decision_id=report.decision_id)
    except StorageError as e:  # no row, no order: record before you act
        report.outcome, report.failed_step = "failed", "order"
        report.error = f"could not record the order before sending it ({e.reason}); nothing was sent"
        report.steps.append(StepLine("order", False, report.error))
        return
    parts.crashpoint("before_order")
    try:
        if g.action == "buy":
            assert g.krw is not None
            fill = parts.exchange.market_buy(report.market, g.krw, cid)
        else:
            assert g.volume is not None
            fill = parts.exchange.market_sell(report.market, g.volume, cid)
    except OrderRejectedError as e:
        _mark_failed(parts, cid, f"{e.name or 'rejected'}: {e}")
        report.trade_status, report.outcome, report.failed_step, report.error = "failed", "failed", "order", f"rejected: {e}"
        report.steps.append(StepLine("order", False, f"{g.action} rejected: {e}"))
        return
    except ExchangeError as e:
        # Raised only when the exchange showed that no order exists (see UpbitExchange.market_buy).
        _mark_failed(parts, cid, f"{e.name or type(e).__name__}: {e}")
        report.trade_status, report.outcome, report.failed_step, report.error = "failed", "failed", "order", str(e)
        report.steps.append(StepLine("order", False, f"{g.action} not placed: {e}"))
        return
    except StorageError as e:
        # Only the paper broker touches the database here, before it fills: nothing was filled. The row
        # stays pending (the database is gone) and the next run's reconciliation resolves it.
        report.trade_status, report.outcome, report.failed_step = "pending", "failed", "order"
        report.error = f"{e}; {cid} is left pending for the next run to resolve"
        report.steps.append(StepLine("order", False, report.error))
        return
    parts.crashpoint("after_fill")
    report.fill = fill
    try:
        status = apply_fill(parts.conn, cid, fill)
    except StorageError as e:  # the database went away after the order
        _journal_fill(parts, report, cid, fill, e)
        return
    parts.crashpoint("after_record")
    report.trade_status = status
    if status == "completed":
        report.outcome = "traded"
        report.steps.append(StepLine("order", True, f"{g.action} {plain(fill.volume)} @ {plain(fill.avg_price, 2)} = "
                                     f"{plain(fill.gross, 0)} KRW, fee {plain(fill.fee, 2)} KRW ({fill.uuid})"))
    elif status == "cancelled":
        report.outcome = "traded"
        report.steps.append(StepLine("order", True, f"{g.action} accepted but nothing filled ({fill.uuid}): cancelled"))
    elif fill.uuid:
        report.outcome = "pending"
        report.steps.append(StepLine("order", True, f"{g.action} accepted ({fill.uuid}), fill not final yet: "
                                     "left pending for the next run to reconcile"))
    else:
        # Neither the POST nor any lookup by identifier told us whether the order exists: not an error we
        # caused, but one the owner must hear about. The row stays pending; the next run looks it up again.
        report.outcome, report.failed_step = "failed", "order"
        report.error = (f"the exchange did not confirm whether {g.action} order {cid} was placed; it stays pending "
                        "and the next run reconciles it by identifier")
        report.steps.append(StepLine("order", False, report.error))


def _mark_failed(parts: CycleParts, cid: str, error: str) -> None:
    """Mark a never-placed order failed; if the database is gone, reconciliation does it next run."""
    from tradebot.store.trades import mark_failed

    try:
        mark_failed(parts.conn, cid, error)
    except StorageError as e:
        log.warning("could not mark %s failed (%s); the next run's reconciliation will", cid, e.reason)


def _journal_fill(parts: CycleParts, report: CycleReport, cid: str, fill: Fill, error: StorageError) -> None:
    """The fill could not be written: keep it in the fsync'd journal for the next run, and fail loudly.

    "Saved" is said only once the journal holds the whole line on disk. When the journal cannot take it
    either, the fill's full details go into the error (stderr and the alert), with what happens next: a live
    order is on Upbit and the next run records it from there; a paper fill exists nowhere else.
    """
    from tradebot import journal

    report.trade_status, report.outcome, report.failed_step = "pending", "failed", "record"
    db = f"the database is unreachable ({error.reason})"
    try:
        path = journal.append(parts.settings.state_dir, cid, fill, parts.settings.mode)
        report.error = f"{db}; the fill of {cid} was saved to {path} and will be recorded by the next run"
    except OSError as e2:
        if parts.settings.mode == "live":
            then = ("Upbit keeps the order: the next run (or `tradebot reconcile`) records this fill from the "
                    "exchange by its identifier")
        else:
            then = (f"this paper fill exists nowhere else and cannot be recovered automatically: the next run marks "
                    f"{cid} 'unknown' (needs attention); record it by hand from these details if you need it")
        report.error = (f"{db} and the journal in {parts.settings.state_dir} could not be written "
                        f"({e2.strerror or type(e2).__name__}): {journal.describe_fill(cid, fill)}. {then}")
    report.steps.append(StepLine("record", False, report.error))


def _finish(report: CycleReport, parts: CycleParts, t0: float) -> CycleReport:
    report.duration_s = time.perf_counter() - t0
    notify(parts, report)
    return report


def notify(parts: CycleParts, report: CycleReport) -> None:
    """Telegram: one message per trade, one per failed cycle. A failure here is logged, never raised."""
    from tradebot.notify import failure_message, trade_message

    s = parts.settings
    texts: list[str] = []
    f = report.fill
    if f is not None and report.outcome == "pending":
        texts.append(failure_message(step="fill confirmation", market=s.market, mode=s.mode,
                                     error=f"{f.side} order {f.uuid} was accepted but not final within the poll budget; "
                                           "the next run records its fill"))
    elif f is not None and report.trade_status in ("completed", "cancelled"):
        reason = report.advisor.decision.reason if report.advisor and report.advisor.decision else ""
        texts.append(trade_message(side=f.side, market=s.market, mode=s.mode, volume=f.volume, avg_price=f.avg_price,
                                   total=f.gross, fee=f.fee, reason=reason, status=report.trade_status or ""))
    if report.outcome == "failed":
        texts.append(failure_message(step=report.failed_step or "?", error=report.error or "", market=s.market, mode=s.mode))
    for text in texts:
        try:
            parts.notifier.send(text)
        except TradebotError as e:
            log.warning("telegram: %s", e)
            report.steps.append(StepLine("notify", False, f"telegram failed: {e}"))
        except Exception as e:  # noqa: BLE001 — notifications never fail a cycle
            log.warning("telegram: unexpected %s", type(e).__name__)
            report.steps.append(StepLine("notify", False, f"telegram failed: {type(e).__name__}"))
