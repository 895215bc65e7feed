"""Reliability (issue 5): nothing lost, nothing doubled, nothing leaked — proven by fault injection.

Every scenario runs the real CLI as a subprocess against the in-process Upbit simulator, the fake Anthropic
and Telegram servers and a real PostgreSQL, breaks something on purpose (SIGKILL at a crash point, a lost
or failed HTTP response, a stopped database, two runs at once, bad input), and then compares the
database with the exchange's order book of record field by field (:func:`assert_db_equals_exchange`).

What each test proves is summed up in ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import run_cli
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.telegram_server import FakeTelegram
from tests.stack import live_services
from tradebot.exchange.simulator import SimulatorConfig, SimulatorServer
from tradebot.infra.faults import POINTS, crashpoint
from tradebot.infra.localpg import LocalPostgres, free_port
from tradebot.models import Candle, Market
from tradebot.store.trades import TRADE_COLUMNS

ACCESS = "sim-access-key-" + "A" * 50
SECRET = "sim-secret-key-" + "S" * 60
ANTHROPIC_KEY = "fake-anthropic-" + "K" * 40
BOT_TOKEN = "123456:FAKE-telegram-token-" + "T" * 20
TICKER = Market("KRW-BTC")


# ------------------------------------------------------------------------------------------------ harness
@dataclass
class Stack:
    sim: SimulatorServer
    model: FakeAnthropic
    telegram: FakeTelegram
    env: dict[str, str]
    db_url: str
    metrics: Path
    state: Path

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), {**self.env, **env})

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.cli("run-cycle", *args, **env)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "tradebot", "run-cycle", *args], env={**self.env, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(sql, params).fetchall()

    def trades(self) -> list[dict[str, Any]]:
        return trades(self.db_url)

    @property
    def journal(self) -> Path:
        return self.state / "journal.jsonl"


def trades(db_url: str, mode: str | None = None) -> list[dict[str, Any]]:
    """Every row of ``trades`` (of ``mode`` if given), oldest first, as dicts."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT {', '.join(TRADE_COLUMNS)} FROM trades "
                            "WHERE %(mode)s::text IS NULL OR mode = %(mode)s ORDER BY id", {"mode": mode}).fetchall()
    return [dict(zip(TRADE_COLUMNS, r, strict=True)) for r in rows]


