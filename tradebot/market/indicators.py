"""Technical indicators over hourly candles, vectorized with NumPy.

Every function takes 1-D arrays and returns float64 arrays of the same length, with NaN where there is not
yet enough data (the warm-up). Values at index ``i`` use only inputs at indices ``<= i`` (causal), so the
strategy and the backtest can use them without look-ahead.

Floats are deliberate: indicators are analytics and simulation, computed in float64 for speed (issue 7).
They never size a real order; order amounts are Decimal and come from balances and the risk gate. Candle
prices are converted from Decimal once, in :func:`arrays`.

Conventions (the same in ``tests/reference_impl.py``, the per-bar loop reference):

* EMA: ``alpha = 2 / (n + 1)``, seeded with the SMA of the first ``n`` values (first value at ``n - 1``).
* Wilder smoothing (RSI, ATR): ``alpha = 1 / n``, seeded with the simple mean of the first ``n`` inputs.
* RSI is first defined at index ``n`` (it needs ``n`` price changes); ATR likewise, because the true range
  of bar 0 has no previous close.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tradebot.models import Candle, IndicatorSnapshot

FloatArray = npt.NDArray[np.float64]

# Block length of the blocked linear recursion below: 64 keeps the (64 × 64) kernel tiny while cutting the
# Python-level carry loop to len/64 iterations (137 for a year of hourly bars).
_BLOCK = 64


def _as_float(x: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {arr.shape}")
    return arr


def _check_period(n: int) -> None:
    if n < 1:
        raise ValueError(f"period must be >= 1, got {n}")


def _recursive_smooth(values: FloatArray, start: int, seed: float, alpha: float) -> FloatArray:
    """``y[start] = seed``; ``y[i] = alpha·values[i] + (1 - alpha)·y[i-1]`` for ``i > start``; NaN before.

    EMA and Wilder smoothing are this first-order linear recursion. Instead of a Python loop over every
    bar it is solved in blocks of ``_BLOCK`` values: within a block the response to the block's inputs from
    a zero state is one small matrix product with the kernel ``alpha·d^(j-k)`` (``d = 1 - alpha``), and the
    state carried in from the previous block decays as ``d^(j+1)``. Only powers ``d^k <= 1`` appear, so the
    result stays within rounding of the plain loop (no division by tiny powers). Inputs must be finite: a
    NaN or inf would spread through its whole block, earlier bars included (0 × NaN is NaN).
    """
    out = np.full(values.shape[0], np.nan)
    out[start] = seed
    rest = values[start + 1 :]
    m = rest.shape[0]
    if m == 0:
        return out
    d = 1.0 - alpha
    n_blocks = -(-m // _BLOCK)
    padded = np.zeros(n_blocks * _BLOCK)
    # Solved around the seed (y - seed follows the same recursion with inputs x - seed): smaller numbers,
    # and a constant series stays exactly constant instead of drifting by rounding.
    padded[:m] = rest - seed
    blocks = padded.reshape(n_blocks, _BLOCK)
    lag = np.arange(_BLOCK)
    diff = lag[:, None] - lag[None, :]
    # np.power(0.0, 0) is 1.0, so alpha = 1 (n = 1) gives the identity kernel as it should.
    kernel = np.where(diff >= 0, alpha * np.power(d, np.maximum(diff, 0)), 0.0)
    response = blocks @ kernel.T  # response[b, j] = sum_{k<=j} alpha d^(j-k) blocks[b, k]
    decay = np.power(d, lag + 1.0)
    carry_in = np.empty(n_blocks)
    carry = 0.0
    last_decay = float(decay[-1])
    last_response = response[:, -1].tolist()
    for b in range(n_blocks):  # one iteration per block, not per bar
        carry_in[b] = carry
        carry = last_decay * carry + last_response[b]
    smoothed = decay[None, :] * carry_in[:, None] + response
    out[start + 1 :] = smoothed.reshape(-1)[:m] + seed
    return out


def sma(x: npt.ArrayLike, n: int) -> FloatArray:
    """Simple moving average of the last ``n`` values; first defined at index ``n - 1``."""
    _check_period(n)
    arr = _as_float(x)
    out = np.full(arr.shape[0], np.nan)
    if arr.shape[0] >= n:
        # A sliding-window mean rather than a cumulative sum: cumsum differences lose digits on long series
        # of large KRW prices, and windows of 20-60 bars are cheap.
        out[n - 1 :] = np.lib.stride_tricks.sliding_window_view(arr, n).mean(axis=1)
    return out


def ema(x: npt.ArrayLike, n: int) -> FloatArray:
    """Exponential moving average, ``alpha = 2 / (n + 1)``.

    Seeded with the SMA of the first ``n`` values at index ``n - 1`` (NaN before), then
    ``ema[i] = alpha·x[i] + (1 - alpha)·ema[i-1]``.
    """
    _check_period(n)
    arr = _as_float(x)
    if arr.shape[0] < n:
        return np.full(arr.shape[0], np.nan)
    return _recursive_smooth(arr, n - 1, float(arr[:n].mean()), 2.0 / (n + 1))


def _wilder(values: FloatArray, n: int) -> FloatArray:
    """Wilder smoothing of ``values[1:]`` (index 0 is undefined): seeded at index ``n`` with the mean of
    ``values[1 : n + 1]``, then ``avg[i] = (avg[i-1]·(n-1) + values[i]) / n``."""
    if values.shape[0] <= n:
        return np.full(values.shape[0], np.nan)
    return _recursive_smooth(values, n, float(values[1 : n + 1].mean()), 1.0 / n)


def rsi(close: npt.ArrayLike, n: int = 14) -> FloatArray:
    """Relative Strength Index with Wilder smoothing, in [0, 100]; first defined at index ``n``.

    Average gain and loss are seeded with the simple mean of the first ``n`` gains/losses. RSI is 100 when
    the average loss is 0 and the average gain is positive, and 50 when both are 0 (a perfectly flat
    market is neither overbought nor oversold).
    """
    _check_period(n)
    c = _as_float(close)
    change = np.zeros(c.shape[0])
    change[1:] = np.diff(c)
    avg_gain = _wilder(np.maximum(change, 0.0), n)
    avg_loss = _wilder(np.maximum(-change, 0.0), n)
    total = avg_gain + avg_loss
    # 100·g/(g+l) equals 100 - 100/(1 + g/l) and needs no special case when only the loss is 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * avg_gain / total
    out[total == 0.0] = 50.0
    return out


def macd(
    close: npt.ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line (EMA fast − EMA slow), signal line and histogram (MACD − signal).

    The signal line is the EMA of the MACD line over its valid part, so with the defaults MACD starts at
    index 25 and the signal and histogram at index 33.
    """
    _check_period(signal)
    c = _as_float(close)
    line = ema(c, fast) - ema(c, slow)
    sig = np.full(c.shape[0], np.nan)
    valid = np.flatnonzero(~np.isnan(line))
    if valid.size:
        first = int(valid[0])
        sig[first:] = ema(line[first:], signal)
    return line, sig, line - sig


