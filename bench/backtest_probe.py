"""Measure one backtest in this (fresh) process and print a JSON line; run by bench_backtest.py.

    python bench/backtest_probe.py market CSV     indicators + strategy.signals + run_backtest over the CSV's
                                                  bars, first call and warm median, checked against the
                                                  per-bar loop of tests/reference_impl.py (trades, equity)
    python bench/backtest_probe.py command CSV    what `tradebot backtest --csv CSV` computes, called
                                                  in-process (used while the command is not registered)

CSV: ``time,open,high,low,close,volume`` hourly rows (written by bench_backtest.write_csv).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WARM_RUNS = 20


def load_arrays(path: Path) -> tuple[object, ...]:
    import numpy as np

    data = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(1, 2, 3, 4, 5), dtype=np.float64)
    return tuple(np.ascontiguousarray(data[:, i]) for i in range(5))


def market(path: Path, period: int) -> dict[str, object]:
    import numpy as np

    from tradebot.market import strategy
    from tradebot.market.engine import run_backtest

    o, h, lo, c, v = (x[-period:] for x in load_arrays(path))  # type: ignore[index]

    def compute() -> object:
        sig = strategy.signals(o, h, lo, c, v)
        return run_backtest(o, h, lo, c, sig)

    t0 = time.perf_counter()
    result = compute()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(WARM_RUNS):
        t0 = time.perf_counter()
        compute()
        warm.append(time.perf_counter() - t0)

    from tests import reference_impl as ref

    t0 = time.perf_counter()
    ref_sig = ref.signals(o.tolist(), c.tolist())
    ref_result = ref.backtest(o.tolist(), c.tolist(), ref_sig.tolist())
    ref_s = time.perf_counter() - t0
    sig = strategy.signals(o, h, lo, c, v)
    ours = [(t.index, t.side, t.price, t.volume, t.krw, t.fee, t.pnl) for t in result.trades]  # type: ignore[attr-defined]
    theirs = [(t.index, t.side, t.price, t.volume, t.krw, t.fee, t.pnl) for t in ref_result.trades]
    eq = result.equity  # type: ignore[attr-defined]
    return {
        "bars": int(c.shape[0]), "first_s": first, "warm_median_s": statistics.median(warm),
        "trades": len(ours), "reference_trades": len(theirs),
        "signals_identical": bool(np.array_equal(sig, ref_sig)),
        "trades_identical": ours == theirs,
        "equity_identical": bool(np.array_equal(eq, ref_result.equity)),
        "equity_max_abs_diff": float(np.max(np.abs(eq - ref_result.equity))) if eq.shape == ref_result.equity.shape else None,
        "total_return": result.total_return, "reference_total_return": ref_result.total_return,  # type: ignore[attr-defined]
        "reference_loop_s": ref_s,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def command(path: Path, days: int) -> dict[str, object]:
    """``tradebot backtest --csv PATH --days DAYS`` without the CLI: load, then the same core call."""
    from datetime import timedelta

    from tradebot.backtest.candles import HOUR, WARMUP_SLACK
    from tradebot.backtest.csv import read_candles_csv
    from tradebot.backtest.simulate import backtest_candles
    from tradebot.config import load_settings
    from tradebot.risk import RiskLimits

    settings = load_settings(Path("/nonexistent/.env"), explicit_env_file=False)
    limits = RiskLimits(settings.min_confidence, settings.max_order_krw, settings.max_position_krw,
                        settings.daily_loss_limit_krw)
    t0 = time.perf_counter()
    candles, _notes = read_candles_csv(path)
    load_s = time.perf_counter() - t0
    until = candles[-1].start + HOUR
    report = backtest_candles(candles, since=until - timedelta(days=days), until=until, limits=limits,
                              starting_krw=float(settings.paper_krw), warmup=settings.hourly_candles + WARMUP_SLACK)
    return {"bars": report.bars, "compute_seconds": report.compute_seconds, "load_s": load_s, "trades": report.trades,
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


if __name__ == "__main__":
    kind, csv_path, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    out = market(csv_path, n) if kind == "market" else command(csv_path, n)
    print(json.dumps(out))
