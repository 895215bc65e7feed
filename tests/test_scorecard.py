"""Scoring decisions (issue 13): the forward return at +1 h, +4 h and +24 h from the decision's price, and
whether it was right — on hand-computed candle paths in real PostgreSQL, a gap and horizons not reached yet
included; a rescore changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_cli
from tradebot.app.advisors import score_pending
from tradebot.models import AdvisorResult, Candle, Decision, GateResult, Market, Position
from tradebot.scorecard.score import ROUND_TRIP_FEE, horizon_end, is_hit
from tradebot.store.candles import save_candles
from tradebot.store.decisions import CycleContext, record_decision

BTC = Market("KRW-BTC")
DAY = datetime(2026, 11, 2, tzinfo=UTC)


def at(hh: int, mm: int = 0) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm)


def candle(hh: int, close: str) -> Candle:
    c = Decimal(close)
    return Candle(at(hh), c, c, c, c, Decimal(1))


def decide(conn: psycopg.Connection, when: datetime, action: str | None, price: str | None,  # type: ignore[type-arg]
           coin: str = "0", role: str = "acting", advisor: str = "claude") -> int:
    position = None if price is None else Position(BTC, Decimal(100_000), Decimal(0), Decimal(coin), Decimal(coin),
                                                   Decimal(0), Decimal(price))
    result = AdvisorResult(advisor=advisor, model=None,
                           decision=Decision(action, Decimal("0.8"), Decimal("0.5"), "test") if action else None,  # type: ignore[arg-type]
                           error=None if action else "timed out")
    ctx = CycleContext(market=BTC, mode="paper", advisor=advisor, dry_run=False, position=position, role=role,
                       error=None if action else "advisor: timed out")
    did = record_decision(conn, ctx, result, GateResult("hold"))
    conn.execute("UPDATE decisions SET created_at = %s WHERE id = %s", (when, did))
    return did


def scores(conn: psycopg.Connection) -> dict[tuple[int, int], tuple[Decimal, Decimal, bool]]:  # type: ignore[type-arg]
    rows = conn.execute("SELECT decision_id, horizon_h, price, forward_return, hit FROM decision_scores").fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def test_the_definition_at_the_fee_boundary() -> None:
    fee = ROUND_TRIP_FEE
    assert fee == Decimal("0.0010")
    assert not is_hit("buy", fee, False) and is_hit("buy", fee + Decimal("1e-9"), False)
    assert not is_hit("sell", -fee, False) and is_hit("sell", -fee - Decimal("1e-9"), False)
    assert is_hit("hold", fee, False) and is_hit("hold", -fee, False)
    assert not is_hit("hold", fee + Decimal("1e-9"), False) and not is_hit("hold", -fee - Decimal("1e-9"), False)
    assert is_hit("hold", Decimal("0.5"), True)  # flat: holding cannot lose money
    assert horizon_end(at(11, 5), 1) == at(12) and horizon_end(at(11, 5), 24) == at(35)
    assert horizon_end(datetime(2026, 11, 2, 20, 5, tzinfo=UTC).astimezone(), 4) == at(24)  # any time zone in


@pytest.fixture
def conn(db_url: str) -> psycopg.Connection:  # type: ignore[type-arg]
    with psycopg.connect(db_url, autocommit=True) as c:
        # 10:00 … 15:00 with no candle at 13:00 (an hour without trades on Upbit)
        save_candles(c, BTC, "minute60", [candle(10, "10000"), candle(11, "10200"), candle(12, "10300"),
                                          candle(14, "9900"), candle(15, "10400")])
        yield c


def test_scores_from_a_hand_computed_path(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
    a = decide(conn, at(11, 5), "buy", "10000")  # +1h: 12:00 → the 11:00 candle's close 10200 (+2 %)
    b = decide(conn, at(13, 30), "sell", "10300", coin="1")  # +1h: 14:00 → 13:00 is a gap → 12:00's close
    c = decide(conn, at(14, 10), "hold", "9950", coin="1")  # holding: -0.5 % is a missed sell
    d = decide(conn, at(14, 10), "hold", "9950", role="shadow", advisor="hold")  # flat: right
    e = decide(conn, at(12, 20), "buy", "10000")
    early = decide(conn, at(8), "buy", "10000")  # +1 h: 09:00 is before the oldest cached candle; +4 h: 11:00's
    failed = decide(conn, at(11), None, "10000")  # no answer: never scored
    blind = decide(conn, at(11), None, None)  # no price: never scored

    assert score_pending(conn) == 8
    got = scores(conn)
    assert got == {
        (a, 1): (Decimal("10200"), Decimal("0.02"), True),
        (a, 4): (Decimal("9900"), Decimal("-0.01"), False),  # 15:00 → the 14:00 candle
        (b, 1): (Decimal("10300"), Decimal("0"), False),  # no fall: the sell was not right
        (c, 1): (Decimal("9900"), Decimal("9900") / Decimal("9950") - 1, False),
        (d, 1): (Decimal("9900"), Decimal("9900") / Decimal("9950") - 1, True),
        (e, 1): (Decimal("10300"), Decimal("0.03"), True),  # 13:00 → the 12:00 candle
        (e, 4): (Decimal("10400"), Decimal("0.04"), True),  # 16:00 → the 15:00 candle, the newest cached
        (early, 4): (Decimal("10200"), Decimal("0.02"), True),
    }
    assert not any(k[0] in (failed, blind) for k in got)

    # A rescore changes nothing; a new candle makes the next horizons scorable, and only those.
    before = conn.execute("SELECT * FROM decision_scores ORDER BY 1, 2").fetchall()
    assert score_pending(conn) == 0
    assert conn.execute("SELECT * FROM decision_scores ORDER BY 1, 2").fetchall() == before
    save_candles(conn, BTC, "minute60", [candle(16, "10500"), candle(17, "10600")])
    assert score_pending(conn) == 3
    got = scores(conn)
    assert got[(b, 4)] == (Decimal("10500"), Decimal("10500") / Decimal("10300") - 1, False)  # 17:30 → 17:00 → the 16:00 candle
    assert got[(c, 4)][0] == Decimal("10600") and got[(d, 4)][2] is True  # 18:10 → 18:00 → the 17:00 candle
    assert (a, 24) not in got


def test_advisors_score_command_is_idempotent(db_url: str, tb_env: dict[str, str], tmp_path: Path,
                                              conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
    decide(conn, at(11, 5), "buy", "10000")
    first = run_cli(["advisors", "score", "--no-refresh"], tb_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "Scored 2 decision horizon(s); 1 still waiting for their horizon (or for its hourly candle)."
    again = run_cli(["advisors", "score", "--no-refresh"], tb_env, cwd=tmp_path)
    assert again.stdout.startswith("Scored 0 decision horizon(s); 1 still waiting")


def test_scoring_in_small_batches_gives_the_same_scores(conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
                                                        db_url: str) -> None:
    import tradebot.app.advisors as advisors

    ids = [decide(conn, at(10, 5 + i), ("buy", "sell", "hold")[i % 3], str(10000 + i), coin=str(i % 2)) for i in range(7)]
    assert score_pending(conn) == 14  # one pass: +1 h and +4 h of each (+24 h not reached)
    whole = conn.execute("SELECT decision_id, horizon_h, price, forward_return, hit FROM decision_scores ORDER BY 1, 2").fetchall()
    conn.execute("DELETE FROM decision_scores")
    monkeypatch.setattr(advisors, "SCORE_BATCH", 3)  # batches that end between a decision's horizons
    assert score_pending(conn) == 14
    batched = conn.execute("SELECT decision_id, horizon_h, price, forward_return, hit FROM decision_scores ORDER BY 1, 2").fetchall()
    assert batched == whole and {r[0] for r in whole} == set(ids)


DIRECT = """
SELECT (d.created_at AT TIME ZONE 'UTC')::date, d.ticker, d.mode, d.advisor, d.role, d.reflection,
       coalesce(d.decision, ''), 0, count(*), 0, 0, sum(d.input_tokens), sum(d.cost_usd)
