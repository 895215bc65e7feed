"""Issue 12 — the portfolio cycle: ``run-cycle`` over 5 and over 20 markets, live mode against the simulator
(Upbit's per-group request limits enforced, as by default) with the zero-latency fake model.

Each figure is the median of fresh ``tradebot run-cycle --json`` processes after one warm-up cycle (which fills
the candle cache), interleaved with the import floor (the heavy libraries imported by a bare interpreter).
Targets: 5 markets within the floor + 0.6 s; 20 markets within the floor + 0.6 s + the time Upbit's limits
force on the cycle's requests — per group, ``ceil(requests / per-second limit) − 1`` seconds (a client that
paces itself by ``Remaining-Req`` waits for the next second's budget), counted by the simulator per group
(``/_sim/state``). Also: the model's input for 5 markets (pessimistic estimate, target ≤ 3,000 tokens), peak
RSS against the floor's (target + 60 MB), candle requests per market in a steady cycle (before each timed
cycle the newest cached hourly candle is removed: what an hour's new candle asks of the cache).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import requests
from _util import PY, ROOT, Section, Server, check, clean_env, create_database, fmt_s, init_db, median, run
from bench_cycle import _cycle  # the same run-cycle --json call and checks

RUNS = 5
FLOOR_CMD = [PY, "-c", "import anthropic, pyupbit, psycopg, prometheus_client, requests, typer"]
MARGIN_S = 0.6
TOKEN_TARGET = 3000
RSS_MARGIN = 60e6
PER_SECOND = {"candles": 10, "ticker": 10, "market": 10, "orderbook": 10, "default": 30, "order": 8}
FAKE_KEY = "fake-anthropic-bench-key"
ACCESS, SECRET = "bench-access-key-" + "A" * 30, "bench-secret-key-" + "S" * 40
MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX", "KRW-AVAX", "KRW-LINK",
           "KRW-DOT", "KRW-BCH", "KRW-NEAR", "KRW-ETC", "KRW-SUI", "KRW-APT", "KRW-ARB", "KRW-SEI", "KRW-HBAR",
           "KRW-XLM", "KRW-SAND")


def _requests(sim: Server) -> dict[str, int]:
    counts: dict[str, int] = requests.get(f"{sim.url}/_sim/state", timeout=10).json()["requests"]
    return counts


def _hour_passed(url: str) -> None:
    """What an hour between two cycles does to the candle cache: one more hourly candle has closed. The
    newest cached hourly candle of every market is removed, so the cycle fetches it, as it fetches the
    newly closed one each hour (the simulator's clock is the wall clock: the benchmark cannot wait an hour)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM candles c WHERE interval = 'minute60' AND start = "
                     "(SELECT max(start) FROM candles d WHERE d.market = c.market AND d.interval = 'minute60')")


def forced_seconds(counts: dict[str, int]) -> float:
    """The time Upbit's per-second limits force on these requests, group by group (added up: a cycle makes
    its requests one after another)."""
    return float(sum(max(0, math.ceil(n / PER_SECOND.get(g, 30)) - 1) for g, n in counts.items()))


def _tokens(requests_log: Path) -> tuple[int, int]:
    """(estimated input tokens, markets) of the last portfolio request the fake model received."""
    from tradebot.advisor.claude.prompt import TOOL_USE_OVERHEAD_TOKENS, estimate_tokens

    bodies = [json.loads(x)["body"] for x in requests_log.read_text(encoding="utf-8").splitlines() if x.strip()]
    body = [b for b in bodies if isinstance(b, dict) and b.get("tools") and b["tools"][0]["name"] == "record_decisions"][-1]
    system = "".join(block["text"] for block in body["system"])
    user = body["messages"][0]["content"]
    tool = body["tools"][0]
    markets = len(tool["input_schema"]["properties"]["decisions"]["items"]["properties"]["market"]["enum"])
    return (estimate_tokens(system) + estimate_tokens(user) + estimate_tokens(json.dumps(tool)) + TOOL_USE_OVERHEAD_TOKENS,
            markets)


