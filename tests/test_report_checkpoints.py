"""The counterfactual ledgers' checkpoints (``tradebot.backtest.replay``): a report that goes on from an earlier
report's checkpoint prints exactly what a replay from the first bar prints — in-process on random histories,
and through the real CLI over real PostgreSQL after more hours were recorded, with a damaged file, and with
changed limits."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.conftest import run_cli
from tradebot.backtest.replay import Checkpoint, Task, replay_all, replay_decisions
from tradebot.models import AdvisorResult, Candle, Decision, GateResult, Market, Position
from tradebot.risk import RiskLimits
from tradebot.store.candles import save_candles
from tradebot.store.decisions import CycleContext, record_decision

BTC = Market("KRW-BTC")
LIMITS = RiskLimits(Decimal("0.6"), Decimal(50_000), Decimal(200_000), Decimal(30_000))


def history(rng: random.Random, hours: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Hourly bars with gaps (start, open, high, low, close) and decisions (time, ±1, confidence, fraction),
    some hours with two decisions, some before the first bar."""
    t0 = datetime(2026, 3, 1, 7, tzinfo=UTC).timestamp()
    bars, decisions, price = [], [], 50_000.0
    for h in range(hours):
        o, price = price, price * (1 + rng.gauss(0, 0.02))
        if rng.random() > 0.1:
            bars.append((t0 + 3600 * h, o, max(o, price), min(o, price), price))
    for h in range(-2, hours + 1):
        for _ in range(rng.choice([0, 1, 1, 2])):
            decisions.append((t0 + 3600 * h + rng.randrange(3600), rng.choice([1.0, 1.0, -1.0]),
                              rng.choice([0.5, 0.8, 1.0]), rng.choice([0.2, 0.5, 1.0])))
    decisions.sort()
    return np.array(bars), np.array(decisions).reshape(-1, 4)


def test_replays_split_across_two_processes_equal_the_replays_in_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's replays in a forked child and in this process give the very figures of one process, in the
    tasks' order — and a child that dies leaves its share to this process."""
    import tradebot.backtest.replay as replay

    rng = random.Random(99)
    tasks = [Task(*history(rng, rng.randrange(50, 400)), LIMITS, BTC, 1_000_000.0, None) for _ in range(7)]
    alone = [replay_decisions(t.bars, t.decisions, limits=t.limits, market=t.market, starting_krw=t.starting_krw)
             for t in tasks]
    monkeypatch.setattr(replay, "PARALLEL_MIN_BARS", 0)
    monkeypatch.setattr(replay.os, "cpu_count", lambda: 2)

    def same(a: Any, b: Any) -> bool:
        return (a is None and b is None) or (a.final_equity == b.final_equity and a.fills == b.fills and
                                             a.max_drawdown == b.max_drawdown and np.array_equal(a.equity, b.equity)
                                             and (a.checkpoint and a.checkpoint.to_json()) == (b.checkpoint and b.checkpoint.to_json()))

    split = replay_all(tasks)
    assert all(same(a, b) for a, b in zip(alone, split, strict=True))
    # A child that dies (here: before computing anything) changes nothing but the time.
    monkeypatch.setattr(replay, "_run", lambda t: (_ for _ in ()).throw(MemoryError()) if os.getpid() != parent
                        else replay_decisions(t.bars, t.decisions, limits=t.limits, market=t.market,
                                              starting_krw=t.starting_krw))
    parent = os.getpid()
    assert all(same(a, b) for a, b in zip(alone, replay_all(tasks), strict=True))


