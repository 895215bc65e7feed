"""Issue 13 — the advisor scorecard: scoring 10,000 decisions (target ≤ 1 s) and ``tradebot advisors report``
over a year of hourly decisions for 5 markets (target ≤ 1 s).

Seeds, with COPY, what a year of hourly cycles leaves behind: per market 8,760 cached hourly candles (a random
walk) and per cycle the acting Claude decision (10 % buys, 10 % sells, the rest holds, each costing 0.0005 USD)
beside the three shadow rows (rules with the same mix, hold, buy_and_hold): 175,200 decision rows for 5
markets. Scoring is timed in-process (``tradebot.app.advisors.score_pending``: the query, the definition, the
one-statement insert) over 10,000 of them, three times after deleting the scores; the command
``tradebot advisors score --no-refresh`` once as a whole process. The report is timed as the command a user
runs, ``tradebot advisors report --format json`` (median of 5, fresh processes), over the year with every
decision scored, beside ``trades list`` (the process base of a database command on this machine): cold (no
ledger checkpoint) and warm (after a report of the same data), which must print the same.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _util import TRADEBOT, Section, check, clean_env, fmt_mb, fmt_s, median, run

MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE")
HOURS = 8760
START = datetime(2025, 1, 1, tzinfo=UTC)
TARGET_S = 1.0
RUNS = 5


def _seed(conn: Any, markets: tuple[str, ...], hours: int, rng: random.Random) -> int:
    """Candles and decisions (acting + 3 shadows an hour per market); returns the decision rows written."""
    rows = 0
    for m in markets:
        price = 10_000.0 * (1 + markets.index(m))
        with conn.cursor().copy("COPY candles (market, interval, start, open, high, low, close, volume, value) "
                                "FROM STDIN") as copy:
            closes = []
            for h in range(hours + 30):
                o = price
                price = max(1.0, price * (1 + rng.gauss(0, 0.01)))
                hi, lo = max(o, price) * 1.002, min(o, price) * 0.998
                copy.write_row((m, "minute60", START + timedelta(hours=h), f"{o:.2f}", f"{hi:.2f}", f"{lo:.2f}",
                                f"{price:.2f}", "1", "0"))
                closes.append(price)
        with conn.cursor().copy("COPY decisions (ticker, mode, advisor, role, decision, confidence, fraction, action, "
                                "price, position, cost_usd, input_tokens, created_at) FROM STDIN") as copy:
            for h in range(hours):
                at = START + timedelta(hours=h, minutes=5)
                px = f"{closes[h]:.2f}"
                position = json.dumps({"free_krw": "1000000", "locked_krw": "0", "coin_volume": "0", "coin_free": "0",
                                       "avg_buy_price": "0", "price": px, "position_value": "0", "equity": "1000000"})
                for advisor, role in (("claude", "acting"), ("rules", "shadow"), ("hold", "shadow"),
                                      ("buy_and_hold", "shadow")):
                    if advisor in ("claude", "rules"):
                        r = rng.random()
                        kind = "buy" if r < 0.1 else "sell" if r < 0.2 else "hold"
                    else:
                        kind = "hold" if advisor == "hold" else "buy"
                    copy.write_row((m, "paper", advisor, role, kind, "0.8", "0.5" if kind != "hold" else "0", "hold",
                                    px, position, "0.0005" if advisor == "claude" else "0",
                                    1500 if advisor == "claude" else 0, at))
                    rows += 1
    conn.execute("ANALYZE decisions")
    conn.execute("ANALYZE candles")
    return rows


def bench(workdir: Path, server: Any) -> Section:
    import psycopg
    from _util import create_database, init_db

    from tradebot.app.advisors import score_pending

    sec = Section("scorecard: scoring and the report (issue 13)")
    print(f"\n== {sec.title}", flush=True)
    rng = random.Random(13)

    # 1. Scoring 10,000 decisions (one market, 10,000 hourly cycles: 2,500 cycles × acting + 3 shadows).
    url = create_database(server, "scores")
    init_db(url, workdir)
    with psycopg.connect(url, autocommit=True) as conn:
        n = _seed(conn, ("KRW-BTC",), 2_500, rng)
        times = []
        for _ in range(3):
            conn.execute("DELETE FROM decision_scores")
            started = time.perf_counter()
            written = score_pending(conn)
            times.append(time.perf_counter() - started)
        again = score_pending(conn)
    sec.add(f"score {n:,} decisions (×3 horizons = {written:,} scores), in-process", fmt_s(median(times)),
            f"≤ {TARGET_S} s", median(times) <= TARGET_S, f"three runs {', '.join(fmt_s(t) for t in times)}; "
            f"a rescore wrote {again}")
    env = clean_env(DATABASE_URL=url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM decision_scores")
    r = check(run([*TRADEBOT, "advisors", "score", "--no-refresh"], env=env, cwd=workdir), "advisors score")
    sec.add("tradebot advisors score --no-refresh (the whole process, 10,000 decisions)", fmt_s(r.wall), "report",
            None, r.stdout.strip())

    # 2. The report over a year of hourly decisions for 5 markets, every decision scored.
    url = create_database(server, "report")
    init_db(url, workdir)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        n = _seed(conn, MARKETS, HOURS, rng)
    seeded = time.perf_counter() - started
    env = clean_env(DATABASE_URL=url)
    # As its own process: a child forked from this one, grown by an in-process pass, would report this
    # process's pages as its own peak RSS (ru_maxrss counts what a fork starts with).
    r = check(run([*TRADEBOT, "advisors", "score", "--no-refresh"], env=env, cwd=workdir), "advisors score")
    scored = n * 3
    sec.say(f"seeded {n:,} decisions and {len(MARKETS) * (HOURS + 30):,} candles in {seeded:.1f} s; "
            f"`advisors score` scored them in {r.wall:.1f} s ({n / r.wall:,.0f} decisions a second, peak RSS "
            f"{fmt_mb(r.maxrss)}): {r.stdout.strip()}")
    # Cold: no checkpoint, every ledger replayed from the first hour (the first report of a window); warm: after a
    # report of the same data, the ledgers go on from their checkpoints at the start of the day before the last
    # hour (what a report a day after the previous one replays too: the last day or two).
    state = workdir / "report-state"
    env = clean_env(DATABASE_URL=url, TRADEBOT_STATE_DIR=str(state))
    base, cold, warm = [], [], []
    rss = 0
    for _ in range(RUNS + 1):  # the first of each is a warm-up
        base.append(check(run([*TRADEBOT, "trades", "list", "--limit", "1"], env=env, cwd=workdir), "trades list").wall)
        shutil.rmtree(state / "report-ledgers", ignore_errors=True)
        rc = check(run([*TRADEBOT, "advisors", "report", "--format", "json"], env=env, cwd=workdir), "advisors report")
        rw = check(run([*TRADEBOT, "advisors", "report", "--format", "json"], env=env, cwd=workdir), "advisors report")
        if rw.stdout != rc.stdout:
            raise RuntimeError("the report going on from its checkpoints differs from the report replayed from the start")
        cold.append(rc.wall)
        warm.append(rw.wall)
        rss = max(rss, rc.maxrss, rw.maxrss)
    card = json.loads(rc.stdout)
    what = f"a year × {len(MARKETS)} markets ({n:,} decisions, {scored:,} scores)"
    sec.add(f"advisors report, {what}, cold (no checkpoint: every ledger from the first hour)",
            fmt_s(median(cold[1:])), f"≤ {TARGET_S} s", median(cold[1:]) <= TARGET_S,
            f"runs {', '.join(fmt_s(t) for t in cold[1:])}; peak RSS {fmt_mb(rss)}; trades list (the process base) "
            f"{fmt_s(median(base[1:]))}; {len(card['rows'])} rows, verdict: {card['verdicts'][0] if card['verdicts'] else '-'}")
    sec.add(f"advisors report, {what}, warm (going on from the last report's checkpoints; same output)",
            fmt_s(median(warm[1:])), f"≤ {TARGET_S} s", median(warm[1:]) <= TARGET_S,
            f"runs {', '.join(fmt_s(t) for t in warm[1:])}")
    return sec