def bollinger(close: npt.ArrayLike, n: int = 20, k: float = 2.0) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger bands: (mid = SMA n, mid + k·σ, mid − k·σ) with the population σ (ddof=0) of the window."""
    _check_period(n)
    c = _as_float(close)
    mid = np.full(c.shape[0], np.nan)
    std = np.full(c.shape[0], np.nan)
    if c.shape[0] >= n:
        windows = np.lib.stride_tricks.sliding_window_view(c, n)
        mid[n - 1 :] = windows.mean(axis=1)
        std[n - 1 :] = windows.std(axis=1)  # two-pass: no cancellation on large prices
    return mid, mid + k * std, mid - k * std


def true_range(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike) -> FloatArray:
    """True range ``max(high − low, |high − prev close|, |low − prev close|)``; NaN at index 0."""
    h, lo, c = _as_float(high), _as_float(low), _as_float(close)
    if not h.shape == lo.shape == c.shape:
        raise ValueError("high, low and close must have the same length")
    tr = np.full(h.shape[0], np.nan)
    if h.shape[0] > 1:
        prev = c[:-1]
        tr[1:] = np.maximum(h[1:] - lo[1:], np.maximum(np.abs(h[1:] - prev), np.abs(lo[1:] - prev)))
    return tr


def atr(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int = 14) -> FloatArray:
    """Average true range with Wilder smoothing; first defined at index ``n`` (mean of TR[1..n])."""
    _check_period(n)
    return _wilder(true_range(high, low, close), n)


def volume_change(volume: npt.ArrayLike, n: int = 20) -> FloatArray:
    """``volume[i] / mean(volume[i-n:i]) − 1``: this bar's volume against the previous ``n`` bars.

    First defined at index ``n``; NaN where the previous ``n`` bars traded nothing.
    """
    _check_period(n)
    v = _as_float(volume)
    out = np.full(v.shape[0], np.nan)
    if v.shape[0] > n:
        previous = np.lib.stride_tricks.sliding_window_view(v[:-1], n).mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = v[n:] / previous - 1.0
        out[n:] = np.where(previous > 0.0, ratio, np.nan)
    return out


def arrays(candles: Sequence[Candle]) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Convert candles (oldest first) to float64 ``(open, high, low, close, volume)`` arrays, once."""
    table = np.array(
        [(float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)) for c in candles],
        dtype=np.float64,
    ).reshape(-1, 5)
    columns = np.ascontiguousarray(table.T)
    return columns[0], columns[1], columns[2], columns[3], columns[4]


def _last(values: FloatArray) -> float | None:
    value = float(values[-1])
    return None if math.isnan(value) else value


def snapshot(candles: Sequence[Candle]) -> IndicatorSnapshot:
    """The latest value of every indicator over ``candles`` (completed, oldest first); None while warming up.

    Raises ValueError when ``candles`` is empty.
    """
    if not candles:
        raise ValueError("snapshot needs at least one candle")
    _open, high, low, close, volume = arrays(candles)
    macd_line, macd_signal, macd_hist = macd(close)
    bb_mid, bb_upper, bb_lower = bollinger(close)
    return IndicatorSnapshot(
        close=float(close[-1]),
        rsi14=_last(rsi(close, 14)),
        sma20=_last(sma(close, 20)),
        sma60=_last(sma(close, 60)),
        ema20=_last(ema(close, 20)),
        ema60=_last(ema(close, 60)),
        macd=_last(macd_line),
        macd_signal=_last(macd_signal),
        macd_hist=_last(macd_hist),
        bb_mid=_last(bb_mid),
        bb_upper=_last(bb_upper),
        bb_lower=_last(bb_lower),
        atr14=_last(atr(high, low, close, 14)),
        volume_change=_last(volume_change(volume, 20)),
    )
