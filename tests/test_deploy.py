"""The deployment files: the Grafana dashboard and the Prometheus alerting rules.

* every metric name in a PromQL expression (dashboard targets, rule exprs) is one the bot really writes
  (``tradebot.metrics.write_metrics`` output, parsed) or one of node_exporter's textfile metrics;
* every SQL of the dashboard references only tables and columns of ``sql/schema.sql``, filters by the
  ``$ticker``/``$mode`` variables, and runs on a real PostgreSQL with the current schema (Grafana macros
  expanded as Grafana does); the P&L query agrees with ``tradebot.pnl``;
* the dashboard is an importable Grafana JSON model; every rule has ``for``, a severity and annotations;
* ``promtool check rules`` when promtool is on PATH (or ``PROMTOOL`` names it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is in the `test` extra")

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "tradebot.json"
RULES = ROOT / "deploy" / "prometheus" / "tradebot.rules.yml"
SCHEMA = ROOT / "sql" / "schema.sql"

# node_exporter's own textfile-collector metrics (operations.md); everything else must be written by the bot.
NODE_EXPORTER_METRICS = {"node_textfile_mtime_seconds", "node_textfile_scrape_error"}

PG_INPUT, PROM_INPUT = "DS_TRADEBOT_PG", "DS_PROMETHEUS"
PG_PLUGIN_IDS = {"grafana-postgresql-datasource", "postgres"}  # the id before Grafana 10.2.3 is an alias


# ------------------------------------------------------------------------------------------------ loading
@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def _all_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def _targets(dash: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every target of the Prometheus ("prom") or PostgreSQL ("pg") data source."""
    want = "${%s}" % (PROM_INPUT if kind == "prom" else PG_INPUT)
    out = []
    for p in _all_panels(dash):
        for t in p.get("targets", []):
            uid = (t.get("datasource") or p.get("datasource") or {}).get("uid")
            if uid == want:
                out.append((p["title"], t))
    return out


def _rule_list(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rules["groups"] for r in g["rules"]]


# ---------------------------------------------------------------------------- what the bot really writes
def _fake_value(annotation: str) -> Any:
    if "Decimal" in annotation:
        return Decimal("1.5")
    if "bool" in annotation:
        return True
    if "float" in annotation:
        return 1.5
    if "int" in annotation:
        return 1
    return "x"


