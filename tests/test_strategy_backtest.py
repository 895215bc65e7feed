"""The rule strategy and the backtest: hand-checked fills, the loop reference, and no look-ahead."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from tradebot.market import indicators as ind
from tradebot.market import strategy
from tradebot.market.engine import BacktestResult, BacktestTrade, run_backtest
from tradebot.models import AdvisorInput, Candle, IndicatorSnapshot, Market, Position

try:  # tests/ may or may not become a package; work either way
    from tests import reference_impl as ref
except ImportError:  # pragma: no cover
    import reference_impl as ref  # type: ignore[no-redef, import-not-found]

T0 = datetime(2024, 1, 1, tzinfo=UTC)


# --- helpers ----------------------------------------------------------------------------------------------


def path(steps: np.ndarray, start: float = 10_000_000.0) -> tuple[np.ndarray, np.ndarray]:
    """(open, close) of a path of close-to-close multipliers; each bar opens at the previous close."""
    close = start * np.cumprod(steps)
    open_ = np.r_[start, close[:-1]]
    return open_, close


def uptrend(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    # +1.5 % / -0.8 % alternating: a rising trend with pullbacks, RSI about 63
    return path(np.where(np.arange(n) % 2 == 0, 1.015, 0.992))


def candles_of(open_: np.ndarray, close: np.ndarray) -> tuple[Candle, ...]:
    def d(x: float) -> Decimal:
        return Decimal(f"{x:.2f}")

    return tuple(
        Candle(T0 + timedelta(hours=i), d(o), d(max(o, c)), d(min(o, c)), d(c), Decimal("1.5"))
        for i, (o, c) in enumerate(zip(open_.tolist(), close.tolist()))
    )


def advisor_input(candles: tuple[Candle, ...], *, free_krw: str = "1000000", coin: str = "0") -> AdvisorInput:
    price = candles[-1].close if candles else Decimal("10000000")
    position = Position(
        market=Market("KRW-BTC"),
        free_krw=Decimal(free_krw),
        locked_krw=Decimal(0),
        coin_volume=Decimal(coin),
        coin_free=Decimal(coin),
        avg_buy_price=price,
        price=price,
    )
    snap = ind.snapshot(candles) if candles else IndicatorSnapshot(0.0, *([None] * 13))
    return AdvisorInput(position=position, indicators=snap, hourly=candles, daily=(), history=())


def trade_tuples(trades: tuple[BacktestTrade, ...]) -> list[tuple[object, ...]]:
    return [(t.index, t.side, t.price, t.volume, t.krw, t.fee, t.pnl) for t in trades]


def ref_tuples(trades: list[ref.RefTrade]) -> list[tuple[object, ...]]:
    return [(t.index, t.side, t.price, t.volume, t.krw, t.fee, t.pnl) for t in trades]


# --- strategy: signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_signals_equal_the_loop_reference(seed: int) -> None:
    o, h, lo, c, v = ref.random_ohlcv(seed, 1500, vol=0.006 + 0.002 * seed)
    got = strategy.signals(o, h, lo, c, v)
    assert got.dtype == np.int8 and got.shape == c.shape
    np.testing.assert_array_equal(got, ref.signals(o.tolist(), c.tolist()))
    assert set(np.unique(got)) == {-1, 0, 1}  # the paths exercise every outcome


def test_no_signal_before_every_indicator_is_defined() -> None:
    o, h, lo, c, v = ref.random_ohlcv(11, 300, vol=0.03)
    sig = strategy.signals(o, h, lo, c, v)
    assert (sig[: strategy.MIN_BARS - 1] == 0).all()
    short = strategy.signals(o[:59], h[:59], lo[:59], c[:59], v[:59])
    assert short.shape == (59,) and (short == 0).all()
    assert strategy.signals(o[:0], h[:0], lo[:0], c[:0], v[:0]).shape == (0,)


def test_flat_market_gives_no_signal() -> None:
    for price in (10_000_000.0, 0.1, 1234.5678):  # values that do and do not round-trip through sums
        c = np.full(150, price)
        assert (strategy.signals(c, c, c, c, c) == 0).all()


def test_signals_reject_mismatched_lengths() -> None:
    c = np.ones(10)
    with pytest.raises(ValueError):
        strategy.signals(c, c, c[:5], c, c)


@pytest.mark.parametrize("seed", range(4))
def test_signals_do_not_look_ahead(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    o, h, lo, c, v = ref.random_ohlcv(seed, 400, vol=0.01)
    sig = strategy.signals(o, h, lo, c, v)
    result = run_backtest(o, h, lo, c, sig)
    for k in rng.integers(0, 399, size=6).tolist():
        # a different future: every candle after k replaced
        o2, h2, lo2, c2, v2 = (x.copy() for x in (o, h, lo, c, v))
        scale = rng.uniform(0.5, 1.5, 399 - k)
        o2[k + 1 :] *= scale
        h2[k + 1 :] *= scale * 1.01
        lo2[k + 1 :] *= scale * 0.99
        c2[k + 1 :] *= scale[::-1]
        v2[k + 1 :] = rng.lognormal(2.0, 1.0, 399 - k)
        sig2 = strategy.signals(o2, h2, lo2, c2, v2)
        np.testing.assert_array_equal(sig2[: k + 1], sig[: k + 1])
        result2 = run_backtest(o2, h2, lo2, c2, sig2)
        assert [t for t in result2.trades if t.index <= k] == [t for t in result.trades if t.index <= k]
        np.testing.assert_array_equal(result2.equity[: k + 1], result.equity[: k + 1])


# --- strategy: the rules advisor --------------------------------------------------------------------------


def test_decide_buys_in_an_uptrend() -> None:
    o, c = uptrend()
    decision = strategy.decide(advisor_input(candles_of(o, c)))
    assert decision.action == "buy"
    assert decision.fraction == Decimal("0.5")
    # EMA gap above 2 % saturates the trend strength
    assert decision.confidence == Decimal("1.00")
    assert decision.reason.startswith("Buy on uptrend: EMA20 ")
    assert "RSI14 63.2 < 70" in decision.reason


def test_decide_confidence_scales_with_the_ema_gap() -> None:
    # a slow uptrend: +0.30 % / -0.25 %, so the EMA gap is a fraction of the 2 % full scale
    o, c = path(np.where(np.arange(200) % 2 == 0, 1.003, 0.9975) * np.linspace(1.0, 1.0004, 200))
    decision = strategy.decide(advisor_input(candles_of(o, c)))
    r = strategy._rules(o, c)
    gap = r.ema_fast[-1] / r.ema_slow[-1] - 1
    assert decision.action == "buy"
    assert decision.confidence == Decimal(f"{0.5 + 0.5 * gap / 0.02:.2f}")
    assert Decimal("0.5") < decision.confidence < Decimal("1")
    assert decision.confidence.as_tuple().exponent == -2


def test_decide_holds_a_buy_signal_without_krw() -> None:
    o, c = uptrend()
    decision = strategy.decide(advisor_input(candles_of(o, c), free_krw="4999"))
    assert decision.action == "hold" and decision.fraction == Decimal("0")
    assert "free KRW is below the minimum order" in decision.reason


def test_decide_sells_in_a_downtrend_only_with_a_position() -> None:
    # an accelerating fall after a flat hour-long start
    steps = np.r_[np.full(60, 1.0), np.where(np.arange(60) % 2 == 0, 0.996 - np.arange(60) * 0.0002, 1.002)]
    o, c = path(steps)
    candles = candles_of(o, c)
    held = strategy.decide(advisor_input(candles, coin="0.01"))  # 0.01 BTC ≈ 56,000 KRW
    assert held.action == "sell"
    assert held.fraction == Decimal("1")
    assert held.reason.startswith("Sell on downtrend: EMA20 ")
    assert " < EMA60 " in held.reason and "MACD histogram -" in held.reason
    flat = strategy.decide(advisor_input(candles, coin="0"))
    assert flat.action == "hold" and "no position to sell" in flat.reason
    dust = strategy.decide(advisor_input(candles, coin="0.00000100"))  # ≈ 6 KRW: below the minimum order
    assert dust.action == "hold"


def test_decide_sells_when_overbought() -> None:
    o, c = path(np.full(120, 1.01))  # only gains: RSI 100
    decision = strategy.decide(advisor_input(candles_of(o, c), coin="0.1"))
    assert decision.action == "sell"
    assert decision.confidence == Decimal("1.00")
    assert "overbought: RSI14 100.0 > 75" in decision.reason


def test_oversold_bounce_buys_but_not_inside_a_confirmed_downtrend() -> None:
    # a long fall that slows down: MACD turns up (histogram > 0) while RSI is still ~0; last candle green
    o, c = path(np.r_[np.full(80, 0.99), np.full(15, 0.999)])
    o[-1] = c[-1] * 0.995
    assert strategy.signals(o, o, o, c, c)[-1] == 1
    decision = strategy.decide(advisor_input(candles_of(o, c)))
    assert decision.action == "buy"
    assert decision.reason.startswith("Buy on oversold bounce: RSI14 0.0 < 30")
    assert decision.confidence == Decimal("1.00")
    # the same green candle in an accelerating fall (histogram < 0): the sell wins
    steps = np.r_[np.full(60, 1.0), np.where(np.arange(60) % 2 == 0, 0.996 - np.arange(60) * 0.0002, 1.002)]
    o, c = path(steps)
    o[-1] = c[-1] * 0.995
    r = strategy._rules(o, c)
    assert r.bounce_buy[-1] and r.trend_sell[-1]
    assert strategy.signals(o, o, o, c, c)[-1] == -1


def test_decide_holds_when_no_rule_fires() -> None:
    c = np.full(100, 50_000_000.0)
    decision = strategy.decide(advisor_input(candles_of(c, c), coin="1"))
    assert decision.action == "hold"
    assert decision.confidence == Decimal("0.50") and decision.fraction == Decimal("0")
    assert decision.reason == (
        "Hold: no rule fires (EMA20 50,000,000 = EMA60 50,000,000 (+0.00 %), MACD histogram +0, RSI14 50.0)."
    )


def test_decide_holds_without_enough_candles() -> None:
    o, c = uptrend(59)
    decision = strategy.decide(advisor_input(candles_of(o, c)))
    assert decision.action == "hold"
    assert decision.confidence == Decimal("0") and decision.fraction == Decimal("0")
    assert decision.reason == "Hold: only 59 hourly candles, the rules need 60."
    assert strategy.decide(advisor_input(())).action == "hold"


def test_decide_agrees_with_signals_on_random_paths() -> None:
    for seed in range(5):
        o, h, lo, c, v = ref.random_ohlcv(seed, 150, vol=0.02)
        candles = candles_of(o, c)
        oo, _h, _l, cc, _v = ind.arrays(candles)
        expected = {1: "buy", -1: "sell", 0: "hold"}[int(strategy.signals(oo, oo, oo, cc, cc)[-1])]
        decision = strategy.decide(advisor_input(candles, coin="1"))
        assert decision.action == expected
        assert Decimal(0) <= decision.confidence <= Decimal(1)
        assert Decimal(0) <= decision.fraction <= Decimal(1)


# --- backtest: hand-checked -------------------------------------------------------------------------------


def test_backtest_by_hand() -> None:
    open_ = [100_000, 100_000, 110_000, 120_000, 90_000, 100_000]
    close = [100_000, 105_000, 99_000, 118_000, 95_000, 104_000]
    signals = [1, 1, -1, -1, 0, 1]
    times = [T0 + timedelta(hours=i) for i in range(6)]
    r = run_backtest(open_, open_, open_, close, signals, starting_krw=2_001_000, times=times)
    # bar 1, buy at 100,000: budget 0.5 × 2,001,000 = 1,000,500 incl. fee -> notional 1,000,500 / 1.0005
    #   = 1,000,000 -> 10 coin, fee 500; KRW left 1,000,500, cost basis 1,000,500
    # bar 2, buy at 110,000: budget 500,250 -> notional 500,000 -> 4.545454545… truncated to 4.54545454
    #   -> notional 499,999.9994, fee 249.9999997; KRW left 500,250.0006003; basis 1,500,749.9993997
    # bar 3, sell all 14.54545454 at 120,000: 1,745,454.5448, fee 872.7272724,
    #   pnl 1,744,581.8175276 - 1,500,749.9993997 = 243,831.8181279; KRW 2,244,831.8181279
    # bar 4: sell signal without coin: nothing. bar 5's buy signal is on the last bar: never fills.
    expected = [
        (1, "buy", 100_000.0, 10.0, 1_000_000.0, 500.0, None),
        (2, "buy", 110_000.0, 4.54545454, 499_999.9994, 249.9999997, None),
        (3, "sell", 120_000.0, 14.54545454, 1_745_454.5448, 872.7272724, 243_831.8181279),
    ]
    assert len(r.trades) == r.n_trades == 3
    for got, want in zip(trade_tuples(r.trades), expected):
        assert got[:2] == want[:2]
        assert got[2:6] == pytest.approx(want[2:6], rel=1e-12)
        assert (got[6] is None) == (want[6] is None)
        if want[6] is not None:
            assert got[6] == pytest.approx(want[6], rel=1e-12)
    assert [t.at for t in r.trades] == [times[1], times[2], times[3]]
    # equity at each close: 2,001,000; 1,000,500 + 10 × 105,000; 500,250.0006003 + 14.54545454 × 99,000; ...
    final = 2_244_831.8181279
    equity = np.array([2_001_000, 2_050_500, 1_940_250.0000603, final, final, final])
    np.testing.assert_allclose(r.equity, equity, rtol=1e-12)
    assert r.final_equity == pytest.approx(2_244_831.8181279, rel=1e-12)
    assert r.total_return == pytest.approx(243_831.8181279 / 2_001_000, rel=1e-9)
    assert r.buy_hold_return == pytest.approx(0.04, rel=1e-12)  # 100,000 -> 104,000
    assert r.max_drawdown == pytest.approx(110_249.9999397 / 2_050_500, rel=1e-9)  # 2,050,500 -> 1,940,250.00…
    assert r.win_rate == 1.0
    rets = equity[1:] / equity[:-1] - 1
    assert r.sharpe == pytest.approx(rets.mean() / rets.std() * np.sqrt(8760), rel=1e-9)


def test_orders_below_the_minimum_are_skipped() -> None:
    prices = [100_000.0] * 4
    # 0.5 × 9,000 = 4,500 KRW: below 5,000
    r = run_backtest(prices, prices, prices, prices, [1, 1, 1, 0], starting_krw=9_000)
    assert r.trades == () and r.n_trades == 0 and r.win_rate is None
    assert r.total_return == 0.0 and r.max_drawdown == 0.0 and r.sharpe == 0.0
    np.testing.assert_array_equal(r.equity, [9_000.0] * 4)
    # a sell worth less than 5,000 KRW stays held: buy ~1,000,000 then sell 0.1 % of it (~1,000 KRW)
    r = run_backtest(prices, prices, prices, prices, [1, -1, -1, 0], buy_fraction=1.0, sell_fraction=0.001)
    assert [t.side for t in r.trades] == ["buy"]
    assert r.trades[0].krw + r.trades[0].fee <= 1_000_000.0


def test_whole_cash_buy_never_overspends() -> None:
    for price in (100_000.0, 97_531.0, 0.123, 1_234_567.0):
        prices = [price] * 3
        r = run_backtest(prices, prices, prices, prices, [1, 0, 0], buy_fraction=1.0)
        (buy,) = r.trades
        assert 0.0 <= 1_000_000.0 - buy.krw - buy.fee < price * 1e-8 * 1.0005 + 1e-6
        assert round(buy.volume, 8) == buy.volume


def test_partial_sells_use_the_average_cost_basis() -> None:
    open_ = [100.0, 100.0, 200.0, 300.0, 300.0]
    signals = [1, -1, -1, 0, 0]
    r = run_backtest(open_, open_, open_, open_, signals, starting_krw=1_000_500, buy_fraction=1.0, sell_fraction=0.5)
    buy, sell1, sell2 = r.trades
    assert buy.volume == 10_000.0 and buy.krw == 1_000_000.0 and buy.fee == 500.0
    # half at 200: 5,000 coin -> 1,000,000 KRW, fee 500; cost of that half 500,250 -> pnl 499,250
    assert (sell1.volume, sell1.krw, sell1.fee) == (5_000.0, 1_000_000.0, 500.0)
    assert sell1.pnl == pytest.approx(499_250.0)
    # half of the rest at 300: 2,500 coin -> 750,000 KRW, fee 375; cost 250,125 -> pnl 499,500
    assert (sell2.volume, sell2.krw, sell2.fee) == (2_500.0, 750_000.0, 375.0)
    assert sell2.pnl == pytest.approx(499_500.0)
    assert r.final_equity == pytest.approx(999_500.0 + 749_625.0 + 2_500.0 * 300.0)


def test_max_order_and_size_order_hook() -> None:
    prices = [100_000.0] * 5
    r = run_backtest(prices, prices, prices, prices, [1, 1, 0, 0, 0], max_order_krw=100_050.0)
    assert [t.krw for t in r.trades] == [100_000.0, 100_000.0]  # 100,050 incl. fee each

    calls: list[tuple[str, float, float, float]] = []

    def size(side: str, free_krw: float, coin: float, price: float) -> float:
        calls.append((side, free_krw, coin, price))
        return 20_010.0 if side == "buy" else coin / 4

    r = run_backtest(prices, prices, prices, prices, [1, -1, 1, 0, 0], size_order=size)
    assert [(t.side, t.volume) for t in r.trades] == [("buy", 0.2), ("sell", 0.05), ("buy", 0.2)]
    assert calls[0] == ("buy", 1_000_000.0, 0.0, 100_000.0)
    assert calls[1][0] == "sell" and calls[1][2] == 0.2

    r = run_backtest(prices, prices, prices, prices, [1, 1, 0, 0, 0], size_order=lambda *a: 0.0)
    assert r.trades == ()


def test_last_bar_signal_never_fills_and_one_bar_works() -> None:
    r = run_backtest([100.0], [100.0], [100.0], [100.0], [1])
    assert r.trades == () and r.equity.tolist() == [1_000_000.0] and r.sharpe == 0.0
    r = run_backtest([100.0, 100.0, 100.0], [100.0] * 3, [100.0] * 3, [100.0] * 3, [0, 0, 1])
    assert r.trades == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"signals": [0, 2, 0]},
        {"close": [1.0, 1.0]},
        {"open_": [1.0, 0.0, 1.0]},
        {"starting_krw": 0.0},
        {"buy_fraction": 1.5},
        {"times": [T0]},
    ],
)
def test_backtest_rejects_bad_input(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"open_": [1.0] * 3, "high": [1.0] * 3, "low": [1.0] * 3, "close": [1.0] * 3}
    args["signals"] = [0, 0, 0]
    args.update(kwargs)
    with pytest.raises(ValueError):
        run_backtest(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        run_backtest([], [], [], [], [])


# --- backtest == the loop reference -----------------------------------------------------------------------


def assert_same_as_reference(r: BacktestResult, want: ref.RefResult) -> None:
    assert trade_tuples(r.trades) == ref_tuples(want.trades)  # identical, not just close
    assert np.allclose(r.equity, want.equity, rtol=1e-9, atol=0)
    assert r.total_return == pytest.approx(want.total_return, rel=1e-9, abs=1e-12)
    assert r.buy_hold_return == pytest.approx(want.buy_hold_return, rel=1e-12)
    assert r.max_drawdown == pytest.approx(want.max_drawdown, rel=1e-9, abs=1e-12)
    assert r.sharpe == pytest.approx(want.sharpe, rel=1e-7, abs=1e-9)
    assert r.win_rate == want.win_rate


@pytest.mark.parametrize("seed", range(6))
def test_backtest_equals_the_loop_reference_on_strategy_signals(seed: int) -> None:
    o, h, lo, c, v = ref.random_ohlcv(seed, 2000, vol=0.008)
    sig = strategy.signals(o, h, lo, c, v)
    r = run_backtest(o, h, lo, c, sig)
    assert r.n_trades > 10 and r.win_rate is not None
    assert_same_as_reference(r, ref.backtest(o.tolist(), c.tolist(), sig.tolist()))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"buy_fraction": 1.0, "sell_fraction": 0.5},
        {"buy_fraction": 0.3, "max_order_krw": 120_000.0, "fee_rate": 0.0025},
        {"starting_krw": 20_000.0, "sell_fraction": 0.7},
    ],
)
def test_backtest_equals_the_loop_reference_on_random_signals(seed: int, params: dict[str, float]) -> None:
    rng = np.random.default_rng(seed)
    start = [50_000_000.0, 0.35, 2_000.0][seed % 3]
    o, h, lo, c, _v = ref.random_ohlcv(seed, 600, start=start, vol=0.02)
    sig = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=600, p=[0.25, 0.5, 0.25])
    r = run_backtest(o, h, lo, c, sig, **params)  # type: ignore[arg-type]
    assert_same_as_reference(r, ref.backtest(o.tolist(), c.tolist(), sig.tolist(), **params))
    # bookkeeping never goes negative
    assert (r.equity > 0).all()
    assert all(t.volume > 0 and t.krw >= 5000.0 for t in r.trades)


# --- issue 10: the buy volume is the exact floor of KRW / price ---------------------------------------------


def _exact_units(krw: Decimal, price: Decimal) -> int:
    """floor(krw / price × 1e8) in integers: no rounding anywhere."""
    kn, kd = krw.as_integer_ratio()
    pn, pd = price.as_integer_ratio()
    return (kn * pd * 100_000_000) // (kd * pn)


def _bought_units(krws: list[Decimal], price: float, fee_rate: float = 0.0005) -> list[int]:
    """Buy each of ``krws`` (notional KRW) at ``price``, sized the way the risk-gate sizer sends them (the KRW
    plus the fee, as a float); the volumes the backtest filled, in 1e-8 coin."""
    n = len(krws) + 1
    amounts = iter(krws)
    r = run_backtest([price] * n, [price] * n, [price] * n, [price] * n, [1] * (n - 1) + [0], starting_krw=1e15,
                     fee_rate=fee_rate, min_order_krw=0.0,
                     size_order=lambda side, cash, coin, p: float(next(amounts)) * (1.0 + fee_rate))
    assert len(r.trades) == len(krws)
    return [round(t.volume * 100_000_000) for t in r.trades]


def test_buy_volume_is_the_exact_floor_of_krw_over_price() -> None:
    # The example of the independent check: 50,337 KRW at 94,000,000 KRW is exactly 0.0005355 coin; float
    # division says 53,549.99999999999 satoshi, which floored to 53,549.
    assert _bought_units([Decimal(50337)], 94_000_000.0) == [53_550]
    # The default sizer (half of the free KRW, fee included) gets the same volume.
    r = run_backtest([94_000_000.0] * 2, [94_000_000.0] * 2, [94_000_000.0] * 2, [94_000_000.0] * 2, [1, 0],
                     starting_krw=100_724.337, min_order_krw=0.0)
    assert round(r.trades[0].volume * 100_000_000) == 53_550 and r.trades[0].volume == 0.0005355

    # A sweep: tick-aligned prices from 0.5 KRW to 150,000,000 KRW, whole-KRW amounts (what the gate gives),
    # including every amount that buys a whole number of satoshi (where float division is most often short).
    rng = np.random.default_rng(10)
    prices = [Decimal("0.5"), Decimal("3.217"), Decimal("97.15"), Decimal("1234.5"), Decimal(94_000_000),
              Decimal(150_000_000), Decimal(137_555_000), Decimal(61_234_000), Decimal(3_456_500), Decimal(488_650)]
    prices += [Decimal(int(x)) * 1000 for x in rng.integers(5_000, 150_000, size=20)]
    float_short = 0
    for price in prices:
        pn, pd = price.as_integer_ratio()
        step = pn // math.gcd(pn, 100_000_000 * pd)  # amounts that are a multiple of this buy whole satoshi
        exact_hits = [Decimal(step * k) for k in range(1, 400) if 5_000 <= step * k <= 5_000_000]
        randoms = [Decimal(int(x)) for x in rng.integers(5_000, 2_000_000, size=1500)]
        krws = exact_hits + randoms
        want = [_exact_units(k, price) for k in krws]
        assert _bought_units(krws, float(price)) == want, price
        float_short += sum(math.floor(float(k) * (1.0 + 0.0005) / (1.0 + 0.0005) / float(price) * 100_000_000) != w
                           for k, w in zip(krws, want))
    assert float_short > 0  # the sweep does contain cases the plain float floor got wrong
