"""deploy/prometheus and deploy/grafana: the rules pass promtool (syntax and their unit cases), the
dashboard's queries parse, and every metric either names is one the services' /metrics exports."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import DEPLOY, documents, need, run

PROMTOOL = "Debian package prometheus"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD: dict[str, Any] = json.loads((DEPLOY / "grafana" / "faultline.json").read_text())
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def dashboard_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def alert_queries() -> list[tuple[str, str]]:
    return [(r["alert"], r["expr"]) for g in documents(ALERTS)[0]["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and ranges removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group() in KEYWORDS:
            continue
        names.add(m.group())
    return names


def test_metric_names_are_read_from_promql():
    """The extraction the two checks below rely on finds names, and only names."""
    expr = 'sum by (protocol) (rate(a_total{status=~"5.."}[5m])) / on () max(b) > 0.8 and absent(c)'
    assert metric_names(expr) == {"a_total", "b", "c"}


def exported(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


async def test_every_metric_the_dashboard_and_alerts_name_is_exported(gateway, query):
    names = exported(await (await gateway.get("/metrics")).text())
    names |= exported(await (await query.get("/metrics")).text())
    assert "faultline_notices_accepted_total" in names and "faultline_http_responses_total" in names
    for source, queries in (("dashboard", dashboard_queries()), ("alerts", alert_queries())):
        for title, expr in queries:
            used = metric_names(expr)
            assert used, (source, title, expr)
            assert used <= names, (
                f"{source} {title!r} names {sorted(used - names)}, which /metrics does not export"
            )


def test_the_dashboard_shows_what_operators_watch():
    exprs = " ".join(e for _, e in dashboard_queries())
    for needed in (
        "sum by (protocol) (rate(faultline_notices_accepted_total",  # ingest rate by protocol
        "faultline_worker_notices_stored_total",  # stored rate
        "faultline_stream_consumer_lag",
        "faultline_stream_backlog",
        "faultline_dead_letter_length",
        "faultline_worker_write_seconds_total",  # write latency
    ):
        assert needed in exprs, needed
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["datasource"]["uid"] == "${datasource}" for p in DASHBOARD["panels"] for t in p["targets"])


def test_alert_rules_pass_promtool_and_their_unit_cases():
    promtool = need("promtool", PROMTOOL)
    checked = run(promtool, "check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "alerts.test.yaml", cwd=ALERTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {a for a, _ in alert_queries()}
    cases = documents(ALERTS.parent / "alerts.test.yaml")[0]["tests"]
    fired = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert fired == alerts  # every alert has a case where it fires


def test_dashboard_queries_parse(tmp_path: Path):
    """promtool parses each query as a recording rule ($__rate_interval as Grafana would fill it)."""
    promtool = need("promtool", PROMTOOL)
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(promtool, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_deploy_yaml_lints_clean():
    linted = run(
        sys.executable, "-m", "yamllint", "--strict", "-c", str(DEPLOY / ".yamllint.yaml"), str(DEPLOY)
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