@pytest.fixture(scope="module")
def written_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Sample names in the files ``write_metrics`` writes for a successful run with every optional field set."""
    from prometheus_client.parser import text_string_to_metric_families

    from tradebot import metrics

    base = {"market": "KRW-BTC", "mode": "paper", "finished_at": 1_700_000_000.0, "success": True, "duration_s": 12.5}
    kwargs = {f.name: base[f.name] if f.name in base else _fake_value(str(f.type))
              for f in dataclasses.fields(metrics.RunInfo)}
    run = metrics.RunInfo(**kwargs)
    totals: dict[str, list[tuple[Any, ...]]] = defaultdict(list, {
        "decisions_by_action": [("KRW-BTC", "paper", "buy", 3), ("KRW-BTC", "paper", "hold", 20)],
        "filtered_decisions": [("KRW-BTC", "paper", 2)],
        "trades_by_side_status": [("KRW-BTC", "paper", "buy", "completed", 3)],
        "fees": [("KRW-BTC", "paper", Decimal("12.5"))],
        "llm_usage": [("KRW-BTC", "paper", 1000, 200, 50, 10, Decimal("0.12"))],
        "errors": [("KRW-BTC", "paper", 1)],
        "advisor_decisions": [("KRW-BTC", "paper", "claude", "acting", 3), ("KRW-BTC", "paper", "rules", "shadow", 3)],
        "advisor_hits_24h": [("KRW-BTC", "paper", "claude", 3, 2)],
        "llm_spend_now": [(Decimal("0.5"), Decimal("4"))],
        "budget_fallbacks_today": [("KRW-BTC", "paper", 1)],
        "llm_caps": [(Decimal("1"), Decimal("20"))],
        "telegram_ignored": [("other chat", 2)],
        "telegram_commands": [("/status", "done", 3)],
    })
    directory = tmp_path_factory.mktemp("metrics")
    portfolio = metrics.PortfolioInfo(mode="paper", krw_free=Decimal(900000), exposure_krw=Decimal(100000),
                                      open_positions=2, equity_krw=Decimal(1000000), markets=3, markets_failed=0,
                                      max_exposure_krw=Decimal(600000), max_open_positions=3,
                                      daily_realized_loss_krw=Decimal(0), daily_loss_limit_krw=Decimal(50000))
    paths = metrics.write_metrics(directory, run, totals, portfolio)
    assert {p.name for p in paths} == {metrics.MAIN_FILE, metrics.SUCCESS_FILE}
    names: set[str] = set()
    for path in paths:
        for family in text_string_to_metric_families(path.read_text()):
            names.update(s.name for s in family.samples)
            # A family with no sample yet (e.g. no errors recorded) is still written: count its name.
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def test_written_names_sanity(written_names: set[str]) -> None:
    # If this fails, the fixture above no longer exercises write_metrics the way the bot does.
    assert {"tradebot_last_success_timestamp_seconds", "tradebot_last_run_success", "tradebot_decisions_total",
            "tradebot_llm_tokens_total", "tradebot_equity_krw"} <= written_names
    assert not any(n.endswith("_created") for n in written_names)


# ------------------------------------------------------------------------------------ PromQL metric names
_PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                    "group_right", "inf", "nan", "atan2", "start", "end"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?!\s*\()(?=\s*(?:[{\[)+\-*/%^=!<>,]|\s|$))")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers followed by ``{``, ``[``, ``)``, whitespace, an
    operator or the end, after removing strings, matchers, ranges and label lists; functions (followed by
    ``(``) and keywords are not metric names."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", "{}", s)
    s = re.sub(r"\[[^\]]*\]", "[]", s)
    s = _LABEL_LIST.sub(" ", s)
    s = re.sub(r"\$\{?\w+\}?", "1", s)  # Grafana variables outside strings (e.g. $__range)
    return {m for m in _IDENT.findall(s) if m.lower() not in _PROMQL_KEYWORDS}


def test_promql_extractor() -> None:
    expr = ('sum by (ticker, mode) (increase(tradebot_trades_total{side="buy", status=~"$s"}[1d])) '
            '/ on(ticker) group_left(mode) tradebot_x_total offset 1h and time() - '
            'tradebot_y > 2*3600 + 600 or absent(tradebot_z) unless node_a{file=~".*tradebot\\\\.prom"}')
    assert promql_metric_names(expr) == {"tradebot_trades_total", "tradebot_x_total", "tradebot_y", "tradebot_z",
                                         "node_a"}


def _prom_exprs(dashboard: dict[str, Any], rules: dict[str, Any], source: str) -> list[tuple[str, str]]:
    if source == "dashboard":
        return [(title, t["expr"]) for title, t in _targets(dashboard, "prom")]
    return [(r["alert"], str(r["expr"])) for r in _rule_list(rules)]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_promql_uses_only_written_metrics(source: str, dashboard: dict[str, Any], rules: dict[str, Any],
                                          written_names: set[str]) -> None:
    exprs = _prom_exprs(dashboard, rules, source)
    assert exprs, f"no PromQL expressions found in the {source}"
    allowed = written_names | NODE_EXPORTER_METRICS
    unknown = {}
    for where, expr in exprs:
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric name found in {expr!r}"
        if missing := names - allowed:
            unknown[where] = sorted(missing)
    assert not unknown, f"metrics not written by tradebot/metrics.py (nor node_exporter's textfile ones): {unknown}"


# ---------------------------------------------------------------------------------------- the dashboard
def test_dashboard_model(dashboard: dict[str, Any]) -> None:
    d = dashboard
    assert d["title"] and d["uid"] and len(d["uid"]) <= 40
    assert 36 <= d["schemaVersion"] <= 41
    assert d["id"] is None
    inputs = {i["name"]: i for i in d["__inputs"]}
    assert set(inputs) == {PG_INPUT, PROM_INPUT}
    assert all(i["type"] == "datasource" for i in inputs.values())
    assert inputs[PG_INPUT]["pluginId"] in PG_PLUGIN_IDS and inputs[PROM_INPUT]["pluginId"] == "prometheus"
    required = {(r["type"], r["id"]) for r in d["__requires"]}
    assert {("grafana", "grafana"), ("datasource", inputs[PG_INPUT]["pluginId"]), ("datasource", "prometheus")} <= required
    panel_types = {p["type"] for p in _all_panels(d) if p["type"] != "row"}
    assert {(("panel", t)) for t in panel_types} <= required

    plugin_of = {"${%s}" % n: i["pluginId"] for n, i in inputs.items()}
    ids = [p["id"] for p in _all_panels(d)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in _all_panels(d):
        assert p["title"]
        if p["type"] == "row":
            continue
        assert p.get("description"), f"{p['title']}: no description"
        assert p.get("targets"), f"{p['title']}: no targets"
        for t in p["targets"]:
            ds = t.get("datasource") or p["datasource"]
            assert ds["uid"] in plugin_of, f"{p['title']}: data source {ds} is not one of __inputs"
            assert ds["type"] == plugin_of[ds["uid"]]
            assert t["refId"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids))


def test_dashboard_grid(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard["panels"]:
        gp = p["gridPos"]
        assert gp["w"] >= 1 and gp["h"] >= 1 and 0 <= gp["x"] and gp["x"] + gp["w"] <= 24 and gp["y"] >= 0, p["title"]
        for x in range(gp["x"], gp["x"] + gp["w"]):
            for y in range(gp["y"], gp["y"] + gp["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"ticker", "mode"}
    for v in variables.values():
        assert v["type"] == "query" and v["datasource"]["uid"] == "${%s}" % PG_INPUT
        assert v["multi"] and v["includeAll"]
        assert re.search(r"\bFROM\s+(trades|decisions)\b", v["query"], re.I)


def test_dashboard_panels_present(dashboard: dict[str, Any]) -> None:
    """The panels issue 6 asks for (by what they query, not by title)."""
    prom = " ".join(t["expr"] for _, t in _targets(dashboard, "prom"))
    for needle in ("time() - tradebot_last_success_timestamp_seconds", "tradebot_last_run_success",
                   "tradebot_last_run_duration_seconds", "tradebot_equity_krw", "tradebot_position_volume",
                   "increase(tradebot_decisions_total", "tradebot_trades_total", "tradebot_llm_tokens_total",
                   "tradebot_llm_cost_usd_total", "tradebot_cycle_errors_total",
                   "time() - node_textfile_mtime_seconds", "node_textfile_scrape_error"):
        assert needle in prom, needle
    sqls = {title: t["rawSql"] for title, t in _targets(dashboard, "pg")}
    assert any("trade_id" in s and "LIMIT" in s for s in sqls.values()), "recent trades table"
    assert any("RECURSIVE" in s and "matched_cost" in s for s in sqls.values()), "average-cost P&L"
    assert any("sum(fee)" in s for s in sqls.values()), "fees per day"
    assert any("sum(cost_usd)" in s for s in sqls.values()), "LLM cost per day"
    assert any("FROM decisions" in s and "action" in s for s in sqls.values()), "decisions by action"
    assert any("side" in s and "status" in s and "count(*)" in s for s in sqls.values()), "trades by side/status"


def test_dashboard_prometheus_targets_filter_by_variables(dashboard: dict[str, Any]) -> None:
    for title, t in _targets(dashboard, "prom"):
        names = promql_metric_names(t["expr"])
        if names and all(n.startswith("tradebot_portfolio_") for n in names):  # one series per mode, no ticker
            assert 'mode=~"$mode"' in t["expr"], title
        elif names and all(n.startswith(("tradebot_llm_spend_", "tradebot_llm_budget_", "tradebot_telegram_"))
                           for n in names):
            pass  # the model's bill, the Telegram poller: account-wide series (every market and mode), no labels
        elif any(n.startswith("tradebot_") for n in names):
            assert 'ticker=~"$ticker"' in t["expr"] and 'mode=~"$mode"' in t["expr"], title


# ------------------------------------------------------------------------------------- SQL vs the schema
_COLUMN_LINE = re.compile(r"^\s{4}([a-z_][a-z0-9_]*)\s+(bigint|integer|smallint|text|numeric|boolean|timestamptz|"
                          r"jsonb|json|date|double precision|real)\b", re.M)


def schema_columns() -> dict[str, set[str]]:
    tables: dict[str, set[str]] = {}
    text = SCHEMA.read_text(encoding="utf-8")
    for m in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", text, re.S):
        tables[m.group(1)] = {c for c, _ in _COLUMN_LINE.findall(m.group(2) + "\n")}
    return tables


def test_schema_parser() -> None:
    tables = schema_columns()
    assert {"trades", "decisions"} <= set(tables)
    assert {"symbol", "side", "status", "fee", "trade_id", "created_at", "decision_id"} <= tables["trades"]
    assert {"ticker", "action", "cost_usd", "error", "filtered", "created_at"} <= tables["decisions"]
    assert "constraint" not in {c.lower() for cols in tables.values() for c in cols}


# SQL words (lower case) that are neither tables nor columns; extend when a query needs a new one.
_SQL_WORDS = set("""
select from where and or not in as group by order desc asc limit offset with recursive union all join inner left
right outer full on cross lateral case when then else end null is distinct over partition rows range between
having exists true false filter coalesce nullif least greatest sum count avg min max row_number rank lag lead
floor ceil round abs extract epoch date_trunc numeric bigint integer int text timestamptz timestamp boolean
interval day hour
""".split())


def _sql_identifiers(sql: str) -> tuple[str, set[str], set[str], set[str], list[tuple[str, str]]]:
    """(cleaned sql, referenced base tables, CTE names, aliases, qualified references)."""
    s = re.sub(r"--[^\n]*", " ", sql)
    s = re.sub(r"'(?:''|[^'])*'", " ", s)
    s = re.sub(r'"(?:""|[^"])*"', " ", s)
    s = re.sub(r"\$\w+", " ", s)  # Grafana macros keep their arguments; variables vanish
    ctes = {m.lower() for m in re.findall(r"\b(\w+)\s+AS\s*\(", s, re.I)}
    aliases = {m.lower() for m in re.findall(r"\bAS\s+(\w+)", s, re.I)} - ctes
    tables = set()
    for name, alias in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", s, re.I):
        if name.lower() in _SQL_WORDS:  # FROM (subquery), JOIN LATERAL (...)
            continue
        if name.lower() not in ctes:
            tables.add(name.lower())
        if alias and alias.lower() not in _SQL_WORDS:
            aliases.add(alias.lower())
    qualified = [(q.lower(), c.lower()) for q, c in re.findall(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)", s)]
    return s, tables, ctes, aliases, qualified


def _dashboard_sqls(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(title, t["rawSql"]) for title, t in _targets(dashboard, "pg")]
    out += [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]
            if v["datasource"]["uid"] == "${%s}" % PG_INPUT]
    return out


def test_dashboard_sql_matches_schema(dashboard: dict[str, Any]) -> None:
    schema = schema_columns()
    sqls = _dashboard_sqls(dashboard)
    assert len(sqls) >= 8
    problems = []
    for where, sql in sqls:
        s, tables, ctes, aliases, qualified = _sql_identifiers(sql)
        if unknown_tables := tables - set(schema):
            problems.append(f"{where}: unknown tables {sorted(unknown_tables)}")
            continue
        if not tables <= {"trades", "decisions"}:
            problems.append(f"{where}: reads {sorted(tables)}; the dashboard reads trades and decisions only")
        columns = set().union(*(schema[t] for t in tables))
        allowed = _SQL_WORDS | tables | ctes | aliases | columns
        for qualifier, column in qualified:
            if qualifier.isdigit():
                continue
            if qualifier not in aliases | ctes | tables:
                problems.append(f"{where}: unknown qualifier {qualifier!r}")
            if column not in columns | aliases:
                problems.append(f"{where}: {qualifier}.{column} is not a column of {sorted(tables)}")
        words = {w.lower() for w in re.findall(r"\b[A-Za-z_]\w*\b", s)}
        if unknown := words - allowed:
            problems.append(f"{where}: not a column of {sorted(tables)} (nor a known SQL word): {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def test_dashboard_sql_filters_by_variables(dashboard: dict[str, Any]) -> None:
    for title, t in _targets(dashboard, "pg"):
        sql = t["rawSql"]
        assert re.search(r"\b(symbol|ticker) IN \(\$ticker\)", sql), title
        assert "mode IN ($mode)" in sql, title
        assert "$__timeFilter(created_at)" in sql, title
        assert t["format"] in {"table", "time_series"}
        if t["format"] == "time_series":
            assert re.search(r"ORDER BY 1\b", sql), f"{title}: time series must be sorted by time"


# ------------------------------------------------------------------------- SQL on a real PostgreSQL
FROM_TS, TO_TS = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
_INTERVALS = {"1h": 3600, "1d": 86400}


def expand_grafana_sql(sql: str, tickers: list[str], modes: list[str], *, time_from: str = FROM_TS,
                       time_to: str = TO_TS) -> str:
    """Expand the macros and variables the way Grafana's PostgreSQL data source does."""
    def group_alias(m: re.Match[str]) -> str:
        col, interval = m.group(1).strip(), m.group(2)
        seconds = _INTERVALS[interval]
        return f'floor(extract(epoch from {col})/{seconds})*{seconds} AS "time"'

    s = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*'(\w+)'\)", group_alias, sql)
    s = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN '{time_from}' AND '{time_to}'", s)
    s = s.replace("$__timeFrom()", f"'{time_from}'").replace("$__timeTo()", f"'{time_to}'")
    s = s.replace("$ticker", ",".join(f"'{t}'" for t in tickers)).replace("$mode", ",".join(f"'{m}'" for m in modes))
    assert "$" not in s, f"unexpanded Grafana macro or variable in {s!r}"
    return s