@pytest.fixture
def stack(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> Iterator[Stack]:
    metrics = tmp_path / "metrics"
    with live_services(tb_env, metrics, access=ACCESS, secret=SECRET, anthropic_key=ANTHROPIC_KEY, bot_token=BOT_TOKEN, TRADEBOT_BACKTEST_FILTER="off", TRADEBOT_LLM_MAX_RETRIES="0", TRADEBOT_LLM_TIMEOUT_S="5", TRADEBOT_ORDER_POLL_TIMEOUT_S="5") as (sim, model, telegram, env):
        yield Stack(sim, model, telegram, env, db_url, metrics, Path(tb_env["TRADEBOT_STATE_DIR"]))


def answer(decision: str, confidence: float = 0.8, fraction: float = 0.5, reason: str = "test reason") -> dict[str, Any]:
    return {"decision": decision, "confidence": confidence, "fraction": fraction, "reason": reason}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def no_traceback(*outs: subprocess.CompletedProcess[str] | str) -> None:
    for out in outs:
        text = out if isinstance(out, str) else out.stdout + out.stderr
        assert "Traceback" not in text, text


def last_run_success(metrics: Path) -> float:
    m = re.search(r'^tradebot_last_run_success\{[^}]*\} (\S+)$', (metrics / "tradebot.prom").read_text(), re.M)
    assert m, (metrics / "tradebot.prom").read_text()
    return float(m.group(1))


# ---------------------------------------------------------------------------------- the database = the exchange
def exchange_fill(order: dict[str, Any]) -> dict[str, Any]:
    """The true fill of one order of record: Σ trades.volume, Σ trades.funds, their ratio and paid_fee."""
    volume = sum((Decimal(t["volume"]) for t in order["trades"]), Decimal(0))
    gross = sum((Decimal(t["funds"]) for t in order["trades"]), Decimal(0))
    return {"amount": volume, "total": gross, "price": gross / volume if volume else None,
            "fee": Decimal(order["paid_fee"])}


def assert_db_equals_exchange(sim: SimulatorServer, db_url: str, *, mode: str = "live",
                              expect_orders: int | None = None) -> list[dict[str, Any]]:
    """The ``trades`` table of ``mode`` is exactly the simulator's record of our orders.

    * every order of ours (identifier ``tb-…``) has exactly one row with that client order id: ``completed``
      with uuid, side, market and the true fill (price = Σfunds/Σvolume, amount = Σvolume, total = Σfunds,
      fee = paid_fee) when it filled, ``cancelled`` when it ended with nothing filled, ``pending`` only while
      the exchange still has it waiting;
    * no completed, cancelled or pending row without an order on the exchange; a ``failed`` row has no order;
    * no identifier or uuid twice; orders with a foreign identifier never appear in the table.

    Returns the rows. ``expect_orders`` also pins how many orders of ours exist (nothing sent twice). Last,
    the bot's own reconciliation (live mode, in-process, dry run) must find nothing left to change.
    """
    orders = sim.orders()
    ours = [o for o in orders if (o["identifier"] or "").startswith("tb-")]
    foreign = [o for o in orders if o not in ours]
    rows = trades(db_url, mode)
    by_cid: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["client_order_id"] not in by_cid, f"duplicate row {row['client_order_id']}"
        by_cid[row["client_order_id"]] = row
    uuids = [r["trade_id"] for r in rows if r["trade_id"]]
    assert len(uuids) == len(set(uuids)), f"an exchange uuid is recorded twice: {uuids}"
    identifiers = [o["identifier"] for o in orders if o["identifier"]]
    assert len(identifiers) == len(set(identifiers)), "an identifier was used twice on the exchange"
    if expect_orders is not None:
        assert len(ours) == expect_orders, f"expected {expect_orders} order(s) of ours on the exchange, found {ours}"

    for o in ours:
        found = by_cid.get(o["identifier"])
        assert found is not None, f"order {o['uuid']} ({o['identifier']}) is on the exchange but not in the database"
        row, truth = found, exchange_fill(o)
        where = f"{o['identifier']}: row {row} vs order {o}"
        assert row["symbol"] == o["market"] and row["side"] == {"bid": "buy", "ask": "sell"}[o["side"]], where
        if o["state"] in ("done", "cancel") and truth["amount"] > 0:
            assert row["status"] == "completed", where
            assert row["trade_id"] == o["uuid"], where
            assert (row["price"], row["amount"], row["total"], row["fee"]) == \
                (truth["price"], truth["amount"], truth["total"], truth["fee"]), where
            assert row["error"] is None, where
        elif o["state"] == "wait":
            assert row["status"] == "pending" and row["trade_id"] in (None, o["uuid"]), where
        else:
            assert row["status"] == "cancelled" and row["trade_id"] == o["uuid"], where

    our_ids = {o["identifier"] for o in ours}
    all_ids = {o["identifier"] for o in orders}
    for row in rows:
        if row["status"] in ("completed", "cancelled", "pending"):
            assert row["client_order_id"] in our_ids, f"row without an order on the exchange: {row}"
        if row["status"] == "failed":
            assert row["client_order_id"] not in all_ids, f"row marked failed but the order exists: {row}"
            assert row["error"], row
    for o in foreign:
        assert o["identifier"] not in by_cid and o["uuid"] not in uuids, f"a foreign order was recorded: {o}"
    if mode == "live":
        from tradebot.reconcile import reconcile

        with psycopg.connect(db_url, autocommit=True) as conn:
            again = reconcile(conn, _orders_in_process(sim), TICKER, "live", datetime.now(UTC) - timedelta(days=7),
                              dry_run=True)
        assert again.changed == [], f"reconcile would still change: {again.changes}"
    return rows


# ================================================================================ 1. tradebot reconcile
def _orders_in_process(sim: SimulatorServer) -> Any:
    """The real Upbit adapter, in this process, on the simulator's account."""
    from tradebot.exchange.upbit import UpbitExchange

    return UpbitExchange(sim.config.access_key, sim.config.secret_key, sim.url, poll_timeout_s=5)


def test_reconcile_repairs_every_kind_of_drift_and_is_idempotent(stack: Stack) -> None:
    """Pending rows resolved by identifier, missing rows recovered, tampered rows corrected, foreign orders
    and out-of-window orders left alone; --dry-run writes nothing; a second run changes nothing."""
    from tradebot.store.trades import apply_fill, insert_pending

    # The simulator's clock, shifted back 10 days for one order (created outside the default window).
    shift = [0.0]
    stack.sim.stop()
    sim = SimulatorServer(SimulatorConfig(port=0, access_key=ACCESS, secret_key=SECRET,
                                          clock=lambda: time.time() + shift[0])).start()
    try:
        env = {"UPBIT_API_URL": sim.url}
        ex = _orders_in_process(sim)
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            def record(cid: str, side: str, fill: Any | None) -> None:
                insert_pending(conn, client_order_id=cid, symbol=TICKER, side=side, mode="live",
                               requested_krw=Decimal(10000) if side == "buy" else None,
                               requested_volume=None if side == "buy" else Decimal("0.0001"), decision_id=None)
                if fill is not None:
                    assert apply_fill(conn, cid, fill) == "completed"

            ok, tampered, failed_but_filled, deleted_sell = (f"tb-{n}-{'0' * 20}" for n in ("ok", "tampered", "status", "delsell"))
            pending_filled, never_sent, old_deleted = (f"tb-{n}-{'0' * 20}" for n in ("pending", "neversent", "old"))
            record(ok, "buy", ex.market_buy(TICKER, Decimal(10000), ok))
            record(tampered, "buy", ex.market_buy(TICKER, Decimal(12000), tampered))
            record(failed_but_filled, "buy", ex.market_buy(TICKER, Decimal(9000), failed_but_filled))
            record(deleted_sell, "sell", ex.market_sell(TICKER, Decimal("0.00005"), deleted_sell))
            record(pending_filled, "buy", None)
            ex.market_buy(TICKER, Decimal(8000), pending_filled)  # the process "died" before recording the fill
            record(never_sent, "buy", None)  # the process "died" before sending it
            foreign = ex.market_buy(TICKER, Decimal(7000), "manual-order-from-the-web-ui")  # not ours: not tb-
            shift[0] = -10 * 86400.0
            record(old_deleted, "buy", ex.market_buy(TICKER, Decimal(6000), old_deleted))
            shift[0] = 0.0

            conn.execute("UPDATE trades SET price = price * 2, amount = amount + 1, fee = 0 WHERE client_order_id = %s",
                         (tampered,))
            conn.execute("UPDATE trades SET status = 'failed', error = 'tampered', price = NULL, amount = NULL, "
                         "total = NULL, fee = NULL WHERE client_order_id = %s", (failed_but_filled,))
            conn.execute("DELETE FROM trades WHERE client_order_id IN (%s, %s)", (deleted_sell, old_deleted))
        assert foreign.client_order_id == "manual-order-from-the-web-ui"

        def snapshot() -> list[tuple[Any, ...]]:
            return stack.rows("SELECT * FROM trades ORDER BY id")

        before = snapshot()
        dry = stack.cli("reconcile", "--dry-run", **env)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert snapshot() == before, "--dry-run wrote to the database"
        expected = {tampered: "corrected", failed_but_filled: "corrected", deleted_sell: "recovered",
                    pending_filled: "completed", never_sent: "failed"}
        for cid, kind in expected.items():
            assert f"{kind}: {cid}: " in dry.stdout, dry.stdout
        assert "5 row(s) would change" in dry.stdout, dry.stdout.splitlines()
        for untouched in (ok, old_deleted, "manual-order-from-the-web-ui"):
            assert untouched not in dry.stdout

        real = stack.cli("reconcile", **env)
        assert real.returncode == 0, real.stdout + real.stderr
        assert real.stdout.replace("5 row(s) changed", "5 row(s) would change") == dry.stdout
        [line] = [ln for ln in real.stdout.splitlines() if ln.startswith(f"corrected: {tampered}")]
        assert "price " in line and "amount " in line and "fee 0 → " in line, line  # old and new figures reported
        [line] = [ln for ln in real.stdout.splitlines() if ln.startswith(f"corrected: {failed_but_filled}")]
        assert "status failed → completed" in line
        no_traceback(dry, real)

        # Everything inside the 7-day window now equals the exchange; the 10-day-old order is out of it.
        rows = {r["client_order_id"]: r for r in trades(stack.db_url)}
        assert old_deleted not in rows
        assert rows[deleted_sell]["recovered"] is True and rows[deleted_sell]["side"] == "sell"
        assert rows[pending_filled]["recovered"] is False and rows[never_sent]["status"] == "failed"
        assert [rows[c]["recovered"] for c in (ok, tampered, failed_but_filled)] == [False, False, False]

        after = snapshot()
        again = stack.cli("reconcile", **env)
        assert again.returncode == 0 and "0 row(s) changed" in again.stdout, again.stdout
        assert snapshot() == after, "a second reconcile changed something"

        wide = stack.cli("reconcile", "--days", "14", **env)
        assert f"recovered: {old_deleted}: " in wide.stdout and "1 row(s) changed" in wide.stdout, wide.stdout
        assert_db_equals_exchange(sim, stack.db_url, expect_orders=6)
        assert stack.rows("SELECT count(*) FROM trades WHERE client_order_id LIKE 'manual%%'") == [(0,)]
    finally:
        sim.stop()


def test_reconcile_refuses_bad_days(stack: Stack) -> None:
    out = stack.cli("reconcile", "--days", "0")
    assert out.returncode == 2 and "--days" in out.stderr


# ================================================================================ 2. crash safety (SIGKILL)
@pytest.mark.parametrize("then", ["reconcile", "run-cycle"])
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_point_then_the_next_run_reaches_the_exchange_truth(stack: Stack, point: str, then: str) -> None:
    stack.model.enqueue_tool_answer(answer("buy"))
    crashed = stack.run(TRADEBOT_CRASH_AT=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr

    [row] = stack.trades()
    orders = stack.sim.orders()
    if point == "before_order":  # recorded, never sent
        assert orders == [] and (row["status"], row["trade_id"]) == ("pending", None)
    elif point in ("after_post", "after_fill"):  # on the exchange, the database knows nothing but the intent
        assert [o["identifier"] for o in orders] == [row["client_order_id"]]
        assert (row["status"], row["trade_id"]) == ("pending", None)
    else:
        assert row["status"] == "completed" and len(orders) == 1

    # `reconcile`, or simply the next hourly run (the model now says hold: the queue is empty).
    out = stack.cli("reconcile") if then == "reconcile" else stack.run()
    assert out.returncode == 0, out.stdout + out.stderr
    no_traceback(out)
    [row] = assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=0 if point == "before_order" else 1)
    if point == "before_order":
        assert row["status"] == "failed" and "never" in row["error"]
    else:
        assert row["status"] == "completed" and row["recovered"] is False  # its own pending row, completed
    if point != "after_record":
        assert row["client_order_id"] in out.stdout  # the repair is reported


def test_crashpoint_is_inert_when_unset_or_unknown(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADEBOT_CRASH_AT", raising=False)
    for point in POINTS:
        crashpoint(point)  # still alive
    monkeypatch.setenv("TRADEBOT_CRASH_AT", "after_lunch")
    for point in (*POINTS, "after_lunch_not_a_point"):
        crashpoint(point)
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run(TRADEBOT_CRASH_AT="after_lunch")
    assert out.returncode == 0 and "✓ order: buy" in out.stdout, out.stdout + out.stderr
    [row] = assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)
    assert row["status"] == "completed"


# ================================================================================ 3. database outage
@pytest.fixture(scope="module")
def outage_pg() -> Iterator[LocalPostgres]:
    """A dedicated PostgreSQL this module may stop and start (the session server is never touched)."""
    from tradebot.infra.localpg import find_bindir, install_postgres

    bindir = find_bindir() or install_postgres()
    base = Path(tempfile.mkdtemp(prefix="tradebot-outage-pg-"))
    os.chmod(base, 0o755)
    server = LocalPostgres(base / "pg", bindir=bindir, fast_unsafe=True)
    server.start()
    # fast_unsafe turns synchronous_commit off: an immediate stop could then lose the last commits (the
    # pending row). The production setting is on; the test must not weaken what it checks.
    with psycopg.connect(server.admin_url("postgres"), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET synchronous_commit = on")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def outage(stack: Stack, outage_pg: LocalPostgres) -> Stack:
    """The stack, with its database on the dedicated server."""
    from tradebot.store.db import migrate

    outage_pg.start()  # running again even if an earlier test failed while it was stopped
    name = f"outage_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(outage_pg.admin_url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = outage_pg.admin_url(name)
    migrate(url)
    return replace(stack, env={**stack.env, "DATABASE_URL": url}, db_url=url)


def _journal_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_database_lost_while_a_live_order_fills_is_journaled_then_replayed(outage: Stack, outage_pg: LocalPostgres) -> None:
    s = outage
    s.sim.set_faults(fill_delay_s=2.0)  # stopping the server takes ~0.1 s
    s.model.enqueue_tool_answer(answer("buy"))
    proc = s.popen(TRADEBOT_ORDER_POLL_TIMEOUT_S="30")
    try:
        wait_for(s.sim.orders, "the order to reach the exchange", timeout=60)
        outage_pg.stop("immediate")  # while the adapter polls the order
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stdout + stderr
    no_traceback(stdout + stderr)
    [order] = s.sim.orders()
    assert order["state"] in ("done", "cancel")
    truth = exchange_fill(order)

    # The journal holds the exact fill, fsync'd, under the state directory.
    [entry] = _journal_entries(s.journal)
    assert entry["client_order_id"] == order["identifier"]
    f = entry["fill"]
    assert (f["uuid"], f["client_order_id"], f["market"], f["side"], f["state"], f["resolved"]) == \
        (order["uuid"], order["identifier"], TICKER, "buy", order["state"], True)
    assert (Decimal(f["volume"]), Decimal(f["gross"]), Decimal(f["fee"])) == (truth["amount"], truth["total"], truth["fee"])

    # It says so (stderr, step line), alerts, and the metrics record a failed run.
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: record failed: the database is unreachable") and str(s.journal) in last, stderr
    assert "✗ record: the database is unreachable" in stdout
    alerts = [t for t in s.telegram.texts if "record failed" in t]
    assert len(alerts) == 1 and "journal.jsonl" in alerts[0] and order["identifier"] in alerts[0]
    assert last_run_success(s.metrics) == 0.0

    outage_pg.start()
    [row] = s.trades()
    assert (row["status"], row["trade_id"]) == ("pending", None)  # the database missed the fill

    nxt = s.run()  # the next hourly run (model: hold) replays the journal first
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert f"{order['identifier']}: replayed from the journal → completed" in nxt.stdout
    assert not s.journal.exists()
    [row] = assert_db_equals_exchange(s.sim, s.db_url, expect_orders=1)
    assert row["status"] == "completed" and row["recovered"] is False


def test_database_lost_while_a_paper_fill_is_recorded_is_journaled_then_replayed(outage: Stack, outage_pg: LocalPostgres) -> None:
    """Paper fills exist only inside the process: the journal is their only record."""
    from tradebot.exchange.paper import PaperExchange

    s = outage
    s.model.enqueue_tool_answer(answer("buy"), delay=1.0)
    proc = s.popen(TRADEBOT_MODE="paper")
    try:
        wait_for(lambda: s.model.requests, "the advisor call", timeout=60)
        # The advisor's orderbook read is done; the paper broker's own read (after it checked the paper
        # balance in the database) now fails twice and is retried (0.5 s, then 1 s): the database goes away
        # in that window, before the fill is written.
        s.sim.set_faults(fail_next=2, fail_status=503, fail_path="/v1/orderbook", fail_method="GET")
        wait_for(lambda: s.sim.state()["faults"]["fail_next"] < 2, "the paper broker's orderbook read", timeout=30)
        outage_pg.stop("immediate")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stdout + stderr
    no_traceback(stdout + stderr)
    assert s.sim.orders() == []  # paper never sends orders

    [entry] = _journal_entries(s.journal)
    f = entry["fill"]
    assert f["uuid"].startswith("paper-") and f["side"] == "buy" and f["state"] == "done"
    volume, gross, fee = Decimal(f["volume"]), Decimal(f["gross"]), Decimal(f["fee"])
    assert volume > 0 and gross > 0 and fee == gross * Decimal("0.0005")
    assert "Error: record failed: the database is unreachable" in stderr
    assert any("record failed" in t and "journal.jsonl" in t for t in s.telegram.texts)

    outage_pg.start()
    rec = s.cli("reconcile", TRADEBOT_MODE="paper")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert f"journal: {entry['client_order_id']}: {entry['client_order_id']}: replayed from the journal → completed" in rec.stdout
    assert not s.journal.exists()
    [row] = s.trades()
    assert (row["client_order_id"], row["trade_id"], row["status"], row["mode"], row["recovered"]) == \
        (entry["client_order_id"], f["uuid"], "completed", "paper", False)
    assert (row["price"], row["amount"], row["total"], row["fee"]) == (gross / volume, volume, gross, fee)
    with psycopg.connect(s.db_url) as conn:
        krw = {b.currency: b.free for b in PaperExchange(None, conn, Decimal(1_000_000)).balances()}  # type: ignore[arg-type]
    assert krw == {"KRW": Decimal(1_000_000) - gross - fee, "BTC": volume}
    again = s.cli("reconcile", TRADEBOT_MODE="paper")
    assert "0 row(s) changed" in again.stdout, again.stdout


def test_database_unreachable_at_the_start_places_no_order(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/tradebot?connect_timeout=3")
    assert out.returncode == 1, out.stdout + out.stderr
    no_traceback(out)
    assert out.stderr.strip().splitlines()[-1].startswith("Error: database failed: cannot connect to PostgreSQL at 127.0.0.1:")
    assert stack.sim.orders() == [] and stack.model.requests == []
    assert len(stack.telegram.texts) == 1 and "database failed" in stack.telegram.texts[0]
    assert last_run_success(stack.metrics) == 0.0


def _fill(cid: str, uuid: str = "u-1") -> Any:
    from tradebot.models import Fill, OrderState

    return Fill(uuid=uuid, client_order_id=cid, market=TICKER, side="buy", state=OrderState.CANCEL,
                volume=Decimal("0.00038461"), gross=Decimal("49999.3"), fee=Decimal("24.99965"),
                created_at=datetime.now(UTC))


def _pending(conn: psycopg.Connection[Any], cid: str) -> None:
    from tradebot.store.trades import insert_pending

    insert_pending(conn, client_order_id=cid, symbol=TICKER, side="buy", mode="live",
                   requested_krw=Decimal(50000), requested_volume=None, decision_id=None)


def test_journal_replay_is_idempotent_and_survives_a_torn_line(db_url: str, tmp_path: Path) -> None:
    """A fill journaled twice (two failed runs), then a line torn by a crash mid-write, then another fill."""
    from tradebot import journal

    one, two = _fill("tb-journal-one-00000000"), _fill("tb-journal-two-00000000", uuid="u-2")
    journal.append(tmp_path, "tb-journal-one-00000000", one, "live")
    journal.append(tmp_path, "tb-journal-one-00000000", one, "live")
    with (tmp_path / journal.FILE).open("a") as fh:
        fh.write('{"client_order_id": "tb-torn')  # no newline: the crash happened mid-line
    journal.append(tmp_path, "tb-journal-two-00000000", two, "live")
    with psycopg.connect(db_url, autocommit=True) as conn:
        _pending(conn, "tb-journal-one-00000000")
        _pending(conn, "tb-journal-two-00000000")
        lines = journal.replay(tmp_path, conn)
        assert journal.replay(tmp_path, conn) == []
    assert len(lines) == 3 and not (tmp_path / journal.FILE).exists()
    rows = trades(db_url)
    assert [(r["status"], r["trade_id"], r["amount"], r["total"], r["fee"], r["price"]) for r in rows] == \
        [("completed", f.uuid, f.volume, f.gross, f.fee, f.gross / f.volume) for f in (one, two)]


def test_journal_recreates_a_missing_row(db_url: str, tmp_path: Path) -> None:
    """The pending row is gone (a database restored from an older backup): the journaled fill is the record."""
    from tradebot import journal

    fill = _fill("tb-journal-lost-0000000")
    journal.append(tmp_path, "tb-journal-lost-0000000", fill, "paper")
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert journal.replay(tmp_path, conn) == ["tb-journal-lost-0000000: replayed from the journal → recovered"]
    [row] = trades(db_url)
    assert (row["status"], row["mode"], row["recovered"], row["amount"], row["total"], row["fee"]) == \
        ("completed", "paper", True, fill.volume, fill.gross, fill.fee)


def test_journal_entry_appended_during_a_replay_is_not_lost(db_url: str, tmp_path: Path) -> None:
    """Cycles of different tickers share the state directory: one may append while another replays."""
    import threading

    from tradebot import journal

    journal.append(tmp_path, "tb-journal-old-00000000", _fill("tb-journal-old-00000000"), "live")
    with psycopg.connect(db_url, autocommit=True) as setup:
        _pending(setup, "tb-journal-old-00000000")
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 — reported by the main thread
                errors.append(e)
        return run

    with psycopg.connect(db_url) as blocker, psycopg.connect(db_url, autocommit=True) as conn:
        # Hold the row so that the replay stops inside its UPDATE, after it has read the journal.
        blocker.execute("SELECT 1 FROM trades WHERE client_order_id = 'tb-journal-old-00000000' FOR UPDATE")
        replayer = threading.Thread(target=guarded(lambda: journal.replay(tmp_path, conn)))
        replayer.start()
        with psycopg.connect(db_url, autocommit=True) as watch:
            wait_for(lambda: watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND datname = current_database()").fetchone()[0],  # type: ignore[index]
                     "the replay to wait for the row", timeout=10)
        appender = threading.Thread(target=guarded(lambda: journal.append(
            tmp_path, "tb-journal-new-00000000", _fill("tb-journal-new-00000000", uuid="u-new"), "live")))
        appender.start()
        time.sleep(0.3)  # the appender is now waiting for the journal lock (or, unlocked, would have written)
        blocker.commit()
        replayer.join(10)
        appender.join(10)
    assert not errors, errors
    assert [e["client_order_id"] for e in journal.entries(tmp_path)] == ["tb-journal-new-00000000"]


def test_database_lost_inside_the_paper_broker_fails_the_cycle_cleanly(db_url: str, tmp_path: Path) -> None:
    """The paper broker reads its account in PostgreSQL while placing the order: the database going away
    there is a failed step with an alert (no traceback), and the pending row is resolved by the next run."""
    from tradebot.config import load_settings
    from tradebot.cycle import CycleParts, run_cycle
    from tradebot.exchange.paper import PaperExchange
    from tradebot.exchange.upbit import UpbitExchange
    from tradebot.models import AdvisorInput, AdvisorResult, Decision
    from tradebot.reconcile import resolve_pending

    class Buy:
        name: str = "scripted"
        model: str | None = None

        def advise(self, inp: AdvisorInput) -> AdvisorResult:
            return AdvisorResult(advisor="scripted", model=None,
                                 decision=Decision("buy", Decimal("0.9"), Decimal("0.5"), "scripted buy"))

    class LosesTheDatabase(PaperExchange):
        def market_buy(self, ticker: str, krw: Decimal, client_order_id: str) -> Any:
            with pytest.raises(psycopg.OperationalError):  # the server ends our session
                self.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return super().market_buy(ticker, krw, client_order_id)

    sent: list[str] = []

    class Notes:
        def send(self, text_html: str) -> None:
            sent.append(text_html)

    with SimulatorServer(SimulatorConfig(port=0)) as sim, psycopg.connect(db_url, autocommit=True) as conn:
        settings = load_settings(None, environ={"DATABASE_URL": db_url, "TRADEBOT_MODE": "paper",
                                               "TRADEBOT_BACKTEST_FILTER": "off", "UPBIT_API_URL": sim.url,
                                               "TRADEBOT_STATE_DIR": str(tmp_path)})
        market = UpbitExchange("", "", sim.url)
        report = run_cycle(CycleParts(settings=settings, conn=conn, exchange=LosesTheDatabase(market, conn, Decimal(10**6)),
                                      make_advisor=Buy, notifier=Notes()))
    assert (report.outcome, report.failed_step, report.exit_code) == ("failed", "order", 1), report.to_json()
    assert report.error and "the paper account could not be read from PostgreSQL (OperationalError)" in report.error
    assert len(sent) == 1 and "order failed" in sent[0]
    [row] = trades(db_url)
    assert row["status"] == "pending"
    with psycopg.connect(db_url, autocommit=True) as conn:
        fixed = resolve_pending(conn, PaperExchange(market, conn, Decimal(10**6)), TICKER, "paper")
    assert [c.kind for c in fixed.changes] == ["failed"]  # never filled: the paper exchange is the process
    [row] = trades(db_url)
    assert row["status"] == "failed" and row["error"]


# -------------------------------------------------------- 3b. when the journal cannot take the fill either
def _file_size_limit(nbytes: int) -> Callable[[], None]:
    """For ``preexec_fn``: files this process writes may not grow past ``nbytes`` — a write that would
    cross it is cut short, the next one fails with EFBIG, exactly what a full disk does to an append."""
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not death (SIG_IGN survives exec)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def test_a_journal_line_that_cannot_be_written_whole_is_not_saved_and_leaves_no_torn_line(tmp_path: Path) -> None:
    import errno

    from tradebot import journal

    journal.append(tmp_path, "tb-journal-full-00000001", _fill("tb-journal-full-00000001"), "paper")
    before = (tmp_path / journal.FILE).read_bytes()
    code = (
        "from datetime import UTC, datetime\n"
        "from decimal import Decimal\n"
        "from pathlib import Path\n"
        "from tradebot import journal\n"
        "from tradebot.models import Fill, OrderState\n"
        "fill = Fill(uuid='paper-2', client_order_id='tb-journal-full-00000002', market='KRW-BTC', side='buy',\n"
        "            state=OrderState.DONE, volume=Decimal('0.00038461'), gross=Decimal('49999.3'),\n"
        "            fee=Decimal('24.99965'), created_at=datetime.now(UTC))\n"
        "try:\n"
        f"    journal.append(Path({str(tmp_path)!r}), 'tb-journal-full-00000002', fill, 'paper')\n"
        "except OSError as e:\n"
        "    print('raised', e.errno)\n"
        "else:\n"
        "    print('saved')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(Path(__file__).parent.parent)},
                         preexec_fn=_file_size_limit(len(before) + 40))  # room for 40 bytes of the new line
    assert out.stdout.strip() == f"raised {errno.EFBIG}", out.stdout + out.stderr
    assert (tmp_path / journal.FILE).read_bytes() == before  # the 40 bytes were taken back


def _record_fails_everywhere(s: Stack, outage_pg: LocalPostgres, mode: str) -> tuple[subprocess.CompletedProcess[str], re.Match[str]]:
    """Run a buy whose fill the database (stopped mid-order) and the journal (no room) both refuse."""
    env = {**s.env, "TRADEBOT_MODE": mode, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tradebot", "run-cycle"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_file_size_limit(40))
    try:
        if mode == "paper":  # stop the database while the paper broker reads the book (as in the test above)
            wait_for(lambda: s.model.requests, "the advisor call", timeout=60)
            s.sim.set_faults(fail_next=2, fail_status=503, fail_path="/v1/orderbook", fail_method="GET")
            wait_for(lambda: s.sim.state()["faults"]["fail_next"] < 2, "the paper broker's orderbook read", timeout=30)
        else:  # ... or while the live adapter polls the order
            wait_for(s.sim.orders, "the order to reach the exchange", timeout=60)
        outage_pg.stop("immediate")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 1, stdout + stderr
    no_traceback(out)
    assert not s.journal.exists() or s.journal.read_bytes() == b""  # nothing torn left behind
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: record failed: the database is unreachable (OperationalError) and the journal in "
                           f"{s.state} could not be written (File too large): "), last
    assert "saved" not in last and "will be recorded by the next run" not in last
    m = re.search(r"order (tb-[0-9a-f]{32}) \(([^)]+)\): buy (\d+\.\d+) KRW-BTC at average (\d+(?:\.\d+)?) = "
                  r"(\d+(?:\.\d+)?) KRW total, fee (\d+(?:\.\d+)?) KRW \(state (done|cancel)\)\. ", last)
    assert m, last
    volume, avg, gross, fee = (Decimal(m.group(i)) for i in (3, 4, 5, 6))
    assert volume > 0 and gross > 0 and fee == gross * Decimal("0.0005") and abs(avg * volume - gross) < 1
    # The owner is told the same, with the same numbers, on Telegram.
    [alert] = [t for t in s.telegram.texts if "record failed" in t]
    assert all(m.group(i) in alert for i in (1, 2, 3, 5, 6)), alert
    return out, m


def test_paper_fill_lost_with_the_database_and_the_journal_is_reported_and_marked_unknown(outage: Stack, outage_pg: LocalPostgres) -> None:
    s = outage
    s.model.enqueue_tool_answer(answer("buy"), delay=1.0)
    out, m = _record_fails_everywhere(s, outage_pg, "paper")
    cid, uuid = m.group(1), m.group(2)
    assert uuid.startswith("paper-")
    assert out.stderr.strip().endswith(f"this paper fill exists nowhere else and cannot be recovered automatically: the "
                                       f"next run marks {cid} 'unknown' (needs attention); record it by hand from these "
                                       "details if you need it")
    outage_pg.start()
    [row] = s.trades()
    assert (row["status"], row["trade_id"]) == ("pending", uuid)  # accepted by the paper broker, fill not recorded

    rec = s.cli("reconcile", TRADEBOT_MODE="paper")
    assert rec.returncode == 1, rec.stdout + rec.stderr
    assert f"unknown: {cid}: needs attention: paper order {uuid} was accepted but its fill was never recorded" in rec.stdout
    assert rec.stderr.strip() == "Error: 1 item(s) need your attention (quarantined or unknown, see above)"
    [row] = s.trades()
    assert row["status"] == "unknown" and "tradebot cannot recover it" in row["error"]  # never "failed: never placed"
    again = s.cli("reconcile", TRADEBOT_MODE="paper")
    assert again.returncode == 0 and "0 row(s) changed" in again.stdout, again.stdout + again.stderr


def test_live_fill_lost_with_the_database_and_the_journal_is_recovered_from_the_exchange(outage: Stack, outage_pg: LocalPostgres) -> None:
    s = outage
    s.sim.set_faults(fill_delay_s=2.0)
    s.model.enqueue_tool_answer(answer("buy"))
    out, m = _record_fails_everywhere(s, outage_pg, "live")
    [order] = s.sim.orders()
    assert (m.group(1), m.group(2)) == (order["identifier"], order["uuid"])
    assert out.stderr.strip().endswith("Upbit keeps the order: the next run (or `tradebot reconcile`) records this fill "
                                       "from the exchange by its identifier")
    outage_pg.start()
    nxt = s.run()  # the model says hold; the pending row is completed from the exchange first
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    [row] = assert_db_equals_exchange(s.sim, s.db_url, expect_orders=1)
    assert row["status"] == "completed" and row["recovered"] is False


def test_a_torn_journal_line_is_quarantined_and_reported_never_dropped(db_url: str, tmp_path: Path) -> None:
    from tradebot import journal

    one, two = _fill("tb-journal-q-one-0000000"), _fill("tb-journal-q-two-0000000", uuid="u-2")
    journal.append(tmp_path, "tb-journal-q-one-0000000", one, "live")
    torn = '{"client_order_id": "tb-journal-q-torn-00000", "mode": "paper", "fill": {"uuid": "paper-9'
    with (tmp_path / journal.FILE).open("a") as fh:
        fh.write(torn)  # a crash mid-write: no newline
    journal.append(tmp_path, "tb-journal-q-two-0000000", two, "live")
    with psycopg.connect(db_url, autocommit=True) as conn:
        _pending(conn, "tb-journal-q-one-0000000")
        _pending(conn, "tb-journal-q-two-0000000")
        damaged: list[str] = []
        lines = journal.replay(tmp_path, conn, damaged=damaged)
    assert len(lines) == 2 and [r["status"] for r in trades(db_url)] == ["completed", "completed"]
    assert (tmp_path / journal.QUARANTINE).read_text() == torn + "\n"  # kept byte for byte
    assert not (tmp_path / journal.FILE).exists()
    assert damaged == [f"journal line 2 could not be read (torn by a crash or damaged) and was moved to "
                       f"{tmp_path / journal.QUARANTINE}: it held the fill of order tb-journal-q-torn-00000. A live "
                       "order is recovered from Upbit by `tradebot reconcile`; a paper fill cannot be recovered — "
                       "compare the line with the alert of the run that wrote it, record it by hand if you need "
                       "it, then delete the quarantine file"]


def test_a_cycle_that_finds_a_damaged_journal_line_alerts_and_places_no_order(stack: Stack) -> None:
    stack.state.mkdir(parents=True, exist_ok=True)
    stack.journal.write_text("\x00\x00garbage from a bad disk sector\n")
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run()
    assert out.returncode == 1, out.stdout + out.stderr
    no_traceback(out)
    assert "✗ reconcile: needs attention: journal line 1 could not be read" in out.stdout, out.stdout
    assert stack.sim.orders() == [] and stack.model.requests == []
    [alert] = stack.telegram.texts
    assert "reconcile failed" in alert and "journal.quarantine.jsonl" in alert
    assert (stack.state / "journal.quarantine.jsonl").read_text() == "\x00\x00garbage from a bad disk sector\n"
    nxt = stack.run()  # set aside and reported once: the next hour trades as usual
    assert nxt.returncode == 0 and "✓ order: buy" in nxt.stdout, nxt.stdout + nxt.stderr


# ================================================================================ 4. overlapping runs
def test_two_runs_at_once_place_at_most_one_order(stack: Stack) -> None:
    stack.sim.set_faults(fill_delay_s=2.0)  # the winner holds the lock while its order fills
    stack.model.enqueue_tool_answer(answer("buy"))
    stack.model.enqueue_tool_answer(answer("buy"))
    procs = [stack.popen(), stack.popen()]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 75], outs
    loser = outs[[p.returncode for p in procs].index(75)]
    assert loser[1].strip() == "Error: another cycle for KRW-BTC (live) is running; nothing done" and loser[0] == ""
    [row] = assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)
    assert row["status"] == "completed"
    assert stack.rows("SELECT count(*) FROM decisions WHERE role = 'acting'") == [(1,)]
    assert len(stack.model.requests) == 1


# ================================================================================ 5. lost and slow responses
@pytest.mark.parametrize("fault", [
    pytest.param({"drop_next_order_response": 1}, id="response-lost-after-accept"),
    pytest.param({"fail_next": 1, "fail_status": 500, "fail_path": "/v1/orders", "fail_method": "POST",
                  "fail_after_accept": True, "fail_body": "text"}, id="500-after-accept"),
])
def test_ambiguous_post_after_accept_is_found_by_identifier_not_resent(stack: Stack, fault: dict[str, Any]) -> None:
    stack.sim.set_faults(**fault)
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "✓ order: buy" in out.stdout and "outcome unknown" in out.stderr
    no_traceback(out)
    [row] = assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)
    assert row["status"] == "completed"


