"""Straightforward per-bar loop versions of the indicators, the rule strategy and the backtest.

They are written to be obviously right, not fast: plain Python loops over lists, the textbook formulas
(``100 - 100 / (1 + RS)``, ``(avg·(n-1) + x) / n``). The tests assert that the vectorized code in
``tradebot.market`` gives the same numbers (indicators within rtol 1e-9) and the identical trades.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NAN = float("nan")


def _out(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# --- indicators -------------------------------------------------------------------------------------------


def sma(x: list[float], n: int) -> np.ndarray:
    out = []
    for i in range(len(x)):
        if i + 1 < n:
            out.append(NAN)
        else:
            out.append(sum(x[i + 1 - n : i + 1]) / n)
    return _out(out)


def ema(x: list[float], n: int) -> np.ndarray:
    alpha = 2 / (n + 1)
    out = []
    prev = NAN
    for i in range(len(x)):
        if i + 1 < n:
            out.append(NAN)
            continue
        if i == n - 1:
            prev = sum(x[:n]) / n
        else:
            prev = alpha * x[i] + (1 - alpha) * prev
        out.append(prev)
    return _out(out)


def rsi(close: list[float], n: int = 14) -> np.ndarray:
    out = [NAN] * len(close)
    if len(close) <= n:
        return _out(out)
    gains = [max(close[i] - close[i - 1], 0.0) for i in range(1, len(close))]
    losses = [max(close[i - 1] - close[i], 0.0) for i in range(1, len(close))]
    avg_gain = avg_loss = 0.0
    for i in range(n, len(close)):
        if i == n:
            avg_gain = sum(gains[:n]) / n
            avg_loss = sum(losses[:n]) / n
        else:
            avg_gain = (avg_gain * (n - 1) + gains[i - 1]) / n
            avg_loss = (avg_loss * (n - 1) + losses[i - 1]) / n
        if avg_loss == 0:
            out[i] = 50.0 if avg_gain == 0 else 100.0
        else:
            out[i] = 100 - 100 / (1 + avg_gain / avg_loss)
    return _out(out)


def macd(close: list[float], fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, ...]:
    line = ema(close, fast) - ema(close, slow)
    sig = [NAN] * len(close)
    valid = [i for i in range(len(close)) if not math.isnan(line[i])]
    if valid:
        first = valid[0]
        sub = ema([float(v) for v in line[first:]], signal)
        for k, v in enumerate(sub):
            sig[first + k] = float(v)
    sig_arr = _out(sig)
    return line, sig_arr, line - sig_arr


def bollinger(close: list[float], n: int = 20, k: float = 2.0) -> tuple[np.ndarray, ...]:
    mid, upper, lower = [], [], []
    for i in range(len(close)):
        if i + 1 < n:
            mid.append(NAN)
            upper.append(NAN)
            lower.append(NAN)
            continue
        window = close[i + 1 - n : i + 1]
        m = sum(window) / n
        sd = math.sqrt(sum((v - m) ** 2 for v in window) / n)
        mid.append(m)
        upper.append(m + k * sd)
        lower.append(m - k * sd)
    return _out(mid), _out(upper), _out(lower)


def atr(high: list[float], low: list[float], close: list[float], n: int = 14) -> np.ndarray:
    out = [NAN] * len(close)
    tr = [NAN]
    for i in range(1, len(close)):
        tr.append(max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
    avg = 0.0
    for i in range(n, len(close)):
        avg = sum(tr[1 : n + 1]) / n if i == n else (avg * (n - 1) + tr[i]) / n
        out[i] = avg
    return _out(out)


def volume_change(volume: list[float], n: int = 20) -> np.ndarray:
    out = [NAN] * len(volume)
    for i in range(n, len(volume)):
        mean = sum(volume[i - n : i]) / n
        out[i] = volume[i] / mean - 1 if mean > 0 else NAN
    return _out(out)


# --- strategy ---------------------------------------------------------------------------------------------


def signals(open_: list[float], close: list[float]) -> np.ndarray:
    """The rule of tradebot.market.strategy, bar by bar."""
    e20, e60 = ema(close, 20), ema(close, 60)
    hist = macd(close)[2]
    r = rsi(close, 14)
    out = np.zeros(len(close), dtype=np.int8)
    for i in range(len(close)):
        if any(math.isnan(v) for v in (e20[i], e60[i], hist[i], r[i])):
            continue
        flat = 1e-9 * close[i]  # differences within rounding of the price are no trend
        sell = (e20[i] - e60[i] < -flat and hist[i] < -flat) or r[i] > 75
        buy = (e20[i] - e60[i] > flat and hist[i] > flat and r[i] < 70) or (r[i] < 30 and close[i] > open_[i])
        if sell:
            out[i] = -1
        elif buy:
            out[i] = 1
    return out


# --- backtest ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefTrade:
    index: int
    side: str
    price: float
    volume: float
    krw: float
    fee: float
    pnl: float | None


@dataclass(frozen=True)
class RefResult:
    trades: list[RefTrade]
    equity: np.ndarray
    total_return: float
    buy_hold_return: float
    max_drawdown: float
    sharpe: float
    win_rate: float | None


def backtest(
    open_: list[float],
    close: list[float],
    signals: list[int],
    *,
    starting_krw: float = 1_000_000.0,
    fee_rate: float = 0.0005,
    min_order_krw: float = 5000.0,
    buy_fraction: float = 0.5,
    sell_fraction: float = 1.0,
    max_order_krw: float | None = None,
) -> RefResult:
    """Every bar: fill yesterday's signal at today's open, then mark equity at today's close."""
    cash = starting_krw
    units = 0  # 1e-8 coin
    basis = 0.0
    trades: list[RefTrade] = []
    equity: list[float] = []
    for j in range(len(close)):
        if j > 0 and signals[j - 1] != 0:
            price = open_[j]
            if signals[j - 1] == 1:
                budget = buy_fraction * cash
                if max_order_krw is not None:
                    budget = min(budget, max_order_krw)
                budget = min(budget, cash)
                bought = math.floor(budget / (1.0 + fee_rate) / price * 100_000_000)
                volume = bought / 100_000_000
                krw = volume * price
                fee = krw * fee_rate
                if krw + fee > cash:
                    bought -= 1
                    volume = bought / 100_000_000
                    krw = volume * price
                    fee = krw * fee_rate
                if bought > 0 and krw >= min_order_krw:
                    cash = cash - krw - fee
                    basis = basis + krw + fee
                    units += bought
                    trades.append(RefTrade(j, "buy", price, volume, krw, fee, None))
            elif units > 0:
                sold = min(units, math.floor(sell_fraction * units + 1e-6))
                volume = sold / 100_000_000
                krw = volume * price
                fee = krw * fee_rate
                if sold > 0 and krw >= min_order_krw:
                    cost = basis if sold == units else basis * sold / units
                    cash = cash + krw - fee
                    units -= sold
                    basis = 0.0 if units == 0 else basis - cost
                    trades.append(RefTrade(j, "sell", price, volume, krw, fee, krw - fee - cost))
        equity.append(cash + units / 100_000_000 * close[j])

    peak = -math.inf
    max_dd = 0.0
    for e in equity:
        peak = max(peak, e)
        max_dd = max(max_dd, 1 - e / peak)
    rets = [equity[i] / equity[i - 1] - 1 for i in range(1, len(equity))]
    sharpe = 0.0
    if rets:
        mean = sum(rets) / len(rets)
        sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / len(rets))
        if sd > 0:
            sharpe = mean / sd * math.sqrt(24 * 365)
    sells = [t for t in trades if t.side == "sell"]
    win_rate = sum(1 for t in sells if t.pnl is not None and t.pnl > 0) / len(sells) if sells else None
    return RefResult(
        trades=trades,
        equity=_out(equity),
        total_return=equity[-1] / starting_krw - 1,
        buy_hold_return=close[-1] / open_[0] - 1,
        max_drawdown=max_dd,
        sharpe=sharpe,
        win_rate=win_rate,
    )


# --- test data --------------------------------------------------------------------------------------------


def random_ohlcv(seed: int, n: int, start: float = 50_000_000.0, vol: float = 0.01) -> tuple[np.ndarray, ...]:
    """A seeded geometric random walk with consistent OHLCV bars (KRW-like prices)."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.empty(n)
    open_[0] = start
    open_[1:] = close[:-1] * (1 + rng.normal(0.0, vol / 10, n - 1))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, vol / 3, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, vol / 3, n)))
    volume = rng.lognormal(3.0, 0.6, n)
    return open_, high, low, close, volume
