"""The local broker for real: `edgeml broker` as a user runs it, and a 3-node cluster.

Each test starts its own JVMs (apart from the session broker) on free ports in `tmp_path`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaAdminClient

from edgeml.app.settings import Settings
from edgeml.infra.kafka import broker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def edgeml(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process, as a user would (the broker must outlive it)."""
    return subprocess.run(
        [sys.executable, "-m", "edgeml.app", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "kafka"
    yield home
    broker.stop(home)  # whatever the test left running
    broker.stop_cluster(home)


def test_broker_cli_lifecycle(home: Path, unused_tcp_port_factory: Callable[[], int]) -> None:
    port, controller_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    where = ("--home", str(home))
    up = ("broker", "up", *where, "--port", str(port), "--controller-port", str(controller_port))

    home.parent.mkdir(parents=True, exist_ok=True)
    first = edgeml(*up[:2], "--home", home.name, *up[4:], cwd=home.parent)  # a relative --home
    assert first.returncode == 0, first.stderr
    assert f"up on 127.0.0.1:{port}" in first.stdout
    pid = broker.status(home).pid
    assert pid is not None, "the broker must keep running after `edgeml broker up` returns"

    second = edgeml(*up)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"edgeml: error: Kafka broker already running (pid {pid}, port {port}, home {home}); "
        "stop it with `edgeml broker down`"
    ]

    elsewhere = edgeml("broker", "up", "--home", str(home.with_name("other")), "--port", str(port))
    assert elsewhere.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in elsewhere.stderr

    status = edgeml("broker", "status", *where)
    assert (status.returncode, status.stdout.split()[:3]) == (0, ["running", "pid", str(pid)])
    logs = edgeml("broker", "logs", *where, "-n", "200")
    assert logs.returncode == 0 and "Kafka Server started" in logs.stdout
    assert "SLF4J" not in (home / "logs" / "stdout.log").read_text()  # log4j2 binding found

    down = edgeml("broker", "down", *where)
    assert down.returncode == 0 and f"pid {pid}" in down.stdout
    assert "Stopped Kafka broker" in down.stdout
    again = edgeml("broker", "down", *where)
    assert again.returncode == 0 and "No Kafka broker running" in again.stdout
    assert edgeml("broker", "status", *where).returncode == 3


async def test_three_node_cluster_survives_a_stopped_node(
    home: Path,
    unused_tcp_port_factory: Callable[[], int],
    settings_factory: Callable[..., Settings],
    unique_id: str,
) -> None:
    ports = [unused_tcp_port_factory() for _ in range(3)]
    controller_ports = [unused_tcp_port_factory() for _ in range(3)]
    cache = Settings(home=ROOT).kafka_cache
    nodes = broker.start_cluster(home, ports, controller_ports, cache_dir=cache)
    assert [(n.node_id, n.running) for n in nodes] == [(1, True), (2, True), (3, True)]

    bootstrap = ",".join(n.bootstrap_servers for n in nodes)
    settings = settings_factory(bootstrap_servers=bootstrap, topic_replication=3)
    topic = f"{unique_id}-replicated"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 3, "replication_factor": 3}}, wait_for_metadata=True
        )
        partitions = admin.describe_topics([topic])[0]["partitions"]
    finally:
        admin.close()
    assert all(sorted(p["isr_nodes"]) == [1, 2, 3] for p in partitions)

    broker.stop(home / "node-2")
    assert [n.running for n in broker.cluster_status(home)] == [True, False, True]
    producer = AIOKafkaProducer(**settings.producer_config())
    await producer.start()
    try:  # acks=all with min ISR 2: two of three nodes still take writes
        for i in range(30):
            await producer.send_and_wait(topic, key=str(i).encode(), value=b"x")
    finally:
        await producer.stop()

    restarted = broker.start_cluster(home, ports, controller_ports, cache_dir=cache)
    assert [n.pid for n in restarted][::2] == [nodes[0].pid, nodes[2].pid]  # left alone
    assert restarted[1].running and restarted[1].pid != nodes[1].pid

    consumer = AIOKafkaConsumer(topic, **settings.consumer_config(f"{unique_id}-group"))
    await consumer.start()
    try:
        got = 0
        while got < 30:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"only {got} of 30 records came back"
            got += sum(map(len, batches.values()))
    finally:
        await consumer.stop()

    assert len(broker.stop_cluster(home)) == 3
    assert not any(n.running for n in broker.cluster_status(home))
