"""``tradebot backtest``'s core: the live rule strategy and the live risk gate replayed over real hourly candles.

How this differs from :mod:`tradebot.market.engine`: the engine is the pure array simulation (signals and
OHLC floats in, fills, equity and metrics out; it knows neither candles nor the risk gate). This package
feeds it real candles through the live risk gate and reports on them:

* :mod:`~tradebot.backtest.csv` — candles from a CSV file, read into float columns (NumPy only when read);
* :mod:`~tradebot.backtest.candles` — candles from the exchange through the ``candles`` cache, and the hour
  arithmetic (:data:`~tradebot.backtest.candles.HOUR`, ``WARMUP_SLACK``, ``floor_hour``);
* :mod:`~tradebot.backtest.simulate` — the gate adaptor, :func:`~tradebot.backtest.simulate.simulate`,
  ``backtest_candles``/``backtest_csv`` and the report, with the fill assumptions;
* :mod:`~tradebot.backtest.replay` — recorded decisions through the same gate and fills: the counterfactual
  ledgers of ``tradebot advisors report``, resumable from a checkpoint;
* :mod:`~tradebot.backtest.compare` — ``--compare-live``: recorded decisions and fills against the strategy;
* :mod:`~tradebot.backtest.plot` — ``--plot``: the equity curve as a PNG (optional matplotlib).

Everything here takes already-built parts (a database connection, an :class:`~tradebot.exchange.base.Exchange`,
:class:`~tradebot.risk.RiskLimits`) as arguments: reading settings and building those is the application
layer's job (:mod:`tradebot.app.backtest`). Heavy modules (NumPy, matplotlib) are imported inside functions,
so that importing any module of this package stays cheap.
"""