_TRADE_SQL = """INSERT INTO trades (client_order_id, trade_id, symbol, side, mode, status, price, amount, total, fee,
    requested_krw, requested_volume, created_at, error)
VALUES (%(coid)s, %(tid)s, %(symbol)s, %(side)s, %(mode)s, %(status)s, %(price)s, %(amount)s, %(total)s, %(fee)s,
    %(rkrw)s, %(rvol)s, %(at)s, %(error)s)"""


def _seed(conn: Any, rng: random.Random) -> None:
    """Completed buys and sells (some selling more than was bought), a failed order and decisions."""
    start = datetime(2024, 3, 1, tzinfo=UTC)
    n = 0
    for symbol, mode in (("KRW-BTC", "paper"), ("KRW-ETH", "paper"), ("KRW-BTC", "live")):
        volume = Decimal(0)
        at = start
        for i in range(40):
            at += timedelta(hours=rng.choice([0, 1, 1, 3]))  # equal times too: ordered by id
            side = "buy" if volume == 0 or rng.random() < 0.5 else "sell"
            price = Decimal(rng.randint(50_000, 150_000)) * 1000
            if side == "buy":
                amount = Decimal(rng.randint(1, 5_000)) / Decimal(100_000)
                volume += amount
            else:
                amount = (volume * Decimal(rng.choice([1, 1, 2, 3])) / Decimal(2)).quantize(Decimal("1e-8"))
                volume = max(volume - amount, Decimal(0))
                amount = max(amount, Decimal("1e-8"))
            total = (price * amount).quantize(Decimal("0.0001"))
            fee = (total * Decimal("0.0005")).quantize(Decimal("0.0001"))
            n += 1
            conn.execute(_TRADE_SQL, {
                "coid": f"order-{n:06d}", "tid": f"uuid-{n}", "symbol": symbol, "side": side, "mode": mode,
                "status": "completed", "price": price, "amount": amount, "total": total, "fee": fee,
                "rkrw": total if side == "buy" else None, "rvol": amount if side == "sell" else None, "at": at,
                "error": None})
            for action in ("hold", side):
                conn.execute("INSERT INTO decisions (created_at, ticker, mode, advisor, action, cost_usd, error) "
                             "VALUES (%s, %s, %s, 'test', %s, %s, %s)",
                             (at, symbol, mode, action, Decimal("0.0123"), "boom" if i % 7 == 0 else None))
    conn.execute(_TRADE_SQL, {"coid": "order-failed1", "tid": None, "symbol": "KRW-BTC", "side": "buy",
                              "mode": "paper", "status": "failed", "price": None, "amount": None, "total": None,
                              "fee": None, "rkrw": Decimal(5000), "rvol": None, "at": start, "error": "rejected"})


