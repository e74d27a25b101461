"""Prometheus rules and Grafana dashboards: valid for `promtool`, and every metric they name is
one the worker's `/metrics` really exports.

`promtool` comes with Debian's `prometheus` package (installed by `.ci/run`); without it these
tests fail, they are never skipped.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from faust.types import TP

from edgeml.app.metrics import Metrics, guarded, iter_metric_names
from edgeml.models.inference import InferenceEngine, TaskConfig, Weighted
from edgeml.models.inference.testing import ScriptedBackend
from edgeml.models.pipeline import Inbound, ReadingPipeline
from edgeml.models.scoring import Scorer

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
DASHBOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
SYNTHETIC = {"up"}  # written by Prometheus itself for every scrape target
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf",
            "nan", "group_left", "group_right"}  # fmt: skip


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: install Debian's `prometheus` package", pytrace=False)
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(PROMETHEUS / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_on_its_synthetic_series() -> None:
    result = _promtool("test", "rules", "rules.test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "rules.test.yml").read_text()))
    defined = set(re.findall(r"- alert: (\w+)", (PROMETHEUS / "rules.yml").read_text()))
    assert defined - tested == {"EdgemlEndToEndLatencySLO", "EdgemlObserverFailing"}


def test_promtool_checks_the_compose_prometheus_config(tmp_path: Path) -> None:
    config = (PROMETHEUS / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/rules.yml", str(PROMETHEUS / "rules.yml"))
    (tmp_path / "prometheus.yml").write_text(config)
    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, keywords, labels or durations)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        token = match.group(0)
        if expr[match.end() :].lstrip().startswith("(") or token.lower() in KEYWORDS:
            continue
        names.add(token)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (topic) (rate(edgeml_messages_in_total{topic="a"}[5m]))',
         {"edgeml_messages_in_total"}),
        ("histogram_quantile(0.99, sum by (le, model) (rate(x_bucket[5m]))) > 0.05", {"x_bucket"}),
        ("a > 1e-9 and on (topic) deriv(sum by (topic) (b)[10m:30s]) > 0", {"a", "b"}),
        ('up{job="edgeml-worker"} == 0', {"up"}),
        ("sum(rate(a[5m])) / clamp_min(sum(rate(b[5m])), 1e-9)", {"a", "b"}),
    ],
)  # fmt: skip
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def _expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rules.yml:{rule['alert']}", rule["expr"]

    def walk(node: Any, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                yield where, node["expr"]
            for key, value in node.items():
                yield from walk(value, f"{where}/{node.get('title', key)}")
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, where)

    for path in DASHBOARDS:
        yield from walk(json.loads(path.read_text()), path.name)


def exported_names() -> set[str]:
    """The sample names a worker's /metrics exports after scoring one batch."""
    metrics = Metrics("test")
    guarded(lambda *args: None, "analytics", metrics)  # as create_app wraps its observer
    pipeline = ReadingPipeline(Scorer())
    now = time.time()
    batch = [
        Inbound(b"d1", orjson.dumps({"device_id": "d1", "ts": now - 5, "seq": 1,
                                     "metrics": {"t": 1.0}, "sent_at": now - 5}), "r", 0, 0),
        Inbound(b"d1", b"{broken", "r", 0, 1),
    ]  # fmt: skip
    result = pipeline.process(batch, SimpleNamespace(load=lambda d, o: None,
                                                     save=lambda d, s, o: None))  # fmt: skip
    result.alerts += 1  # make sure an alert series exists
    events = [SimpleNamespace(message=SimpleNamespace(topic="r", time_in=time.monotonic()))]
    metrics.observe_batch(result, events)  # type: ignore[arg-type]
    metrics.alerts.labels("open", "critical").inc()
    metrics.observe_model("failure-gbm@1", 0.001)
    # the failure task on the inference engine (app.factory) adds the engine's metric set
    engine = InferenceEngine()  # b fails first, a answers: a failover
    backends = [ScriptedBackend("b", mode="raise"), ScriptedBackend("a")]
    engine.add_task("failure", backends, TaskConfig(strategy=Weighted({"b": 1e9})))
    metrics.observe_engine(engine)
    asyncio.run(engine.infer("failure", {"input": np.zeros((1, 3), np.float32)}))
    tp = TP("r", 0)
    app = SimpleNamespace(
        consumer=SimpleNamespace(assignment=lambda: {tp}, highwater=lambda tp: 10),
        monitor=SimpleNamespace(tp_read_offsets={tp: 4}, tp_committed_offsets={}),
    )
    metrics.add_lag(app, lambda: {"r"})  # type: ignore[arg-type]
    return set(iter_metric_names(metrics.render().decode()))


def test_every_metric_named_in_dashboards_and_rules_is_exported() -> None:
    exported = exported_names() | SYNTHETIC
    used: dict[str, set[str]] = {}
    for where, expr in _expressions():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(where)
    assert len(used) >= 10
    missing = {name: sorted(places) for name, places in used.items() if name not in exported}
    assert not missing, f"named but not exported: {missing}"


def test_dashboards_use_the_provisioned_datasource() -> None:
    datasource = (ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text()
    uid = re.search(r"uid: (\S+)", datasource)
    assert uid is not None
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["panels"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == uid.group(1), panel["title"]
            assert all(t["expr"] for t in panel["targets"]), panel["title"]
