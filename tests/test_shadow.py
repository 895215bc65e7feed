"""Shadow decisions (issue 13) end to end: after a real ``run-cycle`` (subprocess, simulator, fake Anthropic,
real PostgreSQL) the advisors that did not act have decided too — recorded beside the acting row, never
traded, never asking the model unless TRADEBOT_SHADOW_MODEL=on."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_cli
from tests.stack import live_services
from tests.test_cycle_e2e import ACCESS, ANTHROPIC_KEY, BOT_TOKEN, SECRET, answer

SQL = ("SELECT role, advisor, decision, action, cycle_id, price, input_tokens, ticker FROM decisions "
       "ORDER BY ticker, role, advisor")


def rows(db_url: str, sql: str = SQL) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.parametrize("markets", [("KRW-BTC",), ("KRW-BTC", "KRW-ETH")])
def test_the_other_advisors_decide_in_the_shadow_and_never_trade(tb_env: dict[str, str], db_url: str, tmp_path: Path,
                                                                 markets: tuple[str, ...]) -> None:
    with live_services(tb_env, tmp_path / "m", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, sim_markets=markets, TRADEBOT_MARKETS=",".join(markets),
                       TRADEBOT_BACKTEST_FILTER="off") as (sim, model, _telegram, env):
        if len(markets) == 1:
            model.enqueue_tool_answer(answer("buy", fraction=0.5))
        else:
            model.enqueue_tool_answer({"decisions": [{"market": m, **answer("buy", fraction=0.3)} for m in markets]},
                                      name="record_decisions")
        out = run_cli(["run-cycle"], env)
        assert out.returncode == 0, out.stdout + out.stderr
        orders = sim.orders()
    got = rows(db_url)
    assert len(orders) == len(markets)  # the acting buys only: a shadow never places an order
    for m in markets:
        mine = [r for r in got if r[7] == m]
        assert [(r[0], r[1]) for r in mine] == [("acting", "claude"), ("shadow", "buy_and_hold"), ("shadow", "hold"),
                                                ("shadow", "rules")]
        acting, bnh, hold, rules = mine
        assert {r[4] for r in mine} == {acting[4]} and {r[5] for r in mine} == {acting[5]}  # one cycle, one price
        assert bnh[2:4] == ("buy", "buy") and hold[2:4] == ("hold", "hold") and rules[2] in ("buy", "sell", "hold")
        assert bnh[6] == hold[6] == rules[6] == 0  # no tokens
    traded = rows(db_url, "SELECT d.role FROM trades t JOIN decisions d ON d.id = t.decision_id")
    assert traded == [("acting",)] * len(markets)


@pytest.mark.parametrize("shadow_model", ["off", "on"])
def test_the_model_is_asked_in_the_shadow_only_when_switched_on(tb_env: dict[str, str], db_url: str, tmp_path: Path,
                                                                shadow_model: str) -> None:
    with live_services(tb_env, tmp_path / "m", access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY,
                       bot_token=BOT_TOKEN, TRADEBOT_ADVISOR="rules", TRADEBOT_BACKTEST_FILTER="off",
                       TRADEBOT_SHADOW_MODEL=shadow_model) as (sim, model, _telegram, env):
        model.enqueue_tool_answer(answer("buy", fraction=1.0), usage={"input_tokens": 2000, "output_tokens": 50,
                                                                      "cache_read_input_tokens": 0,
                                                                      "cache_creation_input_tokens": 0})
        out = run_cli(["run-cycle"], env)
        assert out.returncode == 0, out.stdout + out.stderr
        orders = sim.orders()
    got = [(r[0], r[1], r[2], r[6]) for r in rows(db_url)]
    expected = [("acting", "rules"), ("shadow", "buy_and_hold"), ("shadow", "hold")]
    if shadow_model == "on":
        expected.insert(2, ("shadow", "claude"))
    assert [g[:2] for g in got] == expected
    if shadow_model == "on":
        assert got[2][2:] == ("buy", 2000)  # answered, billed, and not traded
    assert len(orders) == len([g for g in got if g[0] == "acting" and g[2] == "buy"])