@pytest.mark.parametrize("fault", [
    pytest.param({"fail_status": 429}, id="429"),
    pytest.param({"fail_status": 503, "fail_body": "text"}, id="503-before-accept"),
])
def test_post_refused_before_accept_is_failed_with_no_order(stack: Stack, fault: dict[str, Any]) -> None:
    stack.sim.set_faults(fail_next=1, fail_path="/v1/orders", fail_method="POST", **fault)
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run()
    assert out.returncode == 1, out.stdout + out.stderr
    no_traceback(out)
    assert stack.sim.orders() == []
    [row] = assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=0)
    assert row["status"] == "failed" and "order_not_found" in row["error"] and "not placed" in row["error"]
    assert "✗ order: buy not placed" in out.stdout
    assert any("order failed" in t for t in stack.telegram.texts)


def test_fill_slower_than_the_poll_budget_stays_pending_then_completes(stack: Stack) -> None:
    stack.sim.set_faults(fill_delay_s=2.5)
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run(TRADEBOT_ORDER_POLL_TIMEOUT_S="0.5")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "left pending for the next run to reconcile" in out.stdout
    [order] = stack.sim.orders()
    [row] = assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)
    if order["state"] == "wait":
        assert (row["status"], row["trade_id"]) == ("pending", order["uuid"])
    wait_for(lambda: stack.sim.orders()[0]["state"] != "wait", "the slow fill", timeout=15)
    nxt = stack.run()  # model: hold
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert f"{row['client_order_id']}: completed" in nxt.stdout
    [row] = assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)
    assert row["status"] == "completed"


