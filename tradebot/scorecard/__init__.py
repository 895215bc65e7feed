"""The advisor scorecard (issue 13): scoring each decision by what the price did after it, and (in later
modules) the counterfactual ledgers and the report. Pure functions over plain values: the store reads and
writes, :mod:`tradebot.app.advisors` wires them."""
