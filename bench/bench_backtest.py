"""Targets 5 and 6 — the backtest's compute over a year of hourly bars (against the backtesting.py library
and checked against the per-bar reference loop), and peak memory (a cycle; five years of bars)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _util import BENCH, PY, ROOT, TRADEBOT, Section, check, clean_env, fmt_mb, fmt_s, median, run

YEAR = 24 * 365  # 8,760 bars
FIVE_YEARS = 5 * YEAR  # 43,800 bars
WARMUP = 200 + 48  # TRADEBOT_HOURLY_CANDLES + tradebot.backtest.candles.WARMUP_SLACK: candles before the period
COMPUTE_TARGET_S = 0.03
RATIO_TARGET = 3.0
RSS_TARGET = 300e6
CYCLE_RSS_MARGIN = 50e6
CLI_RUNS = 5
VENV = Path(tempfile.gettempdir()) / "tradebot-bench-backtesting-venv"
# tradebot/cli/backtest.py sets this before NumPy is imported (OpenBLAS's thread pool costs more than the small
# matrix products of the indicators); the in-process measurements run under the same condition.
AS_THE_COMMAND = {"OPENBLAS_NUM_THREADS": "1"}


def write_csv(path: Path, bars: int, seed: int = 7) -> Path:
    """``bars`` + warm-up hourly candles of a seeded random walk (tests/reference_impl.random_ohlcv)."""
    sys.path.insert(0, str(ROOT))
    from tests.reference_impl import random_ohlcv

    n = bars + WARMUP
    o, h, lo, c, v = random_ohlcv(seed, n)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as f:
        f.write("time,open,high,low,close,volume\n")
        for i in range(n):
            f.write(f"{(start + timedelta(hours=i)).isoformat()},{float(o[i])!r},{float(h[i])!r},{float(lo[i])!r},{float(c[i])!r},{float(v[i])!r}\n")
    return path


def backtesting_python() -> tuple[str | None, str]:
    """The interpreter of a throwaway virtualenv with backtesting.py (created on first use), or a reason."""
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", "import backtesting, pandas; print(backtesting.__version__)"]
    if py.exists():
        r = subprocess.run(probe, check=False, capture_output=True, text=True)
        if r.returncode == 0:
            return str(py), f"backtesting.py {r.stdout.strip()} in {VENV}"
    print(f"  installing backtesting.py into {VENV} (not a tradebot dependency; once per machine)…", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "backtesting"], check=True, capture_output=True,
                       timeout=300)
        r = subprocess.run(probe, capture_output=True, text=True, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        return None, f"could not install backtesting.py ({type(e).__name__}: {detail.strip()[-200:]})"
    return str(py), f"backtesting.py {r.stdout.strip()} in {VENV}"


def _json_line(r: Any, what: str) -> dict[str, Any]:
    """The JSON document a child printed (the probes print one line; the CLI an indented document)."""
    check(r, what)
    try:
        return json.loads(r.stdout)  # type: ignore[no-any-return]
    except ValueError:
        return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _command_available(workdir: Path) -> bool:
    return run([*TRADEBOT, "backtest", "--help"], env=clean_env(), cwd=workdir).code == 0


def _command(workdir: Path, csv: Path, days: int, runs: int) -> tuple[list[float], list[Any], str]:
    """(compute seconds per run, runs, how) of `tradebot backtest`, or of its core call when the command
    is not registered yet."""
    env = clean_env(TRADEBOT_STATE_DIR=str(workdir / "state"))
    if _command_available(workdir):
        cmd = [*TRADEBOT, "backtest", "--csv", str(csv), "--days", str(days), "--format", "json"]
        how = "tradebot backtest --csv … --format json"
        rs = [run(cmd, env=env, cwd=workdir) for _ in range(runs)]
        return [_json_line(r, how)["compute_seconds"] for r in rs], rs, how
    cmd = [PY, str(BENCH / "backtest_probe.py"), "command", str(csv), str(days)]
    how = ("tradebot.backtest.simulate.backtest_candles in a fresh process with OPENBLAS_NUM_THREADS=1 as the command sets "
           "it (the command is not registered yet)")
    rs = [run(cmd, env={**env, **AS_THE_COMMAND}, cwd=workdir) for _ in range(runs)]
    return [_json_line(r, "backtest probe")["compute_seconds"] for r in rs], rs, how


def bench(workdir: Path, report: bool = True) -> tuple[Section, dict[str, Any]]:
    sec = Section("5. backtest")
    print(f"\n== {sec.title}", flush=True)
    year = write_csv(workdir / "one-year.csv", YEAR)
    five = write_csv(workdir / "five-years.csv", FIVE_YEARS, seed=11)
    env = clean_env()

    # The compute tradebot.market runs (indicators + signals + run_backtest), against the reference loop.
    probe = [PY, str(BENCH / "backtest_probe.py"), "market", str(year), str(YEAR)]
    m = _json_line(run(probe, env={**env, **AS_THE_COMMAND}, cwd=workdir), "market probe")
    pool = _json_line(run(probe, env=env, cwd=workdir), "market probe (default OpenBLAS threads)")
    same = m["signals_identical"] and m["trades_identical"] and m["equity_identical"]
    sec.say(f"tradebot.market over {m['bars']:,} bars: first call {fmt_s(m['first_s'])}, warm median "
            f"{m['warm_median_s'] * 1000:.1f} ms; {m['trades']} trades; the per-bar reference loop takes "
            f"{fmt_s(m['reference_loop_s'])}")
    sec.say(f"the same with OpenBLAS's default thread pool (what cli.main's OPENBLAS_NUM_THREADS=1 avoids): first call "
            f"{fmt_s(pool['first_s'])}, warm median {pool['warm_median_s'] * 1000:.1f} ms")
    sec.add("market compute (signals + run_backtest), 8,760 bars, first call, OPENBLAS_NUM_THREADS=1",
            fmt_s(m["first_s"]), f"≤ {COMPUTE_TARGET_S} s", m["first_s"] <= COMPUTE_TARGET_S,
            f"warm {m['warm_median_s'] * 1000:.1f} ms")
    sec.add("identical to tests/reference_impl.py (signals, trades, equity)",
            "identical" if same else (f"signals {'=' if m['signals_identical'] else '≠'}, trades "
                                      f"{m['trades']} vs {m['reference_trades']}, equity max diff {m['equity_max_abs_diff']}"),
            "identical", same, f"{m['trades']} trades, total return {m['total_return']:+.4%}")

    # The command (strategy through the live risk gate), its compute_seconds as it reports them.
    try:
        computes, runs, how = _command(workdir, year, 365, CLI_RUNS)
        ours = median(computes)
        sec.say(f"backtest command ({how}): compute {', '.join(f'{x * 1000:.1f}' for x in computes)} ms; "
                f"wall {', '.join(f'{r.wall:.2f}' for r in runs)} s")
        sec.add("tradebot backtest compute after loading, 8,760 bars", fmt_s(ours), f"≤ {COMPUTE_TARGET_S} s",
                ours <= COMPUTE_TARGET_S, f"median of {CLI_RUNS} fresh processes")
    except Exception as e:  # noqa: BLE001 — the command is being written concurrently
        ours, how = m["first_s"], ""
        sec.add("tradebot backtest compute after loading, 8,760 bars", f"not measured: {e}"[:120],
                f"≤ {COMPUTE_TARGET_S} s", None, "the market compute above stands in")

    py, why = backtesting_python()
    if py is None:
        sec.add("speed-up over backtesting.py (RSI(14), same bars)", "skipped", f"≥ {RATIO_TARGET}×", None, why)
    else:
        b = _json_line(run([py, str(BENCH / "backtesting_py_rsi.py"), str(year), str(YEAR)], env=clean_env(), cwd=workdir),
                       "backtesting.py")
        sec.say(f"{why}: Backtest.run() with an RSI(14) strategy over {b['bars']:,} bars: median "
                f"{fmt_s(b['median_s'])} (first {fmt_s(b['first_s'])}), {b['trades']} trades")
        ratio = b["median_s"] / ours
        sec.add("speed-up over backtesting.py (RSI(14), same bars)", f"{ratio:.1f}× ({fmt_s(ours)} vs {fmt_s(b['median_s'])})",
                f"≥ {RATIO_TARGET:.0f}×", ratio >= RATIO_TARGET,
                ("ours: the command's compute (rule strategy + risk gate), first call per process" if how else
                 "ours: the market compute, first call") + "; theirs: Backtest.run(), warm median")

    # Memory of five years of bars, the whole process (loading the CSV included).
    try:
        _, runs5, how5 = _command(workdir, five, 5 * 365, 1)
        rss5 = runs5[0].maxrss
    except Exception as e:  # noqa: BLE001
        how5 = f"market probe ({e})"
        rss5 = _json_line(run([PY, str(BENCH / "backtest_probe.py"), "market", str(five), str(FIVE_YEARS)],
                              env={**env, **AS_THE_COMMAND}, cwd=workdir), "market probe 5y")["maxrss"]
    return sec, {"backtest5_rss": rss5, "backtest5_how": how5}


def memory_section(mem: dict[str, Any]) -> Section:
    sec = Section("6. memory")
    print(f"\n== {sec.title}", flush=True)
    if "claude_rss" in mem:
        floor, cyc = mem["floor_rss"], mem["claude_rss"]
        sec.add("run-cycle peak RSS (claude advisor) vs import floor", f"{fmt_mb(cyc)} (floor {fmt_mb(floor)}, "
                f"{(cyc - floor) / 1e6:+.0f} MB)", f"≤ floor + 50 MB = {fmt_mb(floor + CYCLE_RSS_MARGIN)}",
                cyc <= floor + CYCLE_RSS_MARGIN, "largest of the timed runs")
        sec.say(f"rules cycle peak RSS {fmt_mb(mem['rules_rss'])}")
    if "backtest5_rss" in mem:
        sec.add("backtest over 43,800 bars (5 years), peak RSS", fmt_mb(mem["backtest5_rss"]), f"< {fmt_mb(RSS_TARGET)}",
                mem["backtest5_rss"] < RSS_TARGET, mem["backtest5_how"].split(" (")[0])
    return sec


if __name__ == "__main__":  # quick manual run: python bench/bench_backtest.py
    with tempfile.TemporaryDirectory() as d:
        s, mm = bench(Path(d))
        memory_section(mm)
    os._exit(0)