# ================================================================================ 6. bad input
@pytest.mark.parametrize(("var", "value"), [
    ("TRADEBOT_MAX_ORDER_KRW", "lots"),
    ("TRADEBOT_MODE", "yolo"),
    ("DATABASE_URL", "mysql://user:pw@localhost/db"),
    ("TRADEBOT_HOURLY_CANDLES", "5"),
    ("TRADEBOT_ORDER_POLL_TIMEOUT_S", "NaN"),
    ("UPBIT_API_URL", "ftp://upbit"),
    ("TELEGRAM_CHAT_ID", "my chat"),
    ("TRADEBOT_TICKER", "BTC"),
    ("UPBIT_SECRET_KEY", None),  # missing in live mode
    ("ANTHROPIC_API_KEY", None),  # missing with TRADEBOT_ADVISOR=claude
])
def test_malformed_or_missing_setting_exits_2_naming_the_variable(stack: Stack, var: str, value: str | None) -> None:
    env = {**stack.env, "TRADEBOT_ADVISOR": "claude"}
    if value is None:
        env.pop(var)
    else:
        env[var] = value
    stack.model.enqueue_tool_answer(answer("buy"))
    out = run_cli(["run-cycle"], env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"Error: {var} ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert stack.sim.orders() == [] and stack.telegram.texts == []
    assert stack.rows("SELECT count(*) FROM trades") == [(0,)]


def test_unknown_ticker_is_a_clear_error_and_no_order(stack: Stack) -> None:
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run(TRADEBOT_TICKER="KRW-NOPE")
    assert out.returncode == 1, out.stdout + out.stderr
    no_traceback(out)
    assert "KRW-NOPE" in out.stderr.strip().splitlines()[-1], out.stderr
    assert stack.sim.orders() == [] and stack.model.requests == []
    assert stack.rows("SELECT count(*) FROM trades") == [(0,)]


def test_database_from_a_newer_schema_is_refused(stack: Stack) -> None:
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version, description) VALUES (99, 'from the future') "
                     "ON CONFLICT DO NOTHING")
    stack.model.enqueue_tool_answer(answer("buy"))
    for args in (["run-cycle"], ["init-db"], ["trades", "list"], ["reconcile"]):
        out = stack.cli(*args)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "newer than this tradebot understands" in out.stderr and "upgrade tradebot" in out.stderr, out.stderr
        no_traceback(out)
    assert stack.sim.orders() == [] and stack.model.requests == []
    assert stack.rows("SELECT max(version) FROM schema_version") == [(99,)]
    assert stack.rows("SELECT count(*) FROM decisions") == [(0,)]