def bench(workdir: Path, pg: Any, fake_url: str, requests_log: Path) -> Section:
    sec = Section("portfolio: run-cycle over several markets (issue 12)")
    print(f"\n== {sec.title}", flush=True)
    for n in (5, 20):
        markets = MARKETS[:n]
        sim = Server([PY, "-m", "tradebot.exchange.simulator", "--port", "0", "--markets", ",".join(markets),
                      "--access-key", ACCESS, "--secret-key", SECRET], "listening on ", env=clean_env(), cwd=ROOT)
        try:
            url = create_database(pg, f"portfolio{n}")
            init_db(url, workdir)
            metrics = workdir / f"metrics{n}"
            metrics.mkdir(exist_ok=True)
            env = clean_env(DATABASE_URL=url, UPBIT_API_URL=sim.url, TRADEBOT_STATE_DIR=str(workdir / f"state{n}"),
                            TRADEBOT_METRICS_DIR=str(metrics), TRADEBOT_MODE="live", UPBIT_ACCESS_KEY=ACCESS,
                            UPBIT_SECRET_KEY=SECRET, ANTHROPIC_API_KEY=FAKE_KEY, ANTHROPIC_BASE_URL=fake_url,
                            TRADEBOT_MARKETS=",".join(markets),
                            # the filter runs for every market but blocks none: every market goes to the model
                            TRADEBOT_BACKTEST_FILTER_THRESHOLD="1")
            check(run(FLOOR_CMD, env=env), "import floor")
            _cycle(env, workdir)  # warm-up: fills the candle cache
            floors, cycles, counts = [], [], []
            for _ in range(RUNS):
                floors.append(check(run(FLOOR_CMD, env=env), "import floor"))
                _hour_passed(url)
                before = _requests(sim)
                r, _ = _cycle(env, workdir)
                after = _requests(sim)
                counts.append({g: after.get(g, 0) - before.get(g, 0) for g in after if after.get(g, 0) - before.get(g, 0)})
                cycles.append(r)
        finally:
            sim.stop()
        floor = median([f.wall for f in floors])
        wall = median([c.wall for c in cycles])
        per_group = counts[len(counts) // 2]
        total = sum(per_group.values())
        forced = forced_seconds(per_group)
        candles = per_group.get("candles", 0) / n
        detail = (f"{total} requests ({', '.join(f'{g} {k}' for g, k in sorted(per_group.items()))}); forced by the "
                  f"limits {forced:.0f} s; floor {fmt_s(floor)}")
        if n == 5:
            sec.add(f"{n}-market live cycle vs import floor", f"{fmt_s(wall)} (floor + {wall - floor:.2f} s)",
                    f"≤ floor + {MARGIN_S} s", wall <= floor + MARGIN_S, detail)
        else:
            sec.add(f"{n}-market live cycle vs import floor + rate-limit bound",
                    f"{fmt_s(wall)} (floor + {wall - floor:.2f} s)", f"≤ floor + {MARGIN_S} s + {forced:.0f} s",
                    wall <= floor + MARGIN_S + forced, detail)
        sec.add(f"{n}-market cycle: candle requests per market (an hourly candle closed since the last cycle)",
                f"{candles:.2f}", "≤ 1.2", candles <= 1.2)
        rss = max(c.maxrss for c in cycles)
        floor_rss = median([f.maxrss for f in floors])
        sec.add(f"{n}-market cycle peak RSS (largest of {RUNS})", f"{rss / 1e6:.0f} MB (floor {floor_rss / 1e6:.0f} MB)",
                f"≤ floor + {RSS_MARGIN / 1e6:.0f} MB", rss <= floor_rss + RSS_MARGIN)
        sec.details.append(f"{n} markets: cycle walls {[round(c.wall, 3) for c in cycles]}, floors "
                           f"{[round(f.wall, 3) for f in floors]}, requests per cycle {counts}")
        if n == 5:
            tokens, asked = _tokens(requests_log)
            sec.add("model input for 5 markets (pessimistic estimate)", f"{tokens:,} tokens ({asked} markets asked)",
                    f"≤ {TOKEN_TARGET:,}", tokens <= TOKEN_TARGET and asked == 5)
    return sec
