"""Target 4 — quick to query: ``trades list`` and ``pnl`` over a million trades rows, and the plans of the
exact SQL ``trades list`` runs (no sequential scan of ``trades``)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _util import TRADEBOT, Section, check, clean_env, fmt_mb, fmt_s, median, run

LIST_RUNS = 7
PNL_RUNS = 5
TARGET_S = 0.5
RSS_TARGET = 200e6  # issue 12: peak RSS of a windowed pnl
# Filter combinations for EXPLAIN and timing, as the CLI would pass them (cli.trades_list → TradeFilter).
SINCE = "2025-06-01"
FILTERS: dict[str, list[str]] = {
    "no filter": [],
    "--symbol": ["--symbol", "KRW-BTC"],
    "--status": ["--status", "completed"],
    "--mode": ["--mode", "live"],
    "--since": ["--since", SINCE],
    "--side --mode --status": ["--side", "sell", "--mode", "live", "--status", "completed"],
    "--status pending (rare)": ["--status", "pending"],
}


def _params(args: list[str], limit: int) -> dict[str, Any]:
    """The parameters ``trades list ARGS --limit N`` binds to the 'list' statement."""
    opts = dict(zip(args[::2], args[1::2]))
    since = opts.get("--since")
    return {"symbol": opts.get("--symbol"), "side": opts.get("--side"), "status": opts.get("--status"),
            "mode": opts.get("--mode"),
            "since": datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None,
            "until": None, "limit": limit}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


def explain(conn: Any, sql: str, params: dict[str, Any]) -> tuple[bool, str, float]:
    """(no seq scan of trades, compact plan, execution ms) of ``sql`` with ``params``, planned like the CLI's
    one-shot execution (a custom plan with the actual values)."""
    row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()
    doc = row[0][0]
    nodes = _nodes(doc["Plan"])
    seq = any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "trades" for n in nodes)
    parts = []
    for n in nodes:
        label = n["Node Type"]
        if n.get("Index Name"):
            label += f" {n['Index Name']}"
        elif n.get("Relation Name"):
            label += f" {n['Relation Name']}"
        parts.append(label)
    return not seq, " → ".join(parts), float(doc["Execution Time"])


def drop_caches(server: Any) -> str:
    """Stop and start the PostgreSQL server (its shared buffers emptied) and, where this process may (root),
    empty the kernel's page cache: what a ``pnl`` right after a reboot finds. Returns what was emptied."""
    server.stop("fast")
    emptied = "server restarted"
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        emptied += ", page cache dropped"
    except OSError:
        emptied += " (page cache kept: not root)"
    server.start()
    return emptied


