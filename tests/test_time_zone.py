"""Timestamps in JSON and CSV are UTC, as the README says, whatever the server's or the client's zone
(issue 10, item 7): the session time zone is set to UTC on every connection."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal

import psycopg

from tests.conftest import run_cli


def test_trades_and_pnl_timestamps_are_utc_whatever_the_server_and_pgtz_say(tb_env: dict[str, str], db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        dbname = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute(f'ALTER DATABASE "{dbname}" SET timezone = \'Asia/Seoul\'')
        for i, side in enumerate(("buy", "sell")):
            conn.execute(
                "INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee, "
                "requested_krw, requested_volume, created_at) VALUES (%s, %s, 'KRW-BTC', %s, 'paper', 'completed', "
                "100, 1, 100, 0.05, 100, 1, '2026-11-30 23:30:00+00')",
                (f"tb-tz-{i:020d}", f"paper-tz-{i}", side))
    env = {**tb_env, "PGTZ": "America/New_York", "UPBIT_API_URL": "http://127.0.0.1:9"}

    listed = run_cli(["trades", "list", "--format", "json"], env)
    assert listed.returncode == 0, listed.stderr
    stamps = [row["created_at"] for row in json.loads(listed.stdout)]
    assert stamps == ["2026-11-30T23:30:00+00:00"] * 2, stamps
    for key in ("created_at", "updated_at"):
        assert all(datetime.fromisoformat(r[key]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
                   for r in json.loads(listed.stdout))

    as_csv = run_cli(["trades", "list", "--format", "csv"], env)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["created_at"] for r in rows] == ["2026-11-30T23:30:00+00:00"] * 2

    # --until 2026-11-30 (a UTC day) includes them; in Seoul they would fall on December 1st.
    day = run_cli(["pnl", "--until", "2026-11-30", "--at", "100", "--by", "day", "--format", "json"], env)
    assert day.returncode == 0, day.stderr
    [period] = json.loads(day.stdout)["periods"]
    assert period["period"].startswith("2026-11-30") and Decimal(period["realized_pnl"]) == Decimal("-0.1")
