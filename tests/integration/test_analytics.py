"""Analytics, metrics and the dashboard end to end: simulator → real broker → worker(s).

Each test checks the analytics API against an independent one-pass computation over the input
topic (valid messages = everything the DLQ does not name by origin offset). Counts, minima and
maxima must be equal; means equal to 1e-12 relative (the worker adds batch by batch, the check
in one pass: the last bits of a float sum depend on the order of addition).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kafka import KafkaConsumer

from edgeml.app.settings import Settings
from edgeml.models.analytics import FLEET_KEY, DictPaneStore, key_view

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SIM = ("--devices", "8", "--count", "480", "--warmup", "120", "--incident-every", "150")
READINGS = 8 * 480
MALFORMED = 20


# --- helpers ---------------------------------------------------------------------------------


def _cli(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env |= {
        "EDGEML_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "EDGEML_TOPIC_PREFIX": settings.topic_prefix,
        "EDGEML_TOPIC_PARTITIONS": str(settings.topic_partitions),
    }
    return subprocess.run(
        [sys.executable, "-m", "edgeml.app", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _simulate(settings: Settings, seed: int, malformed: int = MALFORMED) -> None:
    sim = _cli(settings, "simulate", *SIM, "--seed", str(seed), "--rate", "0",
               "--malformed", str(malformed), "--no-progress")  # fmt: skip
    assert sim.returncode == 0, sim.stderr


def _get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")


def _wait(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, KeyError, TypeError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})", pytrace=False)


def _fleet_done(base: str, readings: int, dead_letters: int) -> Callable[[], bool]:
    def check() -> bool:
        status, body = _get(f"{base}/analytics/fleet")
        totals = body.get("totals") if status == 200 else None
        if not totals:
            return False
        seen = (totals["count"], totals["dead_letters"])
        if seen != (readings, dead_letters):  # shown by `_wait` if it never converges
            raise ValueError(f"fleet (count, dead letters) {seen} != {(readings, dead_letters)}")
        return True

    return check


def _consume(settings: Settings, name: str) -> list[Any]:
    consumer = KafkaConsumer(
        settings.topic(name), bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
    )  # fmt: skip
    try:
        return list(consumer)
    finally:
        consumer.close()


def _valid_readings(settings: Settings) -> tuple[list[dict[str, Any]], int]:
    """The input topic's readings minus every message the DLQ names, and the DLQ count."""
    letters = _consume(settings, "sensor-readings.dlq")
    dead = set()
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        dead.add((int(headers["edgeml.origin.partition"]), int(headers["edgeml.origin.offset"])))
    readings: list[dict[str, Any]] = []
    for message in _consume(settings, "sensor-readings"):
        if (message.partition, message.offset) in dead:
            continue
        value = json.loads(message.value)
        readings.extend(value.get("readings", [value]))
    return readings, len(letters)


def _expected(readings: list[dict[str, Any]], key: str, size: int, hop: int) -> dict[str, Any]:
    """key value -> window start -> {"count", metric -> [n, sum, min, max]}, one pass."""
    out: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in readings:
        ts = r["ts"]
        first = (math.floor(ts) - size) // hop + 1
        for start in range(first * hop, math.floor(ts) + 1, hop):
            if not start <= ts < start + size:
                continue
            window = out[r[key] if key else "*"].setdefault(start, {"count": 0, "metrics": {}})
            window["count"] += 1
            for name, v in r["metrics"].items():
                m = window["metrics"].setdefault(name, [0, 0.0, math.inf, -math.inf])
                m[0] += 1
                m[1] += v
                m[2] = min(m[2], v)
                m[3] = max(m[3], v)
    return out


def _assert_windows(body: dict[str, Any], expected: dict[int, dict[str, Any]], what: str) -> None:
    got = {w["start"]: w for w in body["windows"]}
    assert set(got) == set(expected), what
    for start, window in expected.items():
        assert got[start]["count"] == window["count"], (what, start)
        for name, (n, total, lo, hi) in window["metrics"].items():
            metric = got[start]["metrics"][name]
            assert (metric["count"], metric["min"], metric["max"]) == (n, lo, hi), (what, name)
            assert metric["mean"] == pytest.approx(total / n, rel=1e-12), (what, name)


