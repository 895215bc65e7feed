"""The rule strategy: trend following on EMA/MACD with RSI extremes, one signal per hourly bar.

It is used in three places, so that what is backtested is what trades: the ``rules`` advisor of the live
cycle (:func:`decide`), the cycle's backtest filter and ``tradebot backtest`` (:func:`signals` fed to
:func:`tradebot.market.engine.run_backtest`).

The rule, evaluated on each completed bar ``i`` with indicators over bars ``<= i`` only (causal):

* **buy** (+1) when the trend is up — EMA20 > EMA60 and MACD(12, 26, 9) histogram > 0 — and RSI14 < 70
  (not already overbought); or on an oversold bounce: RSI14 < 30 and the bar closed above its open.
* **sell** (−1) when the trend is down — EMA20 < EMA60 and MACD histogram < 0 —, or when RSI14 > 75
  (overbought: take profit).
* The EMA comparisons and the histogram's sign need a margin of 1e-9 × close, so that float rounding in a
  flat market is not read as a trend.
* Sell wins when both fire (an oversold bounce inside a confirmed downtrend is not bought): leaving a
  position is the conservative choice.
* **hold** (0) otherwise, and for the first ``MIN_BARS - 1`` bars, until every indicator is defined.

Signals are states, not crossings: a buy signal repeats for every bar of an uptrend, and each one buys
``BUY_FRACTION`` of the remaining free KRW until the minimum order stops it, so the position is built over
a few hours; a sell signal sells ``SELL_FRACTION`` (all) of the coin.

Indicators are float64 analytics (see :mod:`tradebot.market.indicators`); Decimal appears only in the
:class:`~tradebot.models.Decision` that :func:`decide` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from tradebot.market import indicators as ind
from tradebot.models import AdvisorInput, Decision
from tradebot.upbit_rules import MIN_ORDER_KRW

FloatArray = npt.NDArray[np.float64]
SignalArray = npt.NDArray[np.int8]

BUY, HOLD, SELL = 1, 0, -1

EMA_FAST = 20
EMA_SLOW = 60
RSI_PERIOD = 14
RSI_BUY_MAX = 70.0  # trend buys stop once RSI reaches this
RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 75.0
# Every indicator of the rule is defined from bar EMA_SLOW - 1 on (EMA60 is the slowest).
MIN_BARS = EMA_SLOW

BUY_FRACTION = Decimal("0.5")  # share of free KRW per buy
SELL_FRACTION = Decimal("1")  # share of the held coin per sell

# Confidence scales: a 2 % gap between EMA20 and EMA60 is a strong hourly trend; RSI 10 / RSI 90 are
# extreme. At the threshold the confidence is 0.5, at the scale 1.0.
_TREND_FULL_GAP = 0.02
_RSI_OVERSOLD_FULL = 10.0
_RSI_OVERBOUGHT_FULL = 90.0
# EMA gaps and MACD histograms within 1e-9 of the price count as zero: rounding in the smoothers must not
# turn a flat market into a trend.
_FLAT = 1e-9
# Below Upbit's minimum order there is nothing to sell (dust) nor enough KRW to buy.


@dataclass(frozen=True)
class _Rules:
    """The indicator arrays and the masks of every rule, shared by :func:`signals` and :func:`decide`."""

    ema_fast: FloatArray
    ema_slow: FloatArray
    hist: FloatArray
    rsi: FloatArray
    trend_buy: npt.NDArray[np.bool_]
    bounce_buy: npt.NDArray[np.bool_]
    trend_sell: npt.NDArray[np.bool_]
    overbought_sell: npt.NDArray[np.bool_]
    signal: SignalArray


def _rules(open_: npt.ArrayLike, close: npt.ArrayLike) -> _Rules:
    o = np.asarray(open_, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    if o.shape != c.shape or o.ndim != 1:
        raise ValueError("open and close must be 1-D arrays of the same length")
    ema_fast = ind.ema(c, EMA_FAST)
    ema_slow = ind.ema(c, EMA_SLOW)
    _line, _sig, hist = ind.macd(c)
    rsi = ind.rsi(c, RSI_PERIOD)
    # Comparisons with NaN are False, but the RSI rules would fire before the trend is known: gate all
    # rules on every indicator being defined.
    ready = ~(np.isnan(ema_fast) | np.isnan(ema_slow) | np.isnan(hist) | np.isnan(rsi))
    flat = _FLAT * c
    spread = ema_fast - ema_slow
    trend_buy = ready & (spread > flat) & (hist > flat) & (rsi < RSI_BUY_MAX)
    bounce_buy = ready & (rsi < RSI_OVERSOLD) & (c > o)
    trend_sell = ready & (spread < -flat) & (hist < -flat)
    overbought_sell = ready & (rsi > RSI_OVERBOUGHT)
    sell = trend_sell | overbought_sell
    buy = (trend_buy | bounce_buy) & ~sell
    signal = np.zeros(c.shape[0], dtype=np.int8)
    signal[buy] = BUY
    signal[sell] = SELL
    return _Rules(ema_fast, ema_slow, hist, rsi, trend_buy, bounce_buy, trend_sell, overbought_sell, signal)


def signals(
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
) -> SignalArray:
    """The rule's signal for every bar: +1 buy, −1 sell, 0 hold (int8, same length as the inputs).

    Causal: ``signals(...)[i]`` depends only on bars ``<= i``. ``high``, ``low`` and ``volume`` are not
    used by the current rule; they are part of the signature so that a rule change does not change callers.
    """
    n = np.asarray(close).shape[0]
    for name, arr in (("high", high), ("low", low), ("volume", volume)):
        if np.asarray(arr).shape != (n,):
            raise ValueError(f"{name} must have the same length as close")
    return _rules(open_, close).signal


def signal_strengths(open_: npt.ArrayLike, close: npt.ArrayLike) -> tuple[SignalArray, FloatArray]:
    """The signal of every bar and the strength of the rule behind it (NaN on holds), in one pass.

    ``confidence(strengths[i])`` is exactly the confidence :func:`decide` gives on bar ``i`` (the same float
    operations, element-wise): trend rules scale with the EMA gap, RSI rules with the RSI distance, and a
    sell takes the stronger of its firing rules. ``tradebot backtest`` uses it so that the risk gate's
    ``TRADEBOT_MIN_CONFIDENCE`` sees what the live ``rules`` advisor would have proposed.
    """
    c = np.asarray(close, dtype=np.float64)
    r = _rules(open_, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(r.ema_slow != 0.0, r.ema_fast / r.ema_slow - 1.0, 0.0)
        trend = gap / _TREND_FULL_GAP
        bounce = (RSI_OVERSOLD - r.rsi) / (RSI_OVERSOLD - _RSI_OVERSOLD_FULL)
        overbought = (r.rsi - RSI_OVERBOUGHT) / (_RSI_OVERBOUGHT_FULL - RSI_OVERBOUGHT)
    buy_strength = np.where(r.trend_buy, trend, bounce)
    sell_strength = np.maximum(np.where(r.trend_sell, -trend, -np.inf), np.where(r.overbought_sell, overbought, -np.inf))
    strength = np.where(r.signal == BUY, buy_strength, np.where(r.signal == SELL, sell_strength, np.nan))
    return r.signal, strength


def confidence(strength: float) -> Decimal:
    """The advisor confidence of a rule strength (see :func:`signal_strengths`): 0.5 to 1.0, two places."""
    return _confidence(strength)


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def _confidence(strength: float) -> Decimal:
    """0.5 at a rule's threshold rising to 1.0 at its full scale, as a two-place Decimal."""
    return Decimal(f"{0.5 + 0.5 * _clip01(strength):.2f}")


