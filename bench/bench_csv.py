"""Issue 10, item 7 — ``tradebot backtest --csv`` over a large file: the whole command's wall time and peak RSS
for 2,000,000 hourly rows (about 228 years of candles; the backtest itself runs over the default period, the
file's last 365 days, so the figures are almost all reading the CSV).

    python bench/bench_csv.py [--rows N] [--keep FILE]    a quick manual run (bench/run csv runs it too)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _util import TRADEBOT, Section, check, clean_env, fmt_mb, fmt_s, median, run

ROWS = 2_000_000
RUNS = 3
TIME_TARGET_S = 10.0  # 5 µs a row, all told (issue 10 measured 16 s before the streaming reader)
RSS_MULTIPLE = 1.0  # peak RSS at most the CSV file's size (issue 10 measured 3.1 GB before)
HEADER = ("market,candle_date_time_utc,candle_date_time_kst,opening_price,high_price,low_price,trade_price,"
          "candle_acc_trade_volume,candle_acc_trade_price\n")


def write_csv(path: Path, rows: int, seed: int = 5) -> Path:
    """``rows`` hourly candles in Upbit's candle fields (what a download of ``/v1/candles/minutes/60`` gives),
    oldest first from 1970-01-01 (the earliest time a CSV may have), a seeded random walk around 60,000,000 KRW
    with whole-KRW prices."""
    rng = random.Random(seed)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    price = 60_000_000.0
    one_hour = timedelta(hours=1)
    kst = timedelta(hours=9)
    with path.open("w", encoding="utf-8") as f:
        f.write(HEADER)
        t = start
        buf: list[str] = []
        for _ in range(rows):
            o = price
            # Mean-reverting in log space, so two centuries of steps stay in a realistic price range.
            c = round(o * math.exp(0.02 * math.log(60_000_000.0 / o) + rng.gauss(0, 0.006)), -3) or 1000.0
            h = max(o, c) * (1 + abs(rng.gauss(0, 0.002)))
            lo = min(o, c) * (1 - abs(rng.gauss(0, 0.002)))
            v = rng.uniform(5, 50)
            buf.append(f"KRW-BTC,{t:%Y-%m-%dT%H:%M:%S},{t + kst:%Y-%m-%dT%H:%M:%S},{o:.0f},{h:.0f},{lo:.0f},{c:.0f},"
                       f"{v:.8f},{v * c:.4f}\n")
            if len(buf) >= 10_000:
                f.write("".join(buf))
                buf.clear()
            price = c
            t += one_hour
        f.write("".join(buf))
    return path


def bench(workdir: Path, rows: int = ROWS, keep: Path | None = None) -> Section:
    sec = Section("7. backtest --csv, large file")
    print(f"\n== {sec.title}", flush=True)
    csv_path = keep if keep is not None and keep.exists() else write_csv(keep or workdir / "big.csv", rows)
    size = csv_path.stat().st_size
    env = clean_env(TRADEBOT_STATE_DIR=str(workdir / "state"))
    cmd = [*TRADEBOT, "backtest", "--csv", str(csv_path), "--format", "json"]
    runs = [check(run(cmd, env=env, cwd=workdir, timeout=900), "tradebot backtest --csv (large file)")
            for _ in range(RUNS)]
    report = json.loads(runs[0].stdout)
    wall = median([r.wall for r in runs])
    rss = max(r.maxrss for r in runs)
    sec.say(f"{csv_path.name}: {rows:,} rows, {fmt_mb(size)}; the report covers {report['bars']:,} bars "
            f"({report['first_candle']} → {report['last_candle']}), {report['trades']} trades")
    sec.say(f"wall {', '.join(f'{r.wall:.2f}' for r in runs)} s; peak RSS {', '.join(fmt_mb(r.maxrss) for r in runs)}")
    sec.add(f"backtest --csv over {rows:,} rows, wall time", fmt_s(wall), f"≤ {TIME_TARGET_S:.0f} s",
            wall <= TIME_TARGET_S, f"median of {RUNS} fresh processes")
    limit = RSS_MULTIPLE * size
    sec.add(f"backtest --csv over {rows:,} rows, peak RSS", f"{fmt_mb(rss)} ({rss / size:.2f}× the file)",
            f"≤ {RSS_MULTIPLE:g}× the file = {fmt_mb(limit)}", rss <= limit, "largest of the runs")
    return sec


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--keep", type=Path, help="write the CSV here (and reuse it when it exists)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench(Path(d), args.rows, args.keep)
    os._exit(0)
