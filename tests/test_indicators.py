"""Indicators: short hand-computed series, edge cases, and agreement with the loop reference."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from tradebot.market import indicators as ind
from tradebot.models import Candle

try:  # tests/ may or may not become a package; work either way
    from tests import reference_impl as ref
except ImportError:  # pragma: no cover
    import reference_impl as ref  # type: ignore[no-redef, import-not-found]

nan = math.nan


def assert_series(actual: np.ndarray, expected: list[float]) -> None:
    """Same length, NaN exactly where expected, values equal to ~1e-12."""
    assert actual.dtype == np.float64
    assert actual.shape == (len(expected),)
    np.testing.assert_allclose(actual, np.array(expected, dtype=np.float64), rtol=1e-12, atol=1e-12)


# --- hand-computed series ---------------------------------------------------------------------------------


def test_sma_by_hand() -> None:
    # windows (2,4,6) (4,6,8) (6,8,4) (8,4,10)
    assert_series(ind.sma([2, 4, 6, 8, 4, 10], 3), [nan, nan, 4, 6, 6, 22 / 3])


def test_ema_by_hand() -> None:
    # alpha = 2/(3+1) = 1/2; seed = mean(2, 4, 6) = 4; then 8/2 + 4/2 = 6; 4/2 + 6/2 = 5; 10/2 + 5/2 = 7.5
    assert_series(ind.ema([2, 4, 6, 8, 4, 10], 3), [nan, nan, 4, 6, 5, 7.5])


def test_rsi_by_hand() -> None:
    # changes +1 +1 -1 +2 -1 0; n = 3, Wilder alpha = 1/3
    # i=3: gain (1+1+0)/3 = 2/3, loss (0+0+1)/3 = 1/3, RS 2 -> 100 - 100/3 = 200/3
    # i=4: gain (2/3*2 + 2)/3 = 10/9, loss (1/3*2 + 0)/3 = 2/9, RS 5 -> 100 - 100/6 = 250/3
    # i=5: gain (10/9*2)/3 = 20/27, loss (2/9*2 + 1)/3 = 13/27, RS 20/13 -> 100 - 1300/33 = 2000/33
    # i=6: gain 40/81, loss 26/81, RS 20/13 again -> 2000/33
    expected = [nan, nan, nan, 200 / 3, 250 / 3, 2000 / 33, 2000 / 33]
    assert_series(ind.rsi([10, 11, 12, 11, 13, 12, 12], 3), expected)


def test_macd_by_hand() -> None:
    close = [1, 2, 4, 8, 16, 32]
    # EMA2 (alpha 2/3): 3/2, 19/6, 115/18, 691/54, 4147/162 from index 1
    # EMA3 (alpha 1/2): 7/3, 31/6, 127/12, 511/24 from index 2
    # MACD: 5/6, 11/9, 239/108, 2791/648 from index 2
    # signal EMA2 of the MACD line: seed mean(5/6, 11/9) = 37/36 at index 3, then 589/324, 845/243
    line, signal, hist = ind.macd(close, 2, 3, 2)
    assert_series(line, [nan, nan, 5 / 6, 11 / 9, 239 / 108, 2791 / 648])
    assert_series(signal, [nan, nan, nan, 37 / 36, 589 / 324, 845 / 243])
    assert_series(hist, [nan, nan, nan, 7 / 36, 32 / 81, 1613 / 1944])


def test_bollinger_by_hand() -> None:
    # windows (1,2,4): mean 7/3, var 14/9; (2,4,8): mean 14/3, var 56/9; (4,8,4): mean 16/3, var 32/9
    mid, upper, lower = ind.bollinger([1, 2, 4, 8, 4], 3, 2)
    sd = [math.sqrt(14) / 3, math.sqrt(56) / 3, math.sqrt(32) / 3]
    assert_series(mid, [nan, nan, 7 / 3, 14 / 3, 16 / 3])
    assert_series(upper, [nan, nan, 7 / 3 + 2 * sd[0], 14 / 3 + 2 * sd[1], 16 / 3 + 2 * sd[2]])
    assert_series(lower, [nan, nan, 7 / 3 - 2 * sd[0], 14 / 3 - 2 * sd[1], 16 / 3 - 2 * sd[2]])


def test_atr_by_hand() -> None:
    high = [10, 12, 11, 15, 12]
    low = [8, 9, 9, 13, 10]
    close = [9, 11, 10, 14, 11]
    # TR: -, max(3, 3, 0)=3, max(2, 0, 2)=2, max(2, 5, 3)=5 (gap up), max(2, 2, 4)=4 (gap down)
    assert_series(ind.true_range(high, low, close), [nan, 3, 2, 5, 4])
    # n=2: seed mean(3, 2) = 2.5 at index 2; (2.5 + 5)/2 = 3.75; (3.75 + 4)/2 = 3.875
    assert_series(ind.atr(high, low, close, 2), [nan, nan, 2.5, 3.75, 3.875])


def test_volume_change_by_hand() -> None:
    # 40 / mean(10, 30) - 1 = 1; 10 / mean(30, 40) - 1 = -5/7; 0 / mean(40, 10) - 1 = -1
    assert_series(ind.volume_change([10, 30, 40, 10, 0], 2), [nan, nan, 1, -5 / 7, -1])
    # no volume in the window: no reference, NaN rather than inf
    assert_series(ind.volume_change([0, 0, 5], 2), [nan, nan, nan])


# --- edge cases -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 5])
def test_period_longer_than_series_is_all_nan(length: int) -> None:
    x = np.arange(1.0, length + 1)
    outputs = [
        ind.sma(x, 10),
        ind.ema(x, 10),
        ind.rsi(x, 10),
        *ind.macd(x, 3, 10, 2),
        *ind.bollinger(x, 10),
        ind.atr(x + 1, x - 1, x, 10),
        ind.volume_change(x, 10),
    ]
    for out in outputs:
        assert out.shape == (length,)
        assert np.isnan(out).all()


def test_exactly_enough_data() -> None:
    x = np.array([3.0, 5.0, 7.0])
    assert_series(ind.sma(x, 3), [nan, nan, 5])
    assert_series(ind.ema(x, 3), [nan, nan, 5])
    assert np.isnan(ind.rsi(x, 3)).all()  # RSI needs n changes, i.e. n + 1 closes
    assert_series(ind.rsi(np.array([3.0, 5.0, 7.0, 6.0]), 3), [nan, nan, nan, 80])  # gains 4/3, losses 1/3


def test_period_one() -> None:
    x = np.array([5.0, 1.0, 9.0, 2.0])
    assert_series(ind.sma(x, 1), [5, 1, 9, 2])
    assert_series(ind.ema(x, 1), [5, 1, 9, 2])  # alpha = 1


def test_constant_series() -> None:
    x = np.full(100, 12_345_000.0)
    np.testing.assert_allclose(ind.sma(x, 20)[19:], 12_345_000.0, rtol=1e-15)
    np.testing.assert_allclose(ind.ema(x, 20)[19:], 12_345_000.0, rtol=1e-15)
    line, signal, hist = ind.macd(x)
    np.testing.assert_allclose(line[25:], 0.0, atol=1e-6)
    np.testing.assert_allclose(hist[33:], 0.0, atol=1e-6)
    mid, upper, lower = ind.bollinger(x)
    np.testing.assert_allclose(upper[19:], mid[19:], rtol=1e-15)
    np.testing.assert_allclose(lower[19:], mid[19:], rtol=1e-15)
    assert (ind.atr(x, x, x)[14:] == 0.0).all()
    # no gains and no losses: neutral 50, not 100
    assert (ind.rsi(x)[14:] == 50.0).all()
    np.testing.assert_allclose(ind.volume_change(x)[20:], 0.0, atol=1e-15)


def test_rsi_without_losses_or_gains() -> None:
    rising = np.arange(1.0, 41.0)
    assert (ind.rsi(rising)[14:] == 100.0).all()
    assert (ind.rsi(rising[::-1])[14:] == 0.0).all()


def test_rsi_after_losses_end_stays_below_100() -> None:
    x = np.r_[np.arange(20.0, 0.0, -1.0), np.arange(1.0, 40.0)]  # a fall, then only gains
    r = ind.rsi(x, 14)
    assert np.all(np.diff(r[20:]) > 0)  # the average loss decays, it never becomes exactly 0
    assert np.all(r[14:] < 100.0)


def test_invalid_period_raises() -> None:
    for f in (ind.sma, ind.ema, ind.rsi, ind.volume_change):
        with pytest.raises(ValueError):
            f(np.arange(5.0), 0)
    with pytest.raises(ValueError):
        ind.sma(np.ones((2, 2)), 1)


def test_inputs_are_not_modified() -> None:
    x = np.array([1.0, 2.0, 3.0, 2.0, 5.0, 4.0])
    before = x.copy()
    ind.ema(x, 2), ind.rsi(x, 2), ind.macd(x, 2, 3, 2), ind.bollinger(x, 2), ind.atr(x, x, x, 2)
    np.testing.assert_array_equal(x, before)


# --- vectorized == loop reference ------------------------------------------------------------------------


def _close_to(actual: np.ndarray, expected: np.ndarray, scale: float = 0.0) -> None:
    """rtol 1e-9 with identical NaN positions. ``scale`` adds an absolute tolerance for differences of two
    large numbers (MACD of KRW prices near a crossing), where a relative tolerance means nothing."""
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    assert np.allclose(actual, expected, rtol=1e-9, atol=1e-12 * scale, equal_nan=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("length", [2, 63, 64, 65, 129, 700])
def test_vectorized_equals_loop_reference(seed: int, length: int) -> None:
    start = [50_000_000.0, 0.5, 3_000.0][seed % 3]  # BTC-like, penny coin, mid
    o, h, lo, c, v = ref.random_ohlcv(seed, length, start=start, vol=0.02)
    cl, hl, ll, vl = c.tolist(), h.tolist(), lo.tolist(), v.tolist()
    for n in (1, 2, 9, 14, 20, 60):
        _close_to(ind.sma(c, n), ref.sma(cl, n))
        _close_to(ind.ema(c, n), ref.ema(cl, n))
        _close_to(ind.rsi(c, n), ref.rsi(cl, n), scale=100.0)  # 100 - 100/(1+RS) cancels near 0
        _close_to(ind.atr(h, lo, c, n), ref.atr(hl, ll, cl, n))
        _close_to(ind.volume_change(v, n), ref.volume_change(vl, n), scale=1.0)
        for got, want in zip(ind.bollinger(c, n, 2.0), ref.bollinger(cl, n, 2.0)):
            _close_to(got, want, scale=start)
    for got, want in zip(ind.macd(c), ref.macd(cl)):
        _close_to(got, want, scale=start)
    for got, want in zip(ind.macd(c, 5, 13, 4), ref.macd(cl, 5, 13, 4)):
        _close_to(got, want, scale=start)


# --- candles -> arrays / snapshot -------------------------------------------------------------------------


def _candles(
    closes: np.ndarray, opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, vols: np.ndarray
) -> list[Candle]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    # Decimal from the float's shortest repr, as the exchange adapter builds them from strings
    return [
        Candle(
            start=t0 + timedelta(hours=i),
            open=Decimal(repr(float(opens[i]))),
            high=Decimal(repr(float(highs[i]))),
            low=Decimal(repr(float(lows[i]))),
            close=Decimal(repr(float(closes[i]))),
            volume=Decimal(repr(float(vols[i]))),
        )
        for i in range(len(closes))
    ]


def test_arrays_converts_decimals_once() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        ("50000000", "50100000.5", "49900000", "50050000", "1.23456789"),
        ("50050000", "50060000", "50000000", "50010000", "0.00000001"),
    ]
    candles = [Candle(t0, *(Decimal(x) for x in row)) for row in rows]
    o, h, lo, c, v = ind.arrays(candles)
    for arr in (o, h, lo, c, v):
        assert arr.dtype == np.float64 and arr.shape == (2,) and arr.flags.c_contiguous
    assert o.tolist() == [50_000_000.0, 50_050_000.0]
    assert h.tolist() == [50_100_000.5, 50_060_000.0]
    assert lo.tolist() == [49_900_000.0, 50_000_000.0]
    assert c.tolist() == [50_050_000.0, 50_010_000.0]
    assert v.tolist() == [1.23456789, 1e-8]
    assert all(a.shape == (0,) for a in ind.arrays([]))


def test_snapshot_is_the_last_value_of_each_indicator() -> None:
    o, h, lo, c, v = ref.random_ohlcv(7, 200)
    snap = ind.snapshot(_candles(c, o, h, lo, v))
    line, signal, hist = ref.macd(c.tolist())
    mid, upper, lower = ref.bollinger(c.tolist())
    expected = {
        "close": c[-1],
        "rsi14": ref.rsi(c.tolist(), 14)[-1],
        "sma20": ref.sma(c.tolist(), 20)[-1],
        "sma60": ref.sma(c.tolist(), 60)[-1],
        "ema20": ref.ema(c.tolist(), 20)[-1],
        "ema60": ref.ema(c.tolist(), 60)[-1],
        "macd": line[-1],
        "macd_signal": signal[-1],
        "macd_hist": hist[-1],
        "bb_mid": mid[-1],
        "bb_upper": upper[-1],
        "bb_lower": lower[-1],
        "atr14": ref.atr(h.tolist(), lo.tolist(), c.tolist(), 14)[-1],
        "volume_change": ref.volume_change(v.tolist(), 20)[-1],
    }
    got = snap.as_dict()
    assert set(got) == set(expected)
    for key, want in expected.items():
        value = got[key]
        assert isinstance(value, float), key
        assert value == pytest.approx(float(want), rel=1e-9, abs=1e-6), key


def test_snapshot_reports_none_while_warming_up() -> None:
    o, h, lo, c, v = ref.random_ohlcv(3, 30)
    snap = ind.snapshot(_candles(c, o, h, lo, v))
    assert snap.close == c[-1]
    assert snap.rsi14 is not None and snap.sma20 is not None and snap.bb_lower is not None
    assert snap.atr14 is not None and snap.volume_change is not None and snap.macd is not None
    # EMA60/SMA60 need 60 candles, the MACD signal 34
    assert snap.sma60 is None and snap.ema60 is None and snap.macd_signal is None and snap.macd_hist is None
    one = ind.snapshot(_candles(c[:1], o[:1], h[:1], lo[:1], v[:1]))
    assert one.close == c[0]
    assert all(value is None for key, value in one.as_dict().items() if key != "close")


def test_snapshot_of_no_candles_raises() -> None:
    with pytest.raises(ValueError):
        ind.snapshot([])
