"""tradebot: an hourly Upbit (KRW market) trading bot, paper by default.

Importing this package stays cheap on purpose: heavy libraries (anthropic, pyupbit/pandas, psycopg) are
imported by the code paths that use them.
"""

__version__ = "0.1.0"