def _num(x: float) -> str:
    """A price-like figure for a human: thousands separators for KRW prices, 4 significant digits else."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _signed(x: float) -> str:
    return f"{x:+,.0f}" if abs(x) >= 1000 else f"{x:+.4g}"


def _hold(reason: str, confidence: str = "0.50") -> Decision:
    return Decision(action="hold", confidence=Decimal(confidence), fraction=Decimal("0"), reason=reason)


def decide(inp: AdvisorInput) -> Decision:
    """The rules advisor: the rule's signal on the last completed hourly candle, as a Decision.

    ``confidence`` grows with the signal's strength (EMA gap for trend rules, RSI distance for RSI rules);
    ``fraction`` is ``BUY_FRACTION`` of free KRW for a buy and ``SELL_FRACTION`` of the coin for a sell.
    It holds when there are fewer than ``MIN_BARS`` candles, on a sell signal without a position (or only
    dust below the minimum order), and on a buy signal without the minimum order in free KRW.
    """
    candles = inp.hourly
    if len(candles) < MIN_BARS:
        return _hold(f"Hold: only {len(candles)} hourly candles, the rules need {MIN_BARS}.", confidence="0")
    open_, _high, _low, close, _volume = ind.arrays(candles)
    r = _rules(open_, close)
    signal = int(r.signal[-1])
    e_fast, e_slow = float(r.ema_fast[-1]), float(r.ema_slow[-1])
    hist, rsi = float(r.hist[-1]), float(r.rsi[-1])
    gap = e_fast / e_slow - 1.0 if e_slow else 0.0
    trend_text = (
        f"EMA{EMA_FAST} {_num(e_fast)} {'>' if gap > 0 else '<' if gap < 0 else '='} "
        f"EMA{EMA_SLOW} {_num(e_slow)} ({gap * 100:+.2f} %), MACD histogram {_signed(hist)}"
    )
    rsi_text = f"RSI{RSI_PERIOD} {rsi:.1f}"

    if signal == BUY:
        if bool(r.trend_buy[-1]):
            confidence = _confidence(gap / _TREND_FULL_GAP)
            why = f"uptrend: {trend_text}, {rsi_text} < {RSI_BUY_MAX:.0f}"
        else:
            confidence = _confidence((RSI_OVERSOLD - rsi) / (RSI_OVERSOLD - _RSI_OVERSOLD_FULL))
            why = f"oversold bounce: {rsi_text} < {RSI_OVERSOLD:.0f} and the candle closed above its open"
        if inp.position.free_krw < MIN_ORDER_KRW:
            return _hold(f"Hold: buy signal ({why}) but free KRW is below the minimum order.")
        return Decision("buy", confidence, BUY_FRACTION, f"Buy on {why}.")

    if signal == SELL:
        strengths: list[float] = []
        whys: list[str] = []
        if bool(r.trend_sell[-1]):
            strengths.append(-gap / _TREND_FULL_GAP)
            whys.append(f"downtrend: {trend_text}")
        if bool(r.overbought_sell[-1]):
            strengths.append((rsi - RSI_OVERBOUGHT) / (_RSI_OVERBOUGHT_FULL - RSI_OVERBOUGHT))
            whys.append(f"overbought: {rsi_text} > {RSI_OVERBOUGHT:.0f}")
        why = "; ".join(whys)
        if inp.position.position_value < MIN_ORDER_KRW:
            return _hold(f"Hold: sell signal ({why}) but no position to sell.")
        return Decision("sell", _confidence(max(strengths)), SELL_FRACTION, f"Sell on {why}.")

    return _hold(f"Hold: no rule fires ({trend_text}, {rsi_text}).")