def _candle(start: datetime, o: str, h: str, lo: str, c: str, v: str = "1") -> Candle:
    return Candle(start=start, open=Decimal(o), high=Decimal(h), low=Decimal(lo), close=Decimal(c), volume=Decimal(v))


def test_clean_candles_sorts_dedupes_and_drops_malformed_rows_but_keeps_gaps() -> None:
    from tradebot.cycle import clean_candles

    t = datetime(2026, 11, 1, tzinfo=UTC)
    h = timedelta(hours=1)
    good = [_candle(t + i * h, "100", "110", "90", "105") for i in (0, 1, 3)]  # hour 2 missing: a gap
    bad = [
        _candle(t + 4 * h, "100", "90", "95", "100"),  # high below open
        _candle(t + 5 * h, "100", "110", "0", "100"),  # zero low
        _candle(t + 6 * h, "100", "110", "90", "100", "-1"),  # negative volume
        _candle(t + 7 * h, "100", "101", "102", "100"),  # low above high
    ]
    zero_volume = _candle(t + 8 * h, "100", "100", "100", "100", "0")  # an hour without trades is fine
    duplicate = _candle(t + h, "100", "120", "80", "110")  # the same hour twice: one survives
    out = clean_candles([zero_volume, *bad, good[2], duplicate, good[0], good[1]])
    assert [c.start for c in out] == [t, t + h, t + 3 * h, t + 8 * h]
    assert out[1] in (good[1], duplicate)
    assert clean_candles([]) == []


