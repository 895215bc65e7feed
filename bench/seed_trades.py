"""Seed a database with N completed trades (default 1,000,000) for the history benchmarks.

Usage: python bench/seed_trades.py DATABASE_URL [N]

Rows alternate realistic buys and sells of three markets (KRW-BTC, KRW-ETH, KRW-XRP: one row in three each,
issue 12) in paper and live mode over several years, written with COPY (a few seconds per million rows). The
schema must exist (`tradebot init-db`).
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg


def seed(url: str, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    markets = ("KRW-BTC", "KRW-ETH", "KRW-XRP")
    prices = {"KRW-BTC": Decimal(50_000_000), "KRW-ETH": Decimal(3_000_000), "KRW-XRP": Decimal(600)}
    floors = {"KRW-BTC": Decimal(1_000_000), "KRW-ETH": Decimal(100_000), "KRW-XRP": Decimal(10)}
    ticks = {"KRW-BTC": Decimal(1000), "KRW-ETH": Decimal(1000), "KRW-XRP": Decimal("0.1")}
    held = {(m, mode): Decimal(0) for m in markets for mode in ("paper", "live")}
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(
            "COPY trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee, "
            "requested_krw, requested_volume, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                mode = "live" if i % 4 == 0 else "paper"
                market = markets[i % 3]
                price = max(floors[market], prices[market] * Decimal(1 + rng.gauss(0, 0.004)).quantize(Decimal("0.0001")))
                price = prices[market] = price.quantize(ticks[market])
                at = start + timedelta(minutes=3 * i)
                if held[(market, mode)] > 0 and rng.random() < 0.45:
                    side, amount = "sell", held[(market, mode)]
                    rkrw, rvol = None, amount
                else:
                    side = "buy"
                    krw = Decimal(rng.randrange(5000, 50000))
                    amount = (krw / price).quantize(Decimal("0.00000001"))
                    rkrw, rvol = krw, None
                if amount <= 0:
                    continue
                held[(market, mode)] = held[(market, mode)] + amount if side == "buy" else Decimal(0)
                total = price * amount
                fee = total * Decimal("0.0005")
                copy.write_row((f"tb-seed-{i:09d}", f"seed-{i:09d}", market, side, mode, "completed", price, amount,
                                total, fee, rkrw, rvol, at, at))
        conn.execute("ANALYZE trades")


if __name__ == "__main__":
    seed(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
