"""Upbit's wire format as the simulator writes and reads it.

Exact decimal arithmetic, the string forms of exchange numbers and times, JSON with bare decimal numbers,
JWT signing (``sign_jwt``), Upbit's error responses and the request parameters in the order received.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any
from urllib.parse import unquote, urlencode

# Upbit writes volumes with at most 8 decimals (a rule of the exchange, and the grid of every volume here).
VOLUME_PLACES = 8

KST = timezone(timedelta(hours=9))
HOUR = timedelta(hours=1)

_Q8 = Decimal(1).scaleb(-VOLUME_PLACES)
# Money math is exact: 28 digits (the default) could round a product of two long decimals.
_EXACT = Context(prec=100, rounding=ROUND_HALF_EVEN)


def _s(value: Decimal) -> str:
    """Upbit's string form of an exchange number: plain, no exponent, trailing zeros dropped, ``"5000.0"``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("", "-0"):
        text = "0"
    return text if "." in text else text + ".0"


def _utc_str(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _kst_str(at: datetime) -> str:
    return at.astimezone(KST).strftime("%Y-%m-%dT%H:%M:%S")


def _kst_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, KST).isoformat(timespec="seconds")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _hour_floor(epoch: float) -> datetime:
    at = datetime.fromtimestamp(epoch, UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def _parse_time(text: str) -> datetime:
    """Parse Upbit's ``to``/``start_time`` forms: ISO with ``T`` or space, ``Z`` or offset, naive = UTC, or ms."""
    text = text.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    # A literal "+" in a query string arrives as a space: "…T00:00:00 09:00".
    text = re.sub(r" (\d\d:\d\d)$", r"+\1", text)
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


_MARKER = "\x00num" + uuidlib.uuid4().hex + ":"
_MARKER_RE = re.compile(r'"\\u0000num' + _MARKER[4:] + r'(-?[0-9.]+)"')


def _dumps(payload: Any) -> bytes:
    """JSON with every ``Decimal`` written as a bare number (quotation responses carry doubles on Upbit).

    ``json`` cannot write a Decimal as a number without going through float, so Decimals are first turned
    into marked strings and the quotes are stripped afterwards: the digits on the wire are exact.
    """

    def mark(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            # Integral prices get ".0" like the doubles Upbit sends (130000000.0).
            return _MARKER + _s(obj)
        if isinstance(obj, dict):
            return {k: mark(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [mark(v) for v in obj]
        return obj

    text = json.dumps(mark(payload), ensure_ascii=False, separators=(",", ":"))
    return _MARKER_RE.sub(r"\1", text).encode("utf-8")


def _canonical_query(params: Mapping[str, Any] | None) -> str:
    """The string Upbit hashes: ``unquote(urlencode(params, doseq=True))`` (``key[]=a&key[]=b`` for arrays)."""
    if not params:
        return ""
    return unquote(urlencode(params, doseq=True))


def sign_jwt(
    access_key: str,
    secret_key: str,
    params: Mapping[str, Any] | None = None,
    *,
    nonce: str | None = None,
) -> str:
    """A JWT exactly as Upbit expects it (HS256; ``query_hash`` = SHA512 of the url-encoded parameters).

    ``params`` must be in the order they are sent; list values are encoded as repeated keys, so pass array
    parameters under their bracketed name (``{"states[]": ["done", "cancel"]}``). ``nonce`` defaults to a
    fresh uuid4 (pass one explicitly only to test nonce reuse).
    """
    import jwt  # lazy: PyJWT pulls in more than a quick `import` of this module should pay for

    payload: dict[str, Any] = {"access_key": access_key, "nonce": nonce or str(uuidlib.uuid4())}
    if params:
        query = _canonical_query(params).encode("utf-8")
        payload["query_hash"] = hashlib.sha512(query).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    return jwt.encode(payload, secret_key, algorithm="HS256")


# ------------------------------------------------------------------------------------------ errors, params


class _ApiError(Exception):
    """An Upbit error response: ``{"error": {"name": ..., "message": ...}}``."""

    def __init__(self, status: int, name: str | int, message: str) -> None:
        super().__init__(f"{status} {name}: {message}")
        self.status = status
        self.name = name
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"error": {"name": self.name, "message": self.message}}


def _not_found_market() -> _ApiError:
    # Upbit's real answer for an unknown market code: HTTP 404 with an *integer* name.
    return _ApiError(404, 404, "Code not found")


def _validation(message: str) -> _ApiError:
    return _ApiError(400, "validation_error", message)


class _Params:
    """Request parameters in the order received, from the query string and the (form or JSON) body."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, key: str) -> str | None:
        for k, v in self.pairs:
            if k == key:
                return v
        return None

    def getlist(self, key: str) -> list[str]:
        """Values of ``key[]`` (or a repeated or comma-separated ``key``)."""
        values = [v for k, v in self.pairs if k == key + "[]"]
        if not values:
            values = [part for k, v in self.pairs if k == key for part in v.split(",") if part]
        return values


@dataclass(frozen=True)
class _Request:
    params: _Params
    hash_candidates: tuple[str, ...]