class _Mangled:
    """An exchange whose hourly candles are damaged on the way (everything else is the real adapter)."""

    def __init__(self, inner: Any, mangle: Callable[[list[Candle]], list[Candle]]) -> None:
        self.inner, self.mangle = inner, mangle

    def candles(self, ticker: str, interval: Any, count: int, *, to: datetime | None = None) -> list[Candle]:
        got = self.inner.candles(ticker, interval, count, to=to)
        return self.mangle(got) if interval == "minute60" else got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _flat(cs: list[Candle]) -> list[Candle]:
    return [replace(c, open=Decimal(100), high=Decimal(100), low=Decimal(100), close=Decimal(100), volume=Decimal(0))
            for c in cs]


MANGLES: dict[str, tuple[Callable[[list[Candle]], list[Candle]], bool]] = {
    # name: (mangle, the cycle can still decide)
    "reversed-with-duplicates": (lambda cs: list(reversed(cs)) + cs[::7], True),
    "every-third-hour-missing": (lambda cs: [c for i, c in enumerate(cs) if i % 3], True),
    "zero-volume": (lambda cs: [replace(c, volume=Decimal(0)) for c in cs], True),
    "flat-and-zero-volume": (_flat, True),
    "malformed-rows-mixed-in": (lambda cs: [replace(c, low=c.high + 1) if i % 5 == 0 else c for i, c in enumerate(cs)], True),
    "only-ten": (lambda cs: cs[-10:], False),
    "none": (lambda cs: [], False),
    "all-malformed": (lambda cs: [replace(c, low=Decimal(0)) for c in cs], False),
}


