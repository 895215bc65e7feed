"""``pnl --by day`` from the stored day totals (issue 12): for any window of whole UTC days it must equal what
replaying the whole ledger gives (:func:`tradebot.pnl.periods`, exactly) — after new trades (the day the
checkpoint was in is finished and stored) and after an old trade is corrected or deleted (its day's and later
days' totals are dropped and rebuilt). Real PostgreSQL."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.test_pnl_windows import PRICE, T0, seed
from tradebot.app.reports import pnl_reports
from tradebot.config import load_settings
from tradebot.models import LedgerEntry
from tradebot.pnl import PeriodRow, periods


def reference(db_url: str, since: datetime | None, until: datetime | None, by: str = "day") -> list[PeriodRow]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT mode, created_at, side, price, amount, total, fee, trade_id, recovered FROM trades "
                            "WHERE status = 'completed' ORDER BY mode, created_at, id").fetchall()
    out: list[PeriodRow] = []
    for mode in ("live", "paper"):
        entries = [LedgerEntry(*r[1:]) for r in rows if r[0] == mode]
        if entries:
            out += periods("KRW-BTC", mode, entries, by, since=since, until=until)
    return out


def stored(db_url: str, tmp_path: Path, since: datetime | None, until: datetime | None,
           by: str = "day") -> list[PeriodRow]:
    settings = load_settings(None, environ={"DATABASE_URL": db_url, "TRADEBOT_STATE_DIR": str(tmp_path)})
    _, rows, notes = pnl_reports(settings, symbol=None, mode=None, since=since, until=until, at=PRICE, by=by)
    assert notes == []
    return list(rows)


def days_stored(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM pnl_days").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("seed_no", [1, 2])
def test_by_day_from_the_day_totals_equals_the_whole_replay(db_url: str, tmp_path: Path, seed_no: int) -> None:
    rng = random.Random(seed_no)
    seed(db_url, 400, rng)
    end = T0 + timedelta(days=80)
    windows: list[tuple[datetime | None, datetime | None]] = [
        (None, None), (T0 - timedelta(days=3), None), (T0 + timedelta(days=10), None),
        (T0 + timedelta(days=20), T0 + timedelta(days=50)), (end + timedelta(days=90), None)]
    for since, until in windows:
        assert stored(db_url, tmp_path, since, until) == reference(db_url, since, until), (since, until)
    assert days_stored(db_url) > 20  # the days really came from the table

    # New trades after the checkpoint, then an old trade corrected and another deleted.
    seed(db_url, 60, rng, start=end + timedelta(days=5), tag="b")
    assert stored(db_url, tmp_path, None, None) == reference(db_url, None, None)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE trades SET fee = fee + 1000 WHERE client_order_id = 'tb-a-000050'")
        conn.execute("DELETE FROM trades WHERE client_order_id = 'tb-a-000200'")
    for since, until in windows:
        assert stored(db_url, tmp_path, since, until) == reference(db_url, since, until), (since, until)
    # Weeks and windows that do not start at 00:00 UTC still replay, with the same result as before.
    odd = T0 + timedelta(days=7, hours=5)
    assert stored(db_url, tmp_path, odd, None) == reference(db_url, odd, None)
    assert stored(db_url, tmp_path, None, None, by="week") == reference(db_url, None, None, by="week")


def test_init_db_folds_a_history_the_bot_did_not_fold_so_the_first_pnl_replays_nothing(
        db_url: str, tb_env: dict[str, str], tmp_path: Path) -> None:
    """Rows the bot did not record itself (a database from before the checkpoints, an import): `init-db` folds
    them once — checkpoints, day snapshots and day totals — and what `pnl` then reads equals the whole replay."""
    from tests.conftest import run_cli

    seed(db_url, 300, random.Random(7))
    with psycopg.connect(db_url) as conn:
        before = conn.execute("SELECT count(*) FROM pnl_checkpoints").fetchone()
    assert before == (0,)
    first = run_cli(["init-db"], tb_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[1] == ("Folded 300 completed trade(s) into the P&L checkpoints "
                                            "(`tradebot pnl` starts from them).")
    with psycopg.connect(db_url) as conn:
        ckpts = conn.execute("SELECT mode, (state->>'trades')::int FROM pnl_checkpoints ORDER BY mode").fetchall()
        snapshots = conn.execute("SELECT count(*) FROM pnl_snapshots").fetchone()
    assert sum(n for _, n in ckpts) == 300 and [m for m, _ in ckpts] == ["live", "paper"]
    assert snapshots is not None and snapshots[0] > 20
    assert days_stored(db_url) > 20
    # Nothing left to fold: the same one line as before this change.
    again = run_cli(["init-db"], tb_env)
    assert again.returncode == 0 and len(again.stdout.splitlines()) == 1, again.stdout
    for since, until in ((None, None), (T0 + timedelta(days=10), None)):
        assert stored(db_url, tmp_path, since, until) == reference(db_url, since, until), (since, until)
