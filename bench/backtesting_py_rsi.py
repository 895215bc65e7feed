"""The baseline of the backtest benchmark: the backtesting.py library running an RSI(14) strategy.

Run by bench_backtest.py with the interpreter of a separate virtualenv that has ``backtesting`` installed
(it is not a tradebot dependency). Prints one JSON line: the wall time of ``Backtest.run()`` (its indicator
and its bar loop; loading the CSV is not counted), first call and median, and the trade count.

    python bench/backtesting_py_rsi.py CSV BARS
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings

import numpy as np
import pandas as pd
from backtesting import Backtest, Strategy

RUNS = 5


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's RSI (the same definition as tradebot.market.indicators.rsi)."""
    delta = pd.Series(close).diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    return (100 - 100 / (1 + gain / loss)).to_numpy()


class RsiStrategy(Strategy):
    """Buy when RSI(14) < 30, close the position when RSI(14) > 70."""

    def init(self) -> None:
        self.rsi = self.I(rsi, self.data.Close, 14)

    def next(self) -> None:
        value = self.rsi[-1]
        if value < 30 and not self.position:
            self.buy()
        elif value > 70 and self.position:
            self.position.close()


def main() -> None:
    path, bars = sys.argv[1], int(sys.argv[2])
    df = pd.read_csv(path).tail(bars)
    df.index = pd.to_datetime(df.pop("time"), utc=True).dt.tz_localize(None)
    df = df.rename(columns=str.capitalize)
    warnings.simplefilter("ignore")
    # Cash well above one coin's price: backtesting.py trades whole units.
    bt = Backtest(df, RsiStrategy, cash=10_000_000_000, commission=0.0005, finalize_trades=True)
    times = []
    stats = None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        stats = bt.run()
        times.append(time.perf_counter() - t0)
    assert stats is not None
    print(json.dumps({"bars": len(df), "first_s": times[0], "median_s": statistics.median(times),
                      "trades": int(stats["# Trades"])}))


if __name__ == "__main__":
    main()