def bench(workdir: Path, url: str, sim_url: str, rows: int, server: Any = None) -> Section:
    import psycopg
    from seed_trades import seed

    from tradebot.store.db import queries

    sec = Section("4. history queries")
    print(f"\n== {sec.title}", flush=True)
    started = time.perf_counter()
    seed(url, rows)
    seeded = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) trades")  # what autovacuum does to a table this size
        n = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('trades'))").fetchone()[0]
    sec.say(f"seeded {n:,} trades rows in {seeded:.1f} s (COPY, fsync on) + VACUUM ANALYZE; table with indexes {size}")

    env = clean_env(DATABASE_URL=url, UPBIT_API_URL=sim_url)
    size_label = f"{n / 1e6:g}M rows" if n >= 1_000_000 else f"{n:,} rows"

    # trades list: wall time per filter combination, and the plan of the exact statement.
    sql = queries("trades")["list"]
    all_ok = True
    with psycopg.connect(url) as conn:
        for label, args in FILTERS.items():
            cmd = [*TRADEBOT, "trades", "list", *args, "--limit", "50"]
            check(run(cmd, env=env, cwd=workdir), " ".join(cmd))  # warm-up
            runs = LIST_RUNS if not args else 5
            w = median([check(run(cmd, env=env, cwd=workdir), "trades list").wall for _ in range(runs)])
            ok, plan, ms = explain(conn, sql, _params(args, 50))
            conn.rollback()
            all_ok &= ok
            sec.say(f"trades list {label} --limit 50: {fmt_s(w)} (median of {runs}); EXPLAIN: {plan}; "
                    f"executes in {ms:.2f} ms")
            if label == "no filter":
                sec.add(f"trades list --limit 50 ({size_label})", fmt_s(w), f"≤ {TARGET_S} s", w <= TARGET_S,
                        f"median of {runs}")
            elif w > TARGET_S:
                sec.add(f"trades list {label} --limit 50 ({size_label})", fmt_s(w), f"≤ {TARGET_S} s", False)
    sec.add("EXPLAIN trades list: no sequential scan of trades", "none" if all_ok else "seq scan found",
            f"none ({len(FILTERS)} filter combinations)", all_ok)

    # The seeded rows were written with COPY, not by the bot (which folds each fill into the checkpoints as it
    # records it): `init-db`, as after upgrading from a version without checkpoints, folds them once.
    fold = check(run([*TRADEBOT, "init-db"], env=env, cwd=workdir), "tradebot init-db (fold)")
    sec.add(f"init-db after importing {size_label}: the one-time fold (checkpoints, day snapshots and totals)",
            f"{fmt_s(fold.wall)}, peak RSS {fmt_mb(fold.maxrss)}", "report (once per database)", None,
            fold.stdout.strip().splitlines()[-1])
    # pnl: the first run after it (nothing left to replay), then steady state.
    cmd = [*TRADEBOT, "pnl"]
    first = check(run(cmd, env=env, cwd=workdir), "tradebot pnl (first)")
    warm_runs = [check(run(cmd, env=env, cwd=workdir), "tradebot pnl").wall for _ in range(PNL_RUNS)]
    warm = median(warm_runs)
    sec.add(f"pnl, the first run, {size_label}", fmt_s(first.wall), f"≤ {TARGET_S} s", first.wall <= TARGET_S)
    sec.add(f"pnl, steady state (checkpoint up to date), {size_label}", fmt_s(warm), f"≤ {TARGET_S} s", warm <= TARGET_S,
            f"median of {PNL_RUNS}")
    # What a user sees run after run: a day of new trades since the last pnl, replayed from the checkpoint.
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee, "
            "requested_krw, created_at, updated_at) "
            "SELECT 'tb-bench-new-' || g, 'bench-new-' || g, 'KRW-BTC', 'buy', 'paper', 'completed', 50000000, "
            "0.0002, 10000, 5, 10005, t.m + g * interval '1 hour', t.m + g * interval '1 hour' "
            "FROM generate_series(1, 24) g, (SELECT max(created_at) m FROM trades) t")
    inc = check(run(cmd, env=env, cwd=workdir), "tradebot pnl (24 new trades)")
    sec.add("pnl after 24 new trades (incremental)", fmt_s(inc.wall), f"≤ {TARGET_S} s", inc.wall <= TARGET_S)
    with psycopg.connect(url) as conn:
        q = queries("trades")
        ck = conn.execute(q["pnl_checkpoint"], {"symbol": "KRW-BTC", "mode": "paper"}).fetchone()
        for name, params in (("ledger_pairs", {"symbol": None, "mode": None}),
                             ("completed_after", {"symbol": "KRW-BTC", "mode": "paper", "after_at": ck[0],
                                                  "after_id": ck[1]})):
            ok, plan, ms = explain(conn, q[name], params)
            conn.rollback()
            sec.say(f"pnl's {name}: EXPLAIN: {plan}; executes in {ms:.2f} ms" + ("" if ok else "  ← SEQ SCAN"))
    # Windows (issue 12): from the day snapshot at or before --since, replaying only the trades after it.
    with psycopg.connect(url) as conn:
        last = conn.execute("SELECT max(created_at) FROM trades WHERE status = 'completed'").fetchone()[0]
    month = (last - timedelta(days=30)).strftime("%Y-%m-%d")
    # ... and `--by day` (issue 12): the day totals stored with the checkpoints, no replay.
    for label, args in ((f"30-day window (--since {month})", ["--since", month]), (f"--since {SINCE}", ["--since", SINCE]),
                        ("--by day, whole history", ["--by", "day"]),
                        (f"--by day --since {month}", ["--by", "day", "--since", month])):
        runs = [check(run([*TRADEBOT, "pnl", *args], env=env, cwd=workdir), "tradebot pnl " + " ".join(args))
                for _ in range(PNL_RUNS)]
        wall = median([r.wall for r in runs])
        rss = max(r.maxrss for r in runs)
        if SINCE in args:  # a 107-day window: the target is for 30 days; a longer one replays more days
            sec.add(f"pnl {label}, {size_label}", f"{fmt_s(wall)}, peak RSS {fmt_mb(rss)}", "report", None,
                    f"median of {PNL_RUNS}")
            continue
        sec.add(f"pnl {label}, {size_label}", f"{fmt_s(wall)}, peak RSS {fmt_mb(rss)}",
                f"≤ {TARGET_S} s, ≤ {fmt_mb(RSS_TARGET)}", wall <= TARGET_S and rss <= RSS_TARGET, f"median of {PNL_RUNS}")
    # Cold (issue 12: "cold or warm"): each command as the first one after the database server started with
    # empty buffers and, as root, an empty page cache — a `pnl` after a reboot. The checkpoints exist: the bot
    # folds its own fills into them after every cycle (a bulk import's first `pnl` is the figure above).
    # The interpreter, the libraries and the database pages all come from disk then, for every command alike:
    # `trades list` measured the same way is the floor these figures stand on (reported, not a target).
    if server is not None:
        floor = 0.0
        for label, args in (("trades list --limit 50 (the floor)", ["trades", "list", "--limit", "50"]),
                            ("pnl, whole history", ["pnl"]),
                            (f"pnl 30-day window (--since {month})", ["pnl", "--since", month]),
                            ("pnl --by day, whole history", ["pnl", "--by", "day"])):
            runs, emptied = [], ""
            for _ in range(3):
                emptied = drop_caches(server)
                runs.append(check(run([*TRADEBOT, *args], env=env, cwd=workdir), f"tradebot {' '.join(args)} (cold caches)"))
            wall = median([r.wall for r in runs])
            floor = floor or wall
            sec.add(f"{label}, cold caches ({emptied}), {size_label}",
                    f"{fmt_s(wall)}, peak RSS {fmt_mb(max(r.maxrss for r in runs))}", "report", None,
                    "median of 3" + ("" if args[0] == "trades" else f"; floor + {wall - floor:.3f} s"))
    return sec
