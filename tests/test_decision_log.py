"""The decision log's one read shape: every reader (the prompt's history, compare-live) gets the same
``RecordedDecision`` for the same row, and what was written comes back (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from tradebot.models import AdvisorResult, Decision, GateResult, Market, PastDecision, Position
from tradebot.store.decisions import CycleContext, recent_decisions, record_decision, recorded_decisions
from tradebot.store.trades import insert_pending

BTC = Market("KRW-BTC")


def position(price: str) -> Position:
    return Position(market=BTC, free_krw=Decimal("500000.5"), locked_krw=Decimal(0), coin_volume=Decimal("0.00012345"),
                    coin_free=Decimal("0.00012345"), avg_buy_price=Decimal("95000000"), price=Decimal(price))


def test_every_reader_gets_the_same_record_and_the_written_values_come_back(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        buy = record_decision(conn, CycleContext(market=BTC, mode="paper", advisor="rules", dry_run=False,
                                                 position=position("100000000")),
                              AdvisorResult(advisor="rules", model=None,
                                            decision=Decision("buy", Decimal("0.8"), Decimal("0.5"), "trend up")),
                              GateResult("buy", krw=Decimal("250000")))
        failed = record_decision(conn, CycleContext(market=BTC, mode="paper", advisor="claude", dry_run=False,
                                                    error="candles: timeout"),
                                 None, GateResult("hold"))
        filtered = record_decision(conn, CycleContext(market=BTC, mode="paper", advisor="rules", dry_run=True,
                                                      position=position("90000000"), filtered=True),
                                   None, GateResult("hold", vetoes=({"rule": "filtered", "detail": "x"},)))
        other_mode = record_decision(conn, CycleContext(market=BTC, mode="live", advisor="rules", dry_run=False),
                                     None, GateResult("hold"))
        insert_pending(conn, client_order_id="tb-test-1", symbol=BTC, side="buy", mode="paper",
                       requested_krw=Decimal("250000"), requested_volume=None, decision_id=buy)
        conn.execute("UPDATE trades SET status = 'completed', trade_id = 'u-1', price = 100000000, amount = 0.0025, "
                     "total = 250000, fee = 125 WHERE client_order_id = 'tb-test-1'")

        recent = recent_decisions(conn, BTC, "paper", limit=10)
        between = recorded_decisions(conn, BTC, "paper", None, None)
        assert recent == between
        assert [d.id for d in recent] == [buy, failed, filtered] and other_mode not in [d.id for d in recent]
        assert recent_decisions(conn, BTC, "paper", limit=2) == between[1:]  # the last two, oldest first
        assert recorded_decisions(conn, BTC, "paper", between[1].created_at, between[2].created_at) == [between[1]]

    b, f, flt = between
    assert (b.advisor, b.decision, b.confidence, b.fraction, b.action, b.order_krw, b.traded) == (
        "rules", "buy", Decimal("0.8"), Decimal("0.5"), "buy", Decimal("250000"), True)
    assert b.position == position("100000000") and b.price == Decimal("100000000")
    assert (f.decision, f.action, f.position, f.price, f.error, f.traded) == (None, "hold", None, None, "candles: timeout", False)
    assert (flt.decision, flt.filtered, flt.vetoes, flt.dry_run) == ("hold", True, ("filtered",), True)

    now = Decimal("110000000")
    past = [PastDecision.of(d, now) for d in between]
    assert [(p.action, p.traded) for p in past] == [("buy", True), ("hold", False), ("hold", False)]
    assert past[0].price_change_since == Decimal("0.1") and past[1].price_change_since is None
    assert past[0].at == b.created_at and past[0].at <= datetime.now(UTC)