@pytest.mark.parametrize("seed", range(6))
def test_a_resumed_replay_equals_a_replay_from_the_first_bar(seed: int) -> None:
    rng = random.Random(seed)
    bars, decisions = history(rng, 400)
    limits = rng.choice([LIMITS, RiskLimits(Decimal("0.6"), Decimal(30_000), Decimal(10_000_000), Decimal(500))])
    whole = replay_decisions(bars, decisions, limits=limits, market=BTC, starting_krw=1_000_000.0)
    assert whole is not None and whole.checkpoint is not None and whole.fills > 0
    for cut in (100, 250, len(bars) - 5):  # an earlier report: the bars and decisions there were then
        end = bars[cut - 1, 0] + 1800
        early = replay_decisions(bars[:cut], decisions[decisions[:, 0] < end], limits=limits, market=BTC,
                                 starting_krw=1_000_000.0)
        assert early is not None and early.checkpoint is not None
        saved = Checkpoint.from_json(json.loads(json.dumps(early.checkpoint.to_json())))
        assert saved is not None and 0 < saved.bar < cut
        resumed = replay_decisions(bars, decisions, limits=limits, market=BTC, starting_krw=1_000_000.0, resume=saved)
        assert resumed is not None
        assert resumed.equity.tobytes() == whole.equity.tobytes()
        assert (resumed.final_equity, resumed.max_drawdown, resumed.fills) == (
            whole.final_equity, whole.max_drawdown, whole.fills)
    # Another start, another decision in an early hour: the checkpoint no longer holds and is not used.
    other = replay_decisions(bars, decisions, limits=limits, market=BTC, starting_krw=900_000.0, resume=whole.checkpoint)
    fresh = replay_decisions(bars, decisions, limits=limits, market=BTC, starting_krw=900_000.0)
    assert other is not None and fresh is not None and other.equity.tobytes() == fresh.equity.tobytes()
    changed = decisions.copy()
    changed[len(changed) // 4, 1] *= -1
    late = replay_decisions(bars, changed, limits=limits, market=BTC, starting_krw=1_000_000.0, resume=whole.checkpoint)
    fresh = replay_decisions(bars, changed, limits=limits, market=BTC, starting_krw=1_000_000.0)
    assert late is not None and fresh is not None and late.equity.tobytes() == fresh.equity.tobytes()
    assert Checkpoint.from_json({"bar": 3}) is None


T0 = datetime(2026, 10, 1, tzinfo=UTC)


def seed(conn: Any, rng: random.Random, first: int, hours: int) -> None:
    """Hourly candles of KRW-BTC and each hour's acting rules decision with the three shadows."""
    price = Decimal(100_000_000)
    candles = []
    for h in range(first, first + hours):
        close = (price * Decimal(1 + rng.gauss(0, 0.01))).quantize(Decimal(1000))
        candles.append(Candle(T0 + timedelta(hours=h), price, max(price, close), min(price, close), close, Decimal(1)))
        position = Position(BTC, Decimal(1_000_000), Decimal(0), Decimal(0), Decimal(0), Decimal(0), price)
        for advisor, role in (("rules", "acting"), ("claude", "shadow"), ("hold", "shadow"), ("buy_and_hold", "shadow")):
            kind = {"hold": "hold", "buy_and_hold": "buy"}.get(advisor) or rng.choice(["buy", "sell", "hold"])
            result = AdvisorResult(advisor=advisor, model=None, decision=Decision(kind, Decimal("0.8"), Decimal("0.5"), "t"))  # type: ignore[arg-type]
            ctx = CycleContext(market=BTC, mode="paper", advisor=advisor, dry_run=False, position=position, role=role)
            did = record_decision(conn, ctx, result, GateResult("hold"))
            conn.execute("UPDATE decisions SET created_at = %s WHERE id = %s", (T0 + timedelta(hours=h, minutes=5), did))
        price = close
    save_candles(conn, BTC, "minute60", candles)


def test_the_report_goes_on_from_its_checkpoints(tb_env: dict[str, str], db_url: str) -> None:
    rng = random.Random(7)
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed(conn, rng, 0, 100)
    state = Path(tb_env["TRADEBOT_STATE_DIR"]) / "report-ledgers"

    def report(env: dict[str, str]) -> str:
        out = run_cli(["advisors", "report", "--format", "json", "--until", "2026-12-01"], env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    first = report(tb_env)
    [file] = state.iterdir()
    assert set(json.loads(file.read_text())["ledgers"]) == {"KRW-BTC|acting|False", "KRW-BTC|rules|False",
                                                            "KRW-BTC|claude|False", "KRW-BTC|buy_and_hold|False",
                                                            "KRW-BTC|hold|False"}
    assert report(tb_env) == first
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed(conn, rng, 100, 40)  # the next hours: the report goes on from the checkpoints
    resumed = report(tb_env)
    file.unlink()
    assert report(tb_env) == resumed != first  # replayed from the first bar
    file.write_text('{"format": 1, "ledgers": {"KRW-BTC|rules|False": {"bar": "x"}}}')
    assert report(tb_env) == resumed
    limits = {**tb_env, "TRADEBOT_MAX_ORDER_KRW": "20000"}  # checkpoints made under other limits are not used
    changed = report(limits)
    file.unlink()
    assert report(limits) == changed != resumed
