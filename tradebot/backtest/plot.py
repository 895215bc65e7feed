"""``tradebot backtest --plot``: a backtest's equity curve against buy-and-hold, with its fills and drawdown.

matplotlib is the optional ``plot`` extra, imported only when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tradebot.errors import ConfigError

if TYPE_CHECKING:
    from tradebot.backtest.simulate import BacktestReport


def plot_report(report: BacktestReport, path: Path) -> Path:
    """Write the equity curve against buy-and-hold, with the fills and the drawdown, as a PNG.

    Needs the optional ``plot`` extra (matplotlib); raises :class:`ConfigError` when it is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot", "needs matplotlib: pip install 'tradebot[plot]'") from None
    import numpy as np

    times = list(report.times)
    equity = np.asarray(report.equity)
    closes = np.asarray(report.closes, dtype=float)
    # Buy and hold from the first open (as its return is defined), so the line ends at the reported figure.
    hold = report.starting_krw * (1 + report.buy_hold_return) * closes / closes[-1]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    try:
        top.plot(times, equity, label=f"strategy {report.total_return * 100:+.2f} %", linewidth=1.2)
        top.plot(times, hold, label=f"buy and hold {report.buy_hold_return * 100:+.2f} %", linewidth=0.9, alpha=0.7)
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            idx = [t.index for t in report.fills if t.side == side]
            if idx:
                top.scatter([times[i] for i in idx], equity[idx], marker=marker, color=color, s=18, label=side, zorder=3)
        top.set_ylabel("equity (KRW)")
        top.set_title(f"{report.market} backtest {report.first_candle:%Y-%m-%d} – {report.last_candle:%Y-%m-%d} "
                      f"({report.bars} hourly bars, {report.trades} trades)")
        top.legend(loc="best", fontsize=8)
        top.grid(alpha=0.3)
        peak = np.maximum.accumulate(equity)
        bottom.fill_between(times, -(1 - equity / peak) * 100, 0, color="tab:red", alpha=0.4)
        bottom.set_ylabel("drawdown %")
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        try:
            fig.savefig(path, dpi=110)
        except OSError as e:
            raise ConfigError("--plot", f"cannot write {path}: {e.strerror or type(e).__name__}") from None
    finally:
        plt.close(fig)
    return path