def test_dashboard_sql_runs_on_postgres(dashboard: dict[str, Any], db_url: str) -> None:
    import psycopg

    with psycopg.connect(db_url) as conn:
        _seed(conn, random.Random(6))
        for where, sql in _dashboard_sqls(dashboard):
            rows = conn.execute(expand_grafana_sql(sql, ["KRW-BTC", "KRW-ETH"], ["paper", "live"])).fetchall()
            assert rows, f"{where}: no rows"
        # The variables list what is in the tables.
        variables = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
        assert [r[0] for r in conn.execute(variables["ticker"]).fetchall()] == ["KRW-BTC", "KRW-ETH"]
        assert [r[0] for r in conn.execute(variables["mode"]).fetchall()] == ["live", "paper"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dashboard_pnl_matches_tradebot_pnl(dashboard: dict[str, Any], db_url: str, seed: int) -> None:
    import psycopg

    from tradebot.pnl import replay
    from tradebot.store.trades import ledger_entries

    (pnl_sql,) = [t["rawSql"] for _, t in _targets(dashboard, "pg") if "RECURSIVE" in t["rawSql"]]
    with psycopg.connect(db_url) as conn:
        _seed(conn, random.Random(seed))
        rows = conn.execute(expand_grafana_sql(pnl_sql, ["KRW-BTC", "KRW-ETH"], ["paper", "live"])).fetchall()
        series: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
        for at, metric, value in rows:
            series[metric].append((at, value))
        assert set(series) == {"KRW-BTC paper", "KRW-ETH paper", "KRW-BTC live"}
        for metric, points in series.items():
            symbol, mode = metric.split()
            entries = ledger_entries(conn, symbol, mode)
            assert [p[0] for p in points] == [e.at for e in entries]
            for k in range(len(entries)):  # the running value after every fill
                expected = replay(entries[: k + 1]).realized_pnl
                assert abs(points[k][1] - expected) < Decimal("1e-6"), (metric, k, points[k][1], expected)
            assert any(e.side == "sell" for e in entries) and points[-1][1] != 0

        # A range that starts late still carries the earlier history (average cost) and ends at its end.
        mid = rows[len(rows) // 2][0]
        late = conn.execute(expand_grafana_sql(pnl_sql, ["KRW-BTC"], ["paper"], time_from=mid.isoformat(),
                                               time_to=(mid + timedelta(days=1)).isoformat())).fetchall()
        full = [r for r in rows if r[1] == "KRW-BTC paper" and mid <= r[0] <= mid + timedelta(days=1)]
        assert late == full


# ---------------------------------------------------------------------------------------------- the rules
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_rules_structure(rules: dict[str, Any]) -> None:
    groups = rules["groups"]
    assert [g["name"] for g in groups] == ["tradebot"]
    alerts = _rule_list(rules)
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names))
    for r in alerts:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, r["alert"]
        assert _DURATION.match(str(r["for"])), f"{r['alert']}: for {r.get('for')!r}"
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        text = r["annotations"]["summary"] + r["annotations"]["description"]
        if ("absent(" not in r["expr"] and "tradebot_" in r["expr"] and "node_" not in r["expr"]
                and "tradebot_portfolio_" not in r["expr"] and "tradebot_telegram_" not in r["expr"]):
            assert "{{ $labels.ticker }}" in text and "{{ $labels.mode }}" in text, r["alert"]
        assert text.count("{{") == text.count("}}")