FROM decisions d GROUP BY 1, 2, 3, 4, 5, 6, 7
UNION ALL
SELECT (d.created_at AT TIME ZONE 'UTC')::date, d.ticker, d.mode, d.advisor, d.role, d.reflection,
       coalesce(d.decision, ''), s.horizon_h, count(*), count(*) FILTER (WHERE s.hit), sum(s.forward_return), 0, 0
FROM decision_scores s JOIN decisions d ON d.id = s.decision_id GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""
KEPT = """SELECT day, ticker, mode, advisor, role, reflection, decision, horizon_h, n, hits, return_sum, input_tokens,
       cost_usd FROM decision_days WHERE n <> 0"""


def test_the_day_totals_follow_every_write(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
    def same() -> None:
        assert sorted(map(tuple, conn.execute(KEPT).fetchall())) == sorted(map(tuple, conn.execute(DIRECT).fetchall()))

    a = decide(conn, at(11, 5), "buy", "10000")
    decide(conn, at(11, 5), "hold", "10000", role="shadow", advisor="hold")
    decide(conn, at(12, 5), None, "10000")
    same()
    assert score_pending(conn) > 0
    same()
    assert score_pending(conn) == 0  # a rescore adds nothing to the totals either
    same()
    conn.execute("UPDATE decisions SET created_at = created_at - interval '1 day', advisor = 'rules' WHERE id = %s", (a,))
    same()  # the decision and its scores moved to the other day and advisor
    conn.execute("UPDATE decisions SET error = 'x' WHERE id = %s", (a,))
    conn.execute("DELETE FROM decision_scores WHERE decision_id = %s", (a,))
    conn.execute("DELETE FROM decisions WHERE id = %s", (a,))
    rows = conn.execute(DIRECT).fetchall()
    assert sorted(map(tuple, conn.execute(KEPT).fetchall())) == sorted(map(tuple, rows))