def _check_against_input(base: str, settings: Settings) -> dict[str, Any]:
    """Every device, site and the fleet, both window kinds, against the input topic. Returns
    the bodies read (for comparing workers)."""
    readings, dead_letters = _valid_readings(settings)
    assert len(readings) == READINGS and dead_letters == MALFORMED
    windows = settings.analytics_windows()
    bodies: dict[str, Any] = {}
    devices = sorted({r["device_id"] for r in readings})
    sites = sorted({r["site"] for r in readings})
    for kind, (size, hop) in (("tumbling", (60, 60)), ("hopping", (300, 60))):
        assert windows.size_and_hop(kind) == (size, hop)
        per_device = _expected(readings, "device_id", size, hop)
        per_site = _expected(readings, "site", size, hop)
        fleet = _expected(readings, "", size, hop)["*"]
        for device in devices:
            status, body = _get(f"{base}/analytics/devices/{device}?window={kind}")
            assert status == 200, body
            _assert_windows(body, per_device[device], f"{device} {kind}")
            bodies[f"device/{device}/{kind}"] = body
        for site in sites:
            status, body = _get(f"{base}/analytics/sites/{site}?window={kind}")
            assert status == 200, body
            _assert_windows(body, per_site[site], f"{site} {kind}")
            bodies[f"site/{site}/{kind}"] = body
        status, body = _get(f"{base}/analytics/fleet?window={kind}")
        assert status == 200, body
        _assert_windows(body, fleet, f"fleet {kind}")
        assert body["totals"]["count"] == READINGS
        assert body["totals"]["dead_letters"] == MALFORMED
        assert [s["site"] for s in body["sites"]] == sites
        bodies[f"fleet/{kind}"] = body
    status, listing = _get(f"{base}/analytics/devices")
    assert status == 200, listing
    assert [d["device_id"] for d in listing["devices"]] == devices
    counts = defaultdict(int)
    for r in readings:
        counts[r["device_id"]] += 1
    assert {d["device_id"]: d["totals"]["count"] for d in listing["devices"]} == counts
    bodies["devices"] = listing
    return bodies


# --- Prometheus ----------------------------------------------------------------------------------


@contextmanager
def _prometheus(tmp: Path, port: int, targets: list[str]) -> Iterator[str]:
    """A real Prometheus (Debian package) scraping `targets` every second, with our rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: install Debian's `prometheus` package", pytrace=False)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "infra/prometheus/rules.yml")],
        "scrape_configs": [{"job_name": "edgeml-worker", "static_configs": [{"targets": targets}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 60,
              "Prometheus to be ready")  # fmt: skip
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _promql(url: str, query: str) -> float | None:
    status, body = _get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    assert status == 200, body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


# --- headless Chromium over the DevTools protocol ------------------------------------------------


class Browser:
    """Headless Chromium driven over the Chrome DevTools protocol (aiohttp websockets)."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--window-size=1400,1000", "--remote-debugging-port=0")  # fmt: skip

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            pytest.fail("chromium is missing: install Debian's `chromium` package", pytrace=False)
        profile = tmp / "chromium-profile"
        self.log = (tmp / "chromium.log").open("wb")
        self.process = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        _wait(lambda: port_file.exists() and port_file.read_text().strip(), 60, "Chromium")
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [p for p in json.loads(r.read()) if p["type"] == "page"]
        self.ws_url = pages[0]["webSocketDebuggerUrl"]
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(self.ws_url, max_msg_size=0) as ws,
            ):
                ident = next(self._ids)
                await ws.send_json({"id": ident, "method": method, "params": params})
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == ident:
                        assert "error" not in data, data
                        return dict(data["result"])
            raise AssertionError(f"no answer to {method}")

        return asyncio.run(asyncio.wait_for(run(), 30))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(
            base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        )

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# --- the tests -----------------------------------------------------------------------------------


def test_one_worker_analytics_prometheus_and_live_dashboard(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    unused_tcp_port_factory: Callable[[], int],
    tmp_path: Path,
) -> None:
    settings = settings_factory(topic_partitions=4)
    worker_factory(settings)
    base = settings.web_url()
    browser = Browser(tmp_path)
    try:
        with _prometheus(
            tmp_path, unused_tcp_port_factory(), [base.removeprefix("http://")]
        ) as prom:
            browser.call("Page.navigate", url=f"{base}/dashboard")
            _wait(lambda: browser.evaluate("document.getElementById('stream').textContent")
                  == "alerts: live", 30, "the dashboard's alert stream")  # fmt: skip

            _simulate(settings, seed=5)
            _wait(_fleet_done(base, READINGS, MALFORMED), 120, "the fleet aggregates")

            # (a) the analytics API equals an independent computation over the input topic
            _check_against_input(base, settings)
            status, health = _get(f"{base}/health")
            assert status == 200 and health["ready"] and health["broker"]["reachable"], health
            assert health["lag"]["total"] == 0

            # (d) a real Prometheus scraped the predictions the worker produced
            _wait(lambda: _promql(prom, "sum(edgeml_predictions_total)") == READINGS, 60,
                  "Prometheus to see every prediction")  # fmt: skip
            assert _promql(prom, "sum(edgeml_dead_letters_total)") == MALFORMED
            assert _promql(prom, 'up{job="edgeml-worker"}') == 1
            _, rules = _get(f"{prom}/api/v1/rules")
            loaded = [r["name"] for g in rules["data"]["groups"] for r in g["rules"]]
            rule_file = yaml.safe_load((ROOT / "infra/prometheus/rules.yml").read_text())
            defined = [r["alert"] for g in rule_file["groups"] for r in g["rules"]]
            assert "EdgemlWorkerDown" in loaded and sorted(loaded) == sorted(defined)

        # (e) the alerts this run caused appear on the page that was open while they happened
        alerts = [json.loads(m.value) for m in _consume(settings, "anomaly-alerts")]
        assert alerts, "the simulated faults raised no alert"
        produced = {a["alert_id"] for a in alerts}
        shown = _wait(
            lambda: browser.evaluate(
                "Array.from(document.querySelectorAll('#alerts li')).map(li => li.dataset.alertId)"
            ),
            30, "alerts on the dashboard",
        )  # fmt: skip
        assert set(shown) <= produced and len(set(shown)) == len(produced)
        text = browser.evaluate("document.getElementById('alerts').innerText")
        assert alerts[-1]["device_id"] in text
        _wait(lambda: browser.evaluate("document.querySelectorAll('#devices tbody tr').length")
              == 8, 30, "the device table")  # fmt: skip
        browser.screenshot(tmp_path / "dash.png")
        assert (tmp_path / "dash.png").stat().st_size > 20_000
    finally:
        browser.close()


