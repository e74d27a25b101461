"""Shared fixtures: one Kafka broker per test session, and per-test unique names and settings.

Where the broker comes from (`kafka_bootstrap`), first match wins:

1. `EDGEML_TEST_BOOTSTRAP=host:port` — an already running broker or cluster;
2. `EDGEML_TEST_DOCKER=1` — a testcontainers Kafka container;
3. otherwise the local broker of `infra/kafka/broker.py` on free ports, its home under pytest's
   temporary directory, stopped at the end of the session.

If none can be had, every test that needs it fails with the reason: it is never skipped.
Tests under `tests/integration/` and tests using `kafka_bootstrap` are marked `integration`.
This module is the only test code that reads `os.environ`; tests get everything from fixtures.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from edgeml.app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ENV_BOOTSTRAP = "EDGEML_TEST_BOOTSTRAP"
ENV_DOCKER = "EDGEML_TEST_DOCKER"
WORKER_READY = "[^Worker]: Ready"


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python loads its protocol schemas with importlib.resources' deprecated API.
    for message in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration_dir = ROOT / "tests" / "integration"
    for item in items:
        in_dir = integration_dir in Path(str(item.path)).parents
        if in_dir or "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


NO_BROKER = "127.0.0.1:9"  # the discard port: nothing serves Kafka there
ENV_EDGE_R10_COUNT = "EDGEML_TEST_EDGE_R10_COUNT"


@pytest.fixture(scope="session")
def edge_r10_count() -> int:
    """Readings per device (20 devices) of the edge agent's R10 run in
    tests/integration/test_edge_agent.py: 500 by default (CI: 10,000 readings); `make edge-r10`
    sets `EDGEML_TEST_EDGE_R10_COUNT=2500`, the issue's 50,000."""
    return int(os.environ.get(ENV_EDGE_R10_COUNT, "500"))


@pytest.fixture(autouse=True)
def _no_stray_broker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests not marked `integration` must not depend on a broker: a `Settings()` built inside
    the code under test would otherwise reach a developer's broker on the default port and pass
    here, then fail on a clean machine."""
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setenv("EDGEML_BOOTSTRAP_SERVERS", NO_BROKER)


# --- the broker -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(
    tmp_path_factory: pytest.TempPathFactory, unused_tcp_port_factory: Callable[[], int]
) -> Iterator[str]:
    """`host:port` of a Kafka broker for the whole session (see the module docstring)."""
    _warm_kernel()
    external = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if external:
        yield external
    elif os.environ.get(ENV_DOCKER) == "1":
        yield from _docker_broker()
    else:
        yield from _local_broker(tmp_path_factory.mktemp("kafka"), unused_tcp_port_factory)


def _warm_kernel() -> None:
    """Compile the scoring kernel here once, into numba's on-disk cache, before any test starts
    a worker: a cold compile takes ~20 s (more on a busy box), which a worker start would pay
    inside its readiness timeout; with the cache written each worker loads it in ~0.4 s."""
    from edgeml.models.kernel import warm

    seconds = warm()
    sys.stderr.write(f"\n[conftest] scoring kernel compiled or loaded in {seconds:.1f} s\n")


def _local_broker(home: Path, free_port: Callable[[], int]) -> Iterator[str]:
    from edgeml.infra.kafka import broker

    began = time.monotonic()
    try:
        info = broker.start(
            home,
            free_port(),
            controller_port=free_port(),
            cache_dir=Settings(home=ROOT).kafka_cache,
            timeout_s=120.0,
            die_with_parent=True,  # a killed pytest does not leave a JVM behind
        )
    except broker.BrokerError as exc:
        failure = f"no Kafka broker for the tests: {exc}"
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    sys.stderr.write(
        f"\n[conftest] Kafka broker on {info.bootstrap_servers} ready in "
        f"{time.monotonic() - began:.1f} s (home {home})\n"
    )
    try:
        yield info.bootstrap_servers
    finally:
        broker.stop(home)


def _docker_broker() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer

        container = KafkaContainer().with_kraft().start()
    except Exception as exc:  # docker missing, image pull failed, ...: report, never skip
        failure = f"no Kafka broker for the tests ({ENV_DOCKER}=1): {exc}"
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield container.get_bootstrap_server()
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[Any]:
    """A kafka-python `KafkaAdminClient` connected to the session broker."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="edgeml-tests")
    try:
        yield admin
    finally:
        admin.close()


# --- unique names ---------------------------------------------------------------------------------