@pytest.mark.parametrize("name", list(MANGLES))
def test_cycle_over_damaged_candles_decides_or_fails_clearly(db_url: str, tmp_path: Path, name: str) -> None:
    from tradebot.advisor.rules import RulesAdvisor
    from tradebot.config import load_settings
    from tradebot.cycle import CycleParts, run_cycle
    from tradebot.exchange.upbit import UpbitExchange

    mangle, decides = MANGLES[name]
    sent: list[str] = []

    class Notes:
        def send(self, text_html: str) -> None:
            sent.append(text_html)

    with SimulatorServer(SimulatorConfig(port=0, access_key=ACCESS, secret_key=SECRET)) as sim, \
            psycopg.connect(db_url, autocommit=True) as conn:
        settings = load_settings(None, environ={"DATABASE_URL": db_url, "TRADEBOT_MODE": "live",
                                               "TRADEBOT_ADVISOR": "rules", "TRADEBOT_BACKTEST_FILTER": "on",
                                               "TRADEBOT_STATE_DIR": str(tmp_path)})
        exchange = _Mangled(UpbitExchange(ACCESS, SECRET, sim.url, poll_timeout_s=2), mangle)
        report = run_cycle(CycleParts(settings=settings, conn=conn, exchange=exchange,  # type: ignore[arg-type]
                                      make_advisor=RulesAdvisor, notifier=Notes()))
    if decides:
        assert report.outcome in ("hold", "traded", "filtered", "vetoed"), report.to_json()
        assert report.decision_id is not None
    else:
        assert report.outcome == "failed" and report.failed_step == "candles", report.to_json()
        assert re.fullmatch(r"only \d+ hourly candles for KRW-BTC; at least 30 are needed", report.error or "")
        assert len(sent) == 1 and "candles failed" in sent[0]
    assert sim.orders() == [] or report.outcome == "traded"