def test_rules_cover_the_issue(rules: dict[str, Any]) -> None:
    exprs = " ".join(re.sub(r"\s+", " ", str(r["expr"])) for r in _rule_list(rules))
    for needle in ("time() - tradebot_last_success_timestamp_seconds > 2*3600 + 600",
                   "absent(tradebot_last_success_timestamp_seconds)", "tradebot_last_run_success == 0",
                   "increase(tradebot_cycle_errors_total[3h]) > 0",
                   'time() - node_textfile_mtime_seconds{file=~".*tradebot\\\\.prom"} > 2*3600 + 600',
                   "node_textfile_scrape_error == 1", "tradebot_daily_realized_loss_krw",
                   "tradebot_daily_loss_limit_krw"):
        assert needle in exprs, needle


def test_rules_file_regex_matches_only_the_main_file(rules: dict[str, Any]) -> None:
    """The PromQL string ".*tradebot\\.prom" is the regex .*tradebot\\.prom (fully anchored by Prometheus)."""
    from tradebot.metrics import MAIN_FILE, SUCCESS_FILE

    (expr,) = [str(r["expr"]) for r in _rule_list(rules) if r["alert"] == "TradebotMetricsFileStale"]
    literal = re.search(r'file=~"((?:\\.|[^"\\])*)"', expr).group(1)  # type: ignore[union-attr]
    regex = re.compile(literal.encode().decode("unicode_escape"))
    assert regex.fullmatch(f"/var/lib/prometheus/node-exporter/{MAIN_FILE}") and regex.fullmatch(MAIN_FILE)
    assert not regex.fullmatch(SUCCESS_FILE) and not regex.fullmatch("tradebot_prom")


def test_promtool_check_rules() -> None:
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus; or set PROMTOOL)")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
