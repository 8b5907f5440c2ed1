"""The Grafana dashboard (docs/grafana/ryu-dmm.json) queries only what the CMD and the agents export:
every metric name and label in its PromQL is checked against real scrapes of running processes."""
from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

from ryu_dmm import metrics
from ryu_dmm.agent import metrics as agent_metrics
from ryu_dmm.metrics import WALK_MAX_AGE
from tests.procs import wait_for
from tests.test_metrics import MAARS, MAC, Scrape, advertised, dmm  # noqa: F401 - dmm is a fixture

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "ryu-dmm.json"
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every series it scrapes
METRIC = re.compile(r"\b((?:dmm|process)_[A-Za-z0-9_]+)")
SELECTOR = re.compile(r"\b((?:dmm|process)_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z0-9_]+)\s*,\s*([A-Za-z0-9_]+)\s*\)")


def queries(dashboard: dict) -> list[str]:
    out = []
    for panel in dashboard["panels"]:
        for inner in [panel] + panel.get("panels", []):
            out += [t["expr"] for t in inner.get("targets", []) if t.get("expr")]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def exported(scrapes: list[Scrape]) -> tuple[dict, dict]:
    """sample name -> label names seen on its samples; sample name -> label names declared for its
    family (families with no sample yet, e.g. internal errors, still name their labels)."""
    seen: dict[str, set] = {}
    declared: dict[str, set] = {}
    families = {**metrics.FAMILIES, **agent_metrics.FAMILIES}
    for s in scrapes:
        for family in s.families.values():
            names = {"counter": [family.name + "_total"], "histogram": [family.name + sfx for sfx in
                     ("_bucket", "_sum", "_count")]}.get(family.type, [family.name])
            for name in names:
                seen.setdefault(name, set())
                labels = set(families[family.name][2]) if family.name in families else set()
                declared[name] = labels | ({"le"} if name.endswith("_bucket") else set())
            for sample in family.samples:
                seen.setdefault(sample.name, set()).update(sample.labels)
    return seen, declared


def check(expr: str, seen: dict, declared: dict, values: dict) -> list[str]:
    """What in ``expr`` the processes do not export."""
    problems = []
    names = set(METRIC.findall(expr))
    for name in names:
        if name not in seen:
            problems.append(f"{name}: not exported")
    known = {n: (seen.get(n) or declared.get(n, set())) | TARGET_LABELS for n in names}
    for name, body in SELECTOR.findall(expr):
        for label, op, value in MATCHER.findall(body):
            if label not in known.get(name, ()):
                problems.append(f"{name}{{{label}}}: no such label")
            elif op == "=" and "$" not in value and values.get((name, label)) and value not in values[(name, label)]:
                problems.append(f'{name}{{{label}="{value}"}}: no such value (seen: {sorted(values[(name, label)])})')
    for group in GROUPING.findall(expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            for name in names:
                if label not in known.get(name, ()):
                    problems.append(f"{name}: grouped by {label}, which it does not have")
    for name, label in LABEL_VALUES.findall(expr):
        if label not in known.get(name, ()):
            problems.append(f"label_values({name}, {label}): no such label")
    return problems


def test_every_query_of_the_dashboard_is_exported(dmm):
    d = dmm
    # traffic, so that the labelled families have samples: a registration, a handover, bad input
    assert d.control("maar1", {"op": "attach", "mn": "mn-1", "mac": MAC, "port": 1})["ok"]
    assert wait_for(lambda: advertised(d, "maar1", "mn-1"), 10)
    assert d.control("maar2", {"op": "attach", "mn": "mn-1", "mac": MAC, "port": 1})["ok"]
    assert wait_for(lambda: advertised(d, "maar2", "mn-1"), 10)
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk.bind(("127.0.0.9", 0))
    junk.sendto(b"garbage", ("127.0.0.1", d.udp))
    junk.sendto(b"garbage", (MAARS["maar1"], d.agents["maar1"]["udp"]))
    time.sleep(WALK_MAX_AGE)
    scrapes = [d.scrape_cmd()] + [d.scrape_agent(name) for name in MAARS]
    seen, declared = exported(scrapes)
    values: dict = {}
    for s in scrapes:
        for (name, labels) in s.samples:
            for k, v in labels:
                values.setdefault((name, k), set()).add(v)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = queries(dashboard)
    assert len(exprs) > 40
    problems = {e: p for e in exprs if (p := check(e, seen, declared, values))}
    assert not problems, json.dumps(problems, indent=1)
    # and every family the processes export is on the dashboard
    shown = {n for e in exprs for n in METRIC.findall(e)}
    families = {f.name for s in scrapes for f in s.families.values() if f.name.startswith("dmm_")}
    missing = {f for f in families if not any(n == f or n.startswith(f + "_") for n in shown)}
    assert not missing, f"exported but not on the dashboard: {sorted(missing)}"


def test_the_checker_catches_what_is_not_exported():
    seen = {"dmm_pbu_received_total": {"maar"}, "dmm_internal_errors_total": set()}
    declared = {"dmm_pbu_received_total": {"maar"}, "dmm_internal_errors_total": {"where"}}
    values = {("dmm_pbu_received_total", "maar"): {"maar1"}}
    ok = 'sum by (maar) (rate(dmm_pbu_received_total{maar=~"$maar", job="x"}[5m])) + ' \
         'sum by (where) (dmm_internal_errors_total)'
    assert check(ok.replace(" + sum by (where) (dmm_internal_errors_total)", ""), seen, declared, values) == []
    assert check("sum by (where) (rate(dmm_internal_errors_total[5m]))", seen, declared, values) == []
    assert check("rate(dmm_pbu_recieved_total[5m])", seen, declared, values) == ["dmm_pbu_recieved_total: not exported"]
    assert check('dmm_pbu_received_total{peer="cmd"}', seen, declared, values) == \
        ["dmm_pbu_received_total{peer}: no such label"]
    assert check("sum by (status) (dmm_pbu_received_total)", seen, declared, values) == \
        ["dmm_pbu_received_total: grouped by status, which it does not have"]
    assert check('dmm_pbu_received_total{maar="maar9"}', seen, declared, values)[0].startswith(
        'dmm_pbu_received_total{maar="maar9"}: no such value')
    assert check("label_values(dmm_pbu_received_total, mode)", seen, declared, values) == \
        ["label_values(dmm_pbu_received_total, mode): no such label"]