def test_cycle_over_a_candle_csv_with_gaps_zero_volume_and_disorder(stack: Stack, tmp_path: Path) -> None:
    """The simulator replays a CSV whose rows are shuffled, have hours missing and zero-volume hours."""
    import random

    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows, price = [], 100_000_000
    rng = random.Random(5)
    for i in range(400):
        if i % 11 == 3:
            continue  # a gap
        move = rng.randint(-400_000, 400_000)
        o, c = price, price + move
        vol = "0" if i % 9 == 0 else f"{rng.uniform(1, 50):.8f}"
        if vol == "0":
            c = o
        rows.append({"market": TICKER, "candle_date_time_utc": (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S"),
                     "opening_price": o, "high_price": max(o, c) + 100_000, "low_price": min(o, c) - 100_000,
                     "trade_price": c, "candle_acc_trade_volume": vol})
        price = c
    rng.shuffle(rows)
    csv_path = tmp_path / "candles.csv"
    header = list(rows[0])
    csv_path.write_text(",".join(header) + "\n" + "".join(",".join(str(r[k]) for k in header) + "\n" for r in rows))

    stack.sim.stop()
    with SimulatorServer(SimulatorConfig(port=0, access_key=ACCESS, secret_key=SECRET, candles_csv=csv_path)) as sim:
        stack.model.enqueue_tool_answer(answer("buy"))
        out = stack.run(UPBIT_API_URL=sim.url)
        assert out.returncode == 0, out.stdout + out.stderr
        no_traceback(out)
        assert "✓ candles: 200 hourly" in out.stdout and "✓ order: buy" in out.stdout
        assert_db_equals_exchange(sim, stack.db_url, expect_orders=1)


def test_nan_in_the_model_answer_holds_and_exits_1(stack: Stack) -> None:
    # Infinity, fractions above 1, extra fields, wrong types and unknown decisions: test_claude_advisor.py and
    # test_cycle_e2e.py. NaN goes over the wire as the JSON literal NaN (Python's json reads it as a float).
    message = "confidence must be a finite number"
    stack.model.enqueue_tool_answer({**answer("buy"), "confidence": float("nan")})
    out = stack.run()
    assert out.returncode == 1, out.stdout + out.stderr
    assert message in out.stderr.strip().splitlines()[-1], out.stderr
    no_traceback(out)
    assert stack.sim.orders() == [] and stack.rows("SELECT count(*) FROM trades") == [(0,)]
    [(action, error, raw)] = stack.rows("SELECT action, error, raw_response FROM decisions WHERE role = 'acting'")
    assert action == "hold" and message in error and '"confidence": NaN' in raw


def test_unwritable_metrics_directory_still_trades_and_doctor_flags_it(stack: Stack, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "metrics-is-a-file"
    not_a_dir.write_text("")  # root ignores permission bits, so use a path that cannot be a directory
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run(TRADEBOT_METRICS_DIR=str(not_a_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "✓ order: buy" in out.stdout and f"✗ metrics: cannot write metrics to {not_a_dir}" in out.stdout
    assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)
    doc = stack.cli("doctor", TRADEBOT_METRICS_DIR=str(not_a_dir))
    [line] = [ln for ln in doc.stdout.splitlines() if "metrics directory" in ln]
    assert line.startswith("! metrics directory") and str(not_a_dir) in line, doc.stdout
    assert doc.returncode == 0, doc.stdout  # a warning: metrics never stop trading


def test_failing_telegram_changes_nothing(stack: Stack) -> None:
    # Unreachable Telegram on a successful buy: traded, exit 0, the failure is a step line.
    stack.model.enqueue_tool_answer(answer("buy"))
    out = stack.run(TELEGRAM_API_URL=f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "✓ order: buy" in out.stdout and "✗ notify: telegram failed: Telegram sendMessage failed: ConnectionError" in out.stdout
    assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)
    # Telegram answering 500 on a failed cycle: still exit 1 for the cycle's own failure, nothing else.
    stack.telegram.enqueue_error(500, "Internal Server Error")
    stack.model.enqueue_tool_answer({"decision": "short", "confidence": 0.9, "fraction": 0.5, "reason": "x"})
    bad = stack.run()
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("Error: advisor failed: ")
    assert "✗ notify: telegram failed: Telegram sendMessage failed: HTTP 500" in bad.stdout
    no_traceback(out, bad)
    assert stack.telegram.texts == []
    assert_db_equals_exchange(stack.sim, stack.db_url, expect_orders=1)


# ================================================================================ 7. secrets never leak
UPBIT_ACCESS_CANARY = "UPBITACCESSCANARY" + "a1b2c3d4e5" * 4
UPBIT_SECRET_CANARY = "UPBITSECRETCANARY" + "f6a7b8c9d0" * 6
UPBIT_WRONG_SECRET_CANARY = "UPBITSECRETCANARYWRONG" + "0d9c8b7a6f" * 6
ANTHROPIC_CANARY = "fake-anthropic-ANTHROPICKEYCANARY" + "1234567890" * 4
ANTHROPIC_WRONG_CANARY = "fake-anthropic-ANTHROPICKEYCANARYWRONG" + "0987654321" * 4
TELEGRAM_CANARY = "123456:TELEGRAMTOKENCANARY" + "abcdefghij" * 2
TELEGRAM_WRONG_CANARY = "123456:TELEGRAMTOKENCANARYWRONG" + "jihgfedcba" * 2
DB_PASSWORD_CANARY = "DBPASSWORDCANARY" + "9876543210" * 2


def _with_password(url: str, password: str) -> tuple[str, str]:
    """``url`` with a password (the test server authenticates by peer identity and never asks for one, so
    any password works, and every run really carries it); and that password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    host = parts.netloc.rsplit("@", 1)[-1]  # as written: a socket directory's case must survive
    netloc = f"{parts.username or 'postgres'}:{password}@{host}"
    return urlunsplit(parts._replace(netloc=netloc)), password


def test_no_secret_appears_in_any_output(tb_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    db_with_pw, db_password = _with_password(db_url, DB_PASSWORD_CANARY)
    secrets = [UPBIT_ACCESS_CANARY, UPBIT_SECRET_CANARY, UPBIT_WRONG_SECRET_CANARY, ANTHROPIC_CANARY,
               ANTHROPIC_WRONG_CANARY, TELEGRAM_CANARY, TELEGRAM_WRONG_CANARY, db_password]
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    state = Path(tb_env["TRADEBOT_STATE_DIR"])
    seen: list[tuple[str, str]] = []  # (where, text)

    with SimulatorServer(SimulatorConfig(port=0, access_key=UPBIT_ACCESS_CANARY, secret_key=UPBIT_SECRET_CANARY)) as sim, \
            FakeAnthropic(api_key=ANTHROPIC_CANARY) as model, FakeTelegram(token=TELEGRAM_CANARY) as telegram:
        env = {**tb_env, "DATABASE_URL": db_with_pw, "TRADEBOT_MODE": "live", "UPBIT_API_URL": sim.url,
               "UPBIT_ACCESS_KEY": UPBIT_ACCESS_CANARY, "UPBIT_SECRET_KEY": UPBIT_SECRET_CANARY,
               "ANTHROPIC_API_KEY": ANTHROPIC_CANARY, "ANTHROPIC_BASE_URL": model.url,
               "TELEGRAM_BOT_TOKEN": TELEGRAM_CANARY, "TELEGRAM_CHAT_ID": "4242", "TELEGRAM_API_URL": telegram.url,
               "TRADEBOT_METRICS_DIR": str(metrics), "TRADEBOT_BACKTEST_FILTER": "off",
               "TRADEBOT_LLM_MAX_RETRIES": "0", "TRADEBOT_LLM_TIMEOUT_S": "1", "TRADEBOT_ORDER_POLL_TIMEOUT_S": "10"}
        dead = f"http://127.0.0.1:{free_port()}"
        dead_db = f"postgresql://postgres:{db_password}@127.0.0.1:{free_port()}/tradebot?connect_timeout=3"

        def run(label: str, args: list[str], expect: int | None, **over: str) -> subprocess.CompletedProcess[str]:
            out = run_cli(args, {**env, **over})
            seen.append((f"{label}: stdout", out.stdout))
            seen.append((f"{label}: stderr", out.stderr))
            if expect is not None:
                assert out.returncode == expect, (label, out.stdout, out.stderr)
            return out

        run("config show", ["config", "show"], 0)
        run("doctor", ["doctor"], 0)
        model.enqueue_tool_answer(answer("buy"))
        run("successful buy", ["run-cycle"], 0)
        run("wrong Upbit secret", ["run-cycle"], 1, UPBIT_SECRET_KEY=UPBIT_WRONG_SECRET_CANARY)
        run("unreachable Upbit", ["run-cycle"], 1, UPBIT_API_URL=dead)
        run("Anthropic 401 + Telegram 401", ["run-cycle"], 1, ANTHROPIC_API_KEY=ANTHROPIC_WRONG_CANARY,
            TELEGRAM_BOT_TOKEN=TELEGRAM_WRONG_CANARY)
        model.enqueue_error(500, "api_error", "Internal server error")
        run("Anthropic 500 + Telegram unreachable", ["run-cycle"], 1, TELEGRAM_API_URL=dead)
        model.enqueue_delay(3.0)
        run("Anthropic timeout", ["run-cycle"], 1)
        run("database unreachable", ["run-cycle"], 1, DATABASE_URL=dead_db)
        run("doctor, everything wrong", ["doctor"], 1, UPBIT_SECRET_KEY=UPBIT_WRONG_SECRET_CANARY,
            ANTHROPIC_API_KEY=ANTHROPIC_WRONG_CANARY, TELEGRAM_BOT_TOKEN=TELEGRAM_WRONG_CANARY, DATABASE_URL=dead_db)

        # The database connection dies while an order fills: the fill goes to the journal.
        sim.set_faults(fill_delay_s=2.0)
        model.enqueue_tool_answer(answer("buy"))
        proc = subprocess.Popen([sys.executable, "-m", "tradebot", "run-cycle"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(sim.orders()) == 2, "the second order", timeout=60)
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND application_name = 'tradebot'")
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        seen += [("journal run: stdout", stdout), ("journal run: stderr", stderr)]
        assert proc.returncode == 1, stdout + stderr
        journal_text = (state / "journal.jsonl").read_text()
        seen.append(("journal", journal_text))
        sim.set_faults(fill_delay_s=0.0)
        run("journal replay", ["run-cycle"], 0)
        run("reconcile", ["reconcile"], 0)
        run("trades list", ["trades", "list", "--format", "json"], 0)
        assert_db_equals_exchange(sim, db_url, expect_orders=2)

        seen += [(f"telegram message {i}", json.dumps(m)) for i, m in enumerate(telegram.messages)]
        seen += [(f"telegram request {i}", json.dumps(r.body)) for i, r in enumerate(telegram.requests)]
        assert any("BUY" in t for t in telegram.texts) and any("failed" in t for t in telegram.texts)
    for f in sorted(metrics.iterdir()):
        seen.append((f"metrics {f.name}", f.read_text()))
    for f in sorted(p for p in state.rglob("*") if p.is_file()):
        seen.append((f"state file {f.name}", f.read_text(errors="replace")))
    with psycopg.connect(db_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
        assert {"trades", "decisions", "bot_state"} <= set(tables)
        for table in tables:
            for (text,) in conn.execute(f'SELECT row_to_json(t)::text FROM "{table}" t'):
                seen.append((f"table {table}", text))

    assert len(seen) > 40
    leaks = []
    for where, text in seen:
        for needle in (*secrets, "CANARY", "eyJ", "Bearer "):
            if needle in text:
                leaks.append(f"{needle[:24]}… in {where}: …{text[max(0, text.index(needle) - 80):text.index(needle) + 40]}…")
    assert not leaks, "\n".join(leaks)