def _owners(base: str) -> set[int]:
    status, body = _get(f"{base}/assignment/")
    assert status == 200, body
    return {p for topic, parts in body["actives"].items() if topic.endswith("sensor-readings")
            for p in parts}  # fmt: skip


def test_two_workers_answer_alike_for_every_device(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    first = settings_factory(topic_partitions=4, data_dir=tmp_path / "w1")
    second = settings_factory(topic_partitions=4, data_dir=tmp_path / "w2")
    assert (first.app_id, first.topic_prefix) == (second.app_id, second.topic_prefix)
    worker_factory(first)
    worker_factory(second)
    bases = [first.web_url(), second.web_url()]

    def shared() -> bool:
        owned = [_owners(base) for base in bases]
        return all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == set(range(4))

    _wait(shared, 90, "the two workers to share the partitions")
    _simulate(first, seed=11)
    for base in bases:
        _wait(_fleet_done(base, READINGS, MALFORMED), 120, f"the fleet aggregates on {base}")
    answers = [_check_against_input(base, first) for base in bases]
    assert answers[0] == answers[1]  # same numbers, whichever worker is asked
    # both own devices, so half the single-key answers above were routed to the other worker
    owners = {
        json.loads(urllib.request.urlopen(f"{bases[0]}/router/analytics-device-heads/{d}/").read())
        for d in (f"dev-{i:04d}" for i in range(1, 9))
    }
    assert len(owners) == 2, owners


def test_a_restarted_worker_recovers_its_aggregates(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = settings_factory(topic_partitions=4, store="rocksdb://", data_dir=tmp_path / "data")
    base = settings.web_url()
    worker = worker_factory(settings)
    _simulate(settings, seed=23)
    _wait(_fleet_done(base, READINGS, MALFORMED), 120, "the fleet aggregates")
    before = _check_against_input(base, settings)

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0

    stop(worker)
    worker = worker_factory(settings)  # same RocksDB directory: local state + changelog tail
    _wait(_fleet_done(base, READINGS, MALFORMED), 90, "the restarted worker's aggregates")
    assert _check_against_input(base, settings) == before

    # What a worker without local state recovers is what the changelogs replay: rebuilt here
    # from the changelog topics alone, every key answers as the worker did.
    devices = _replayed(settings, "device")
    sites = _replayed(settings, "site")
    windows = settings.analytics_windows()
    for name, body in before.items():
        scope, _, rest = name.partition("/")
        if scope == "devices":
            continue
        key, _, kind = rest.rpartition("/")
        store, key = (sites, FLEET_KEY) if scope == "fleet" else (
            (devices, key) if scope == "device" else (sites, key)
        )  # fmt: skip
        replayed = key_view(store, key or FLEET_KEY, kind, windows)
        assert replayed is not None, name
        assert json.loads(json.dumps(replayed["windows"])) == body["windows"], name
        assert replayed["totals"] == body["totals"], name


def _replayed(settings: Settings, scope: str) -> DictPaneStore:
    """A pane store rebuilt from the `analytics-<scope>-heads/-panes` changelog topics."""
    store = DictPaneStore()
    for kind, target in (("heads", store.heads), ("panes", store.panes)):
        topic = f"{settings.app_id}-analytics-{scope}-{kind}-changelog"
        consumer = KafkaConsumer(
            topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
            enable_auto_commit=False, consumer_timeout_ms=3000,
        )  # fmt: skip
        try:
            for message in consumer:
                if message.value is None:
                    target.pop(message.key.decode(), None)
                else:
                    target[message.key.decode()] = message.value
        finally:
            consumer.close()
    return store
