"""URLs in the settings: checking them (``check_url``, ``validate_database_url``) and hiding their passwords
(``mask_url_password`` for ``config show``, ``url_passwords`` for scrubbing crash reports).

Messages never quote a database URL: it may hold a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from tradebot.errors import ConfigError


def _password_spans(url: str) -> Iterator[tuple[int, int]]:
    """Where a password sits in ``url``, as libpq reads it and as urllib reads it (they disagree on a raw
    ``?`` or ``@`` in the userinfo, so both are masked): the userinfo's ``user:password@``, and the value
    of every ``password``/``sslpassword`` query parameter, whatever its case, repetition or percent-encoding
    (libpq decodes ``pass%77ord``)."""
    head, sep, rest = url.partition("://")
    if not sep:  # keyword/value form: host=... password=...
        for m in re.finditer(r"(?i)\b(?:ssl)?password\s*=\s*('(?:\\.|[^'\\])*'?|\S*)", url):
            yield m.start(1), m.end(1)
        return
    base = len(head) + len(sep)
    # libpq: the userinfo ends at the first '@' seen before any '/'.
    end = next((i for i, c in enumerate(rest) if c in "@/"), len(rest))
    if end < len(rest) and rest[end] == "@" and ":" in rest[:end]:
        yield base + rest.index(":") + 1, base + end
    # urllib: the netloc ends at the first of '/?#', the userinfo at its last '@'.
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    at = netloc.rfind("@")
    if at >= 0 and ":" in netloc[:at]:
        yield base + netloc.index(":") + 1, base + at
    for m in re.finditer(r"[?&]([^=&?]*)=", rest):
        if unquote(m.group(1)).strip().lower() in ("password", "sslpassword"):
            stop = rest.find("&", m.end())
            yield base + m.end(), base + (len(rest) if stop < 0 else stop)


def mask_url_password(url: str) -> str:
    """``url`` with every password libpq would accept masked: ``postgresql://user:secret@host/db`` →
    ``postgresql://user:****@host/db``, ``...?password=secret`` → ``...?password=****`` (see
    :func:`_password_spans`)."""
    merged: list[list[int]] = []
    for a, b in sorted(s for s in _password_spans(url) if s[1] > s[0]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, pos = [], 0
    for a, b in merged:
        out += [url[pos:a], "****"]
        pos = b
    return "".join(out) + url[pos:]


def url_passwords(url: str) -> list[str]:
    """The password texts in ``url`` (raw and percent-decoded), for scrubbing them from crash reports."""
    found = [url[a:b] for a, b in _password_spans(url) if b > a]
    return found + [unquote(t) for t in found]


def check_url(value: str, name: str, example: str) -> str:
    """An http(s) URL with a host and a port in 1..65535, or a ConfigError naming ``name``."""
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ConfigError(name, f"must be an http(s) URL like {example} without spaces or control characters; got {value!r}")
    if "[" in value.split("//", 1)[-1].split("/", 1)[0] or "]" in value.split("//", 1)[-1].split("/", 1)[0]:
        bad_brackets = "has a malformed IPv6 address (write it in brackets: http://[::1]:8765)"
    else:
        bad_brackets = "has a malformed host"
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ConfigError(name, f"{bad_brackets}; got {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, f"must be an http(s) URL like {example}; got {value!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(name, f"has an invalid port (it must be a number from 1 to 65535); got {value!r}") from None
    if not host:
        raise ConfigError(name, f"has no host; write it like {example}; got {value!r}")
    port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if (port is not None and not 1 <= port <= 65535) or not re.fullmatch(r"[0-9]*", port_text):
        raise ConfigError(name, f"has an invalid port (it must be a number from 1 to 65535); got {value!r}")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ConfigError(name, f"has an invalid host name {host!r}; got {value!r}") from None
    return value


def validate_database_url(url: str) -> str:
    """Check that ``url`` is a PostgreSQL URL psycopg can use (without connecting). Messages never quote
    the URL (it may hold a password)."""
    template = "write postgresql://user:password@host:5432/dbname"
    if not url.isprintable():
        raise ConfigError("DATABASE_URL", f"contains control characters; {template}")
    try:
        parts = urlsplit(url)
    except ValueError:  # unbalanced brackets around an IPv6 address
        raise ConfigError("DATABASE_URL", f"has a malformed host (an IPv6 address goes in brackets: [::1]); {template}") from None
    if parts.scheme.startswith("postgresql+") or parts.scheme.startswith("postgres+"):
        raise ConfigError("DATABASE_URL", f"uses the SQLAlchemy scheme {parts.scheme!r}; {template}")
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL", "must look like postgresql://user:password@host:5432/dbname")
    try:
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError("DATABASE_URL", f"has an invalid port (a number from 1 to 65535); {template}")
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except (psycopg.Error, UnicodeError, ValueError):
        raise ConfigError("DATABASE_URL", f"is not a valid PostgreSQL connection URL; {template}") from None
    return url