@pytest.fixture
def unique_id(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test run and test: `t-<test name>-<8 hex>`.

    Valid as a Kafka topic name, group id, Faust app id and file name.
    """
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name.removeprefix("test_")).strip("-")
    return f"t-{name[:40].rstrip('-')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def group_id(unique_id: str) -> str:
    """A consumer group id no other test uses."""
    return f"{unique_id}-group"


@pytest.fixture
def topic_factory(kafka_admin: Any, unique_id: str) -> Iterator[Callable[..., str]]:
    """`create(name, partitions=1, *, replication=1, configs=None) -> topic`: a new topic.

    The topic is `<unique_id>-<name>`, which is also `settings.topic(name)` for settings from
    `settings_factory`. It is ready (a leader for each partition) when returned, and deleted
    after the test.
    """
    created: list[str] = []

    def create(
        name: str = "topic",
        partitions: int = 1,
        *,
        replication: int = 1,
        configs: dict[str, str] | None = None,
    ) -> str:
        topic = f"{unique_id}-{name}"
        spec = {"num_partitions": partitions, "replication_factor": replication}
        kafka_admin.create_topics(
            {topic: {**spec, "configs": dict(configs or {})}}, wait_for_metadata=True
        )
        created.append(topic)
        return topic

    yield create
    if created:
        try:
            kafka_admin.delete_topics(created)
        except Exception as exc:  # cleanup only; the names are unique anyway
            sys.stderr.write(f"[conftest] could not delete topics {created}: {exc}\n")


# --- settings and workers -------------------------------------------------------------------------


@pytest.fixture
def settings_factory(
    request: pytest.FixtureRequest,
    unique_id: str,
    tmp_path: Path,
    unused_tcp_port_factory: Callable[[], int],
) -> Callable[..., Settings]:
    """`make(**overrides) -> Settings` isolated for this test.

    Defaults: `memory://` store, app id `unique_id`, topic prefix `<unique_id>-`, a free web
    port, data under `tmp_path`. `bootstrap_servers` is the session broker in tests marked
    `integration` (the broker is not started for other tests; they get an address nothing
    serves unless they override it).
    """

    def make(**overrides: Any) -> Settings:
        if "bootstrap_servers" not in overrides:
            needs_broker = request.node.get_closest_marker("integration") is not None
            overrides["bootstrap_servers"] = (
                request.getfixturevalue("kafka_bootstrap") if needs_broker else NO_BROKER
            )
        fields: dict[str, Any] = {
            "store": "memory://",
            "app_id": unique_id,
            "topic_prefix": f"{unique_id}-",
            "web_port": unused_tcp_port_factory(),
            "data_dir": tmp_path / "worker-data",
            "topic_replication": 1,
            **overrides,
        }
        return Settings(**fields)

    return make


def _settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as the `EDGEML_*` environment that makes `Settings()` equal to it."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        raw = getattr(settings, name)
        if raw is None:
            continue
        if isinstance(raw, SecretStr):
            value = raw.get_secret_value()
        env[f"EDGEML_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`start(settings, timeout_s=90, script=None) -> Popen`: a real `python -m edgeml.app worker`
    for `settings` (or `python SCRIPT worker -l info`: a test's own worker app, as
    `tests/agents/hello_agent.py`).

    Returns once the worker logs that it is ready; fails the test with the end of its log if it
    exits or is not ready in time. Its output is in `tmp_path/worker-<n>.log`. Stopped (SIGTERM,
    then SIGKILL) after the test.
    """
    workers: list[subprocess.Popen[bytes]] = []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}

    def start(
        settings: Settings, *, timeout_s: float = 90.0, script: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(workers) + 1}.log"
        env = {**base_env, **_settings_env(settings), "PYTHONUNBUFFERED": "1"}
        command = ["-m", "edgeml.app", "worker", "--loglevel", "info"]
        if script is not None:
            command = [str(script), "worker", "-l", "info"]
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, *command],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        workers.append(worker)
        deadline = time.monotonic() + timeout_s
        while WORKER_READY not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                what = "exited" if worker.returncode is not None else f"not ready in {timeout_s} s"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                pytest.fail(f"worker {what}; end of {log}:\n{tail}", pytrace=False)
            time.sleep(0.2)
        return worker

    yield start
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.fixture
def read_records() -> Callable[..., list[dict[str, Any]]]:
    """`read(settings, topic_name, idle_ms=5000) -> records`: everything on one of the platform's
    topics so far, JSON-decoded; prediction envelopes are fanned out into their predictions."""
    from kafka import KafkaConsumer

    def read(settings: Settings, name: str, idle_ms: int = 5000) -> list[dict[str, Any]]:
        consumer = KafkaConsumer(
            settings.topic(name),
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=idle_ms,
        )
        records: list[dict[str, Any]] = []
        try:
            for message in consumer:
                value = json.loads(message.value)
                records.extend(value.get("predictions", [value]))
        finally:
            consumer.close()
        return records

    return read


@pytest.fixture
def run_cli(request: pytest.FixtureRequest) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run(settings, *args, timeout=300) -> CompletedProcess`: `python -m edgeml.app ARGS` with the
    environment that makes `Settings()` equal to `settings` (output captured as text)."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}

    def run(
        settings: Settings, *args: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeml.app", *args],
            cwd=ROOT,
            env={**base_env, **_settings_env(settings)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def use_settings(monkeypatch: pytest.MonkeyPatch) -> Callable[[Settings], None]:
    """`use(settings)`: this process's `EDGEML_*` environment becomes the one that makes
    `Settings()` equal to `settings` (undone after the test), for code under test that builds
    its own `Settings()` or starts children with `os.environ`."""

    def use(settings: Settings) -> None:
        for name in [name for name in os.environ if name.startswith("EDGEML_")]:
            monkeypatch.delenv(name)
        for name, value in _settings_env(settings).items():
            monkeypatch.setenv(name, value)

    return use


@pytest.fixture
def invoke_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    use_settings: Callable[[Settings], None],
) -> Callable[..., tuple[int, str, str]]:
    """`invoke(settings, *args) -> (exit code, stdout, stderr)`: the console entry
    `app.cli.main` run in this process with the environment that makes `Settings()` equal to
    `settings`. The same entry point as `run_cli` without a new interpreter per call, and its
    lines count in the in-process coverage figure."""
    from edgeml.app.cli import main

    def invoke(settings: Settings, *args: str) -> tuple[int, str, str]:
        use_settings(settings)
        monkeypatch.setattr(sys, "argv", ["edgeml", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        out, err = capsys.readouterr()
        code = exited.value.code
        return code if isinstance(code, int) else 0, out, err

    return invoke
