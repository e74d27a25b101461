"""Run Apache Kafka (KRaft mode) locally as a plain JVM: no Docker, no Kafka install.

The pinned Kafka version and its runtime classpath come from Maven Central through
`infra/kafka/pom.xml`, cached once under `cache_dir`. Each broker lives in its own *home*
directory, so several can run side by side (different homes, different ports)::

    <home>/server.properties   generated from server.template.properties on every start
    <home>/broker.pid          the JVM's pid while it runs
    <home>/data/               the log dirs (formatted once; kept across restarts)
    <home>/logs/server.log     the broker's log (log4j2.properties); stdout.log: JVM output

Usually driven by `edgeml broker up|down|status|logs` and by the test session fixture
(`tests/conftest.py`)::

    info = start(home, 9092, cache_dir=settings.kafka_cache)   # waits until it serves metadata
    stop(home)

`start_cluster` runs N such nodes (homes `<home>/node-<id>`) as one KRaft quorum.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import functools
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from edgeml.topics.errors import EdgeMLError

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "BrokerInfo",
    "cluster_status",
    "ensure_kafka",
    "log_path",
    "port_is_free",
    "start",
    "start_cluster",
    "status",
    "stop",
    "stop_cluster",
]

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
SERVER_TEMPLATE = HERE / "server.template.properties"
LOG4J2_CONFIG = HERE / "log4j2.properties"

HOST = "127.0.0.1"
MIN_JAVA = 17
NO_JAVA_HINT = "install OpenJDK 17+ or use `docker compose up kafka`"


def _pinned_version(pom: Path = POM) -> str:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", namespace)
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"{pom} has no <kafka.version> property")
    return (node.text or "").strip()


KAFKA_VERSION = _pinned_version()
"""The Kafka version `infra/kafka/pom.xml` pins (its `kafka.version` property)."""

_COMPLETE = ".complete"  # written into a libs dir once Maven has filled it; holds the pom's hash
_PID_FILE = "broker.pid"
_PROPERTIES = "server.properties"
_NODE_DIR = "node-{}"
_PLAINTEXT_PORT = re.compile(r"^advertised\.listeners=PLAINTEXT://[^:]+:(\d+)", re.MULTILINE)
_CONTROLLER_PORT = re.compile(r"^listeners=.*CONTROLLER://[^:]+:(\d+)", re.MULTILINE)
_NODE_ID = re.compile(r"^node\.id=(\d+)", re.MULTILINE)

# A JVM we spawned from this process, kept so that it is reaped (no zombie) and so that startup
# can report its exit code. Keyed by pid.
_children: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(EdgeMLError):
    """The local Kafka broker cannot be fetched, started, reached or stopped (one line)."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """What one broker home says about its broker: returned by `start` and `status`.

    `pid` is None when the broker is not running; `port` and `controller_port` are then the ones
    it last ran with (0 when it never ran in this home).
    """

    home: Path
    port: int
    controller_port: int
    pid: int | None
    node_id: int = 1

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"


# --- fetching Kafka ------------------------------------------------------------------------------


def ensure_kafka(cache_dir: Path, *, echo: Callable[[str], None] | None = None) -> str:
    """The pinned Kafka's classpath (`<cache_dir>/libs-<version>/*`), fetched with Maven if missing.

    Only the first call for a version (or after `pom.xml` changed) runs Maven; it prints one
    progress line through `echo` (default: stderr). Safe to call from several processes at once.
    """
    cache_dir = cache_dir.resolve()  # the JVM runs in the broker's home, not here
    libs = cache_dir / f"libs-{KAFKA_VERSION}"
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    marker = libs / _COMPLETE
    if marker.is_file() and marker.read_text().strip() == pom_hash:
        return str(libs / "*")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Maven (mvn) not found on PATH; it is needed once to fetch Kafka {KAFKA_VERSION}: "
            "install Maven or use `docker compose up kafka`"
        )
    _java()  # Maven needs it too; fail with the clearer message
    (echo or _stderr)(f"Fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} ...")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"libs-{KAFKA_VERSION}.", dir=cache_dir))
    try:
        command = [
            mvn,
            *("-q", "-B", "-f", str(POM), "dependency:copy-dependencies"),
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(
                f"fetching Kafka {KAFKA_VERSION} with Maven failed (exit {done.returncode}): "
                f"{_last_line(done.stdout + done.stderr) or 'no output'}"
            )
        (staging / _COMPLETE).write_text(pom_hash + "\n")
        if libs.exists():  # an older fetch (other pom) or a racing process that already finished
            if marker.is_file() and marker.read_text().strip() == pom_hash:
                return str(libs / "*")
            shutil.rmtree(libs)
        try:
            staging.rename(libs)
        except OSError:  # another process renamed its copy in first: use that one
            if not (marker.is_file() and marker.read_text().strip() == pom_hash):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(libs / "*")


# --- one broker ----------------------------------------------------------------------------------


def log_path(home: Path) -> Path:
    """The broker's main log file in `home` (it may not exist yet)."""
    return home.resolve() / "logs" / "server.log"


def status(home: Path) -> BrokerInfo:
    """Whether a broker runs from `home`, with its pid and ports. A stale pid file is removed."""
    home = home.resolve()
    port, controller_port, node_id = _configured_ports(home)
    return BrokerInfo(home, port, controller_port, _running_pid(home), node_id)


def start(
    home: Path,
    port: int,
    *,
    cache_dir: Path,
    controller_port: int | None = None,
    heap_mb: int = 512,
    timeout_s: float = 60.0,
    fresh: bool = False,
    die_with_parent: bool = False,
    echo: Callable[[str], None] | None = None,
) -> BrokerInfo:
    """Start a single-node Kafka (broker + controller) from `home` and wait until it is ready.

    Ready means it answers a metadata request listing itself as an unfenced broker. The
    controller listens on `controller_port` (default `port + 1`). Data in `home/data` is kept
    across restarts unless `fresh`. `die_with_parent` (Linux) stops the broker when the calling
    process dies, for test sessions. Raises `BrokerError` if a broker already runs from `home`,
    a port is taken, Java or Maven is missing, or it is not ready within `timeout_s` (the broker
    is then stopped again).
    """
    node = _Node(home.resolve(), 1, port, controller_port or port + 1)
    _check_can_start([node])
    classpath = ensure_kafka(cache_dir, echo=echo)
    cluster_id = _cluster_id([node], fresh=fresh)
    _configure(node, voters=[node], classpath=classpath, cluster_id=cluster_id, heap_mb=heap_mb)
    launch = _spawn(node, classpath, heap_mb=heap_mb, die_with_parent=die_with_parent)
    _wait_ready([node], [launch], timeout_s=timeout_s)
    return BrokerInfo(node.home, node.port, node.controller_port, launch.child.pid, node.node_id)


def stop(home: Path, *, timeout_s: float = 30.0) -> BrokerInfo | None:
    """Stop the broker running from `home`: SIGTERM, wait up to `timeout_s`, then SIGKILL.

    Returns what was stopped, or None (a no-op) when nothing runs there.
    """
    infos = _stop_all([home.resolve()], timeout_s=timeout_s)
    return infos[0] if infos else None


# --- a cluster of nodes on loopback -------------------------------------------------------------


def start_cluster(
    home: Path,
    ports: Sequence[int],
    controller_ports: Sequence[int],
    *,
    cache_dir: Path,
    heap_mb: int = 384,
    timeout_s: float = 90.0,
    fresh: bool = False,
    die_with_parent: bool = False,
    echo: Callable[[str], None] | None = None,
) -> list[BrokerInfo]:
    """Start a KRaft cluster of `len(ports)` nodes (broker + controller each) in `home/node-<id>`.

    Node ids are 1..N. Nodes already running are left alone, so calling it again after stopping
    one node (`stop(home / "node-2")`) restarts just that node. Internal topics use replication
    min(N, 3) with min ISR 2 when N > 1. Waits until each node reports all N brokers unfenced.
    """
    if len(ports) != len(controller_ports) or not ports:
        raise ValueError("start_cluster needs one controller port per broker port, at least one")
    home = home.resolve()
    nodes = [
        _Node(home / _NODE_DIR.format(i), i, port, cport)
        for i, (port, cport) in enumerate(zip(ports, controller_ports, strict=True), start=1)
    ]
    to_start = [node for node in nodes if _running_pid(node.home) is None]
    _check_can_start(to_start)
    classpath = ensure_kafka(cache_dir, echo=echo)
    cluster_id = _cluster_id(nodes, fresh=fresh)
    for node in to_start:
        _configure(node, voters=nodes, classpath=classpath, cluster_id=cluster_id, heap_mb=heap_mb)
    launches = [
        _spawn(node, classpath, heap_mb=heap_mb, die_with_parent=die_with_parent)
        for node in to_start
    ]
    _wait_ready(nodes, launches, timeout_s=timeout_s)
    return cluster_status(home)


def cluster_status(home: Path) -> list[BrokerInfo]:
    """`status` of every node of the cluster in `home`, by node id (empty: no cluster there)."""
    return [status(node_home) for node_home in _node_homes(home.resolve())]


def stop_cluster(home: Path, *, timeout_s: float = 30.0) -> list[BrokerInfo]:
    """Stop every node of the cluster in `home` at once; returns the nodes that were running."""
    return _stop_all(_node_homes(home.resolve()), timeout_s=timeout_s)


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on `host:port` (a server could bind it now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as servers use it: a port held only by TIME_WAIT connections is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# --- internals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    home: Path
    node_id: int
    port: int
    controller_port: int


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else ""


def _java() -> str:
    """Path to a Java 17+ `java` on PATH, or a BrokerError saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(f"Java not found on PATH: {NO_JAVA_HINT}")
    return _checked_java(java)


@functools.cache
def _checked_java(java: str) -> str:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"cannot run {java} -version ({exc}): {NO_JAVA_HINT}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        raise BrokerError(f"cannot tell the Java version of {java}: {NO_JAVA_HINT}")
    major = int(match.group(2) or 0) if match.group(1) == "1" else int(match.group(1))
    if major < MIN_JAVA:
        raise BrokerError(
            f"Java {major} at {java} is too old for Kafka {KAFKA_VERSION}: {NO_JAVA_HINT}"
        )
    return java


def _configured_ports(home: Path) -> tuple[int, int, int]:
    """(port, controller_port, node_id) from the server.properties last written in `home`."""
    try:
        text = (home / _PROPERTIES).read_text()
    except OSError:
        return 0, 0, 1
    found = [pattern.search(text) for pattern in (_PLAINTEXT_PORT, _CONTROLLER_PORT, _NODE_ID)]
    port, controller_port, node_id = (int(m.group(1)) if m else 0 for m in found)
    return port, controller_port, node_id or 1


def _running_pid(home: Path) -> int | None:
    """The pid of the broker running from `home`, or None; removes a stale pid file."""
    pid_file = home / _PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if _is_our_broker(pid, home):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def _is_our_broker(pid: int, home: Path) -> bool:
    """Whether `pid` is alive and is the Kafka JVM started from `home` (not a recycled pid)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:  # our own child exited: reaped now
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's: let start() say it is running rather than clash
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():
        return True  # no procfs (macOS): trust the live pid
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    # A zombie has an empty command line; a recycled pid runs something else.
    return b"kafka.Kafka" in args and str(home / _PROPERTIES).encode() in args


def _check_can_start(nodes: Sequence[_Node]) -> None:
    for node in nodes:
        pid = _running_pid(node.home)
        if pid is not None:
            port = _configured_ports(node.home)[0]
            raise BrokerError(
                f"Kafka broker already running (pid {pid}, port {port}, home {node.home}); "
                "stop it with `edgeml broker down`"
            )
    seen: set[int] = set()
    for node in nodes:
        for port, flag in ((node.port, "--port"), (node.controller_port, "--controller-port")):
            if not 0 < port < 65536:
                raise BrokerError(f"port {port} is not a TCP port (1-65535): choose another {flag}")
            if port in seen:
                raise BrokerError(f"port {port} is given twice: each broker needs its own ports")
            seen.add(port)
            if not port_is_free(port):
                raise BrokerError(
                    f"port {port} on {HOST} is already in use by another process: "
                    f"stop it or choose another with {flag}"
                )
    _java()


def _node_homes(home: Path) -> list[Path]:
    homes = [path for path in home.glob(_NODE_DIR.format("*")) if path.is_dir()]
    return sorted(homes, key=lambda path: int(path.name.rpartition("-")[2] or 0))


def _new_cluster_id() -> str:
    """A Kafka `Uuid` in its base64url form, as `kafka-storage.sh random-uuid` prints it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _cluster_id(nodes: Sequence[_Node], *, fresh: bool) -> str:
    """The id the nodes' data dirs are formatted with; a new one if none is formatted yet."""
    for node in nodes:
        if fresh and _running_pid(node.home) is None:
            shutil.rmtree(node.home / "data", ignore_errors=True)
    for node in nodes:
        meta = node.home / "data" / "meta.properties"
        if meta.is_file():
            match = re.search(r"^cluster\.id=(\S+)", meta.read_text(), re.MULTILINE)
            if match:
                return match.group(1)
    return _new_cluster_id()


def _java_command(node: _Node, classpath: str, heap_mb: int) -> list[str]:
    logs = node.home / "logs"
    return [
        _java(),
        f"-Xmx{heap_mb}m",
        f"-Xms{min(heap_mb, 128)}m",
        "-XX:+ExitOnOutOfMemoryError",
        f"-XX:ErrorFile={logs}/hs_err_pid%p.log",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={logs}",
        "-cp",
        classpath,
    ]


def _configure(
    node: _Node, *, voters: Sequence[_Node], classpath: str, cluster_id: str, heap_mb: int
) -> None:
    """Write `server.properties` and format the data dir if it is not formatted yet."""
    data = node.home / "data"
    (node.home / "logs").mkdir(parents=True, exist_ok=True)
    replication = min(len(voters), 3)
    properties = Template(SERVER_TEMPLATE.read_text()).substitute(
        node_id=node.node_id,
        voters=",".join(f"{v.node_id}@{HOST}:{v.controller_port}" for v in voters),
        port=node.port,
        controller_port=node.controller_port,
        data_dir=data,
        replication=replication,
        min_isr=min(replication, 2),
    )
    (node.home / _PROPERTIES).write_text(properties)
    if (data / "meta.properties").is_file():
        return
    command = [
        *_java_command(node, classpath, heap_mb=min(heap_mb, 256)),
        "kafka.tools.StorageTool",
        *("format", "--ignore-formatted", "-t", cluster_id, "-c", str(node.home / _PROPERTIES)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(
            f"formatting {data} failed (exit {done.returncode}): "
            f"{_last_line(done.stdout + done.stderr) or 'no output'}; see {log_path(node.home)}"
        )


_PRCTL: Callable[..., int] | None = None
if sys.platform == "linux":  # resolved here, not in the forked child
    with contextlib.suppress(OSError, AttributeError):
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies


@dataclass(frozen=True, slots=True)
class _Launch:
    node: _Node
    child: subprocess.Popen[bytes]
    log_offset: int  # size of server.log before this start: older lines are not its story


def _spawn(node: _Node, classpath: str, *, heap_mb: int, die_with_parent: bool) -> _Launch:
    command = [
        *_java_command(node, classpath, heap_mb),
        "kafka.Kafka",
        str(node.home / _PROPERTIES),
    ]
    try:
        log_offset = log_path(node.home).stat().st_size
    except OSError:
        log_offset = 0
    with (node.home / "logs" / "stdout.log").open("wb") as out:
        child = subprocess.Popen(
            command,
            cwd=node.home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `edgeml broker up`; Ctrl-C elsewhere won't reach it
            preexec_fn=_die_with_parent if die_with_parent and _PRCTL is not None else None,
        )
    _children[child.pid] = child
    (node.home / _PID_FILE).write_text(f"{child.pid}\n")
    return _Launch(node, child, log_offset)


_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?[\w.$]+\.(\w+(?:Exception|Error)):\s*(.+)$")


def _log_reason(launch: _Launch) -> str:
    """Why a broker that just exited failed, from this run's log lines, in one line ('' if unknown).

    The exception message under the last ERROR line of server.log, else the last line the JVM
    printed (such as an UnsupportedClassVersionError).
    """
    lines: list[str] = []
    server_log = log_path(launch.node.home)
    with contextlib.suppress(OSError), server_log.open("rb") as log:
        if server_log.stat().st_size >= launch.log_offset:
            log.seek(launch.log_offset)
        lines = log.read().decode(errors="replace").splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if re.match(r"^\[[^]]*\] (ERROR|FATAL) ", lines[index]):
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            match = _EXCEPTION_LINE.match(following)
            if match:
                return f"{match.group(1)}: {match.group(2)}"[:300]
            return re.sub(r"^\[[^]]*\] ", "", lines[index])[:300]
    with contextlib.suppress(OSError):
        return _last_line((launch.node.home / "logs" / "stdout.log").read_text(errors="replace"))
    return ""


def _unfenced_brokers(bootstrap: str) -> set[int]:
    """Ids of the unfenced brokers the cluster reports via `bootstrap` (empty if unreachable)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return set()
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="edgeml-broker-probe",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=3000,
        )
    except (KafkaError, OSError):
        return set()
    try:
        cluster = admin.describe_cluster()
    except (KafkaError, OSError):
        return set()
    finally:
        admin.close()
    return {
        int(broker.get("broker_id", broker.get("node_id", -1)))
        for broker in cluster.get("brokers", [])
        if not broker.get("is_fenced", False)
    }


def _wait_ready(nodes: Sequence[_Node], started: Sequence[_Launch], *, timeout_s: float) -> None:
    """Wait until each node reports every node as an unfenced broker; on failure stop `started`."""
    expected = {node.node_id for node in nodes}
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            for launch in started:
                code = launch.child.poll()
                if code is not None:
                    reason = _log_reason(launch)
                    raise BrokerError(
                        f"Kafka broker exited with code {code} during startup"
                        f"{': ' + reason if reason else ''}; see {log_path(launch.node.home)}"
                    )
            # Every node must see every broker unfenced: then any of them can bootstrap a client.
            if all(expected <= _unfenced_brokers(f"{HOST}:{node.port}") for node in nodes):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"Kafka broker on {HOST}:{nodes[0].port} did not become ready within "
                    f"{timeout_s:.0f} s; see {log_path(nodes[0].home)}"
                )
            time.sleep(0.25)
    except BaseException:
        _stop_all([launch.node.home for launch in started], timeout_s=10.0)
        raise


def _stop_all(homes: Sequence[Path], *, timeout_s: float) -> list[BrokerInfo]:
    """SIGTERM every broker running from `homes`, wait for all, SIGKILL the stragglers."""
    running = [info for info in (status(home) for home in homes) if info.pid is not None]
    pids = {info.pid: info.home for info in running if info.pid is not None}
    _signal(pids, signal.SIGTERM)
    alive = _wait_gone(pids, timeout_s)
    if alive:
        _signal(alive, signal.SIGKILL)
        alive = _wait_gone(alive, 10.0)
        if alive:
            raise BrokerError(f"Kafka broker (pid {', '.join(map(str, alive))}) survived SIGKILL")
    for pid, home in pids.items():
        (home / _PID_FILE).unlink(missing_ok=True)
        _children.pop(pid, None)
    return running


def _signal(pids: dict[int, Path], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise BrokerError(f"not allowed to stop the Kafka broker with pid {pid}") from None


def _wait_gone(pids: dict[int, Path], timeout_s: float) -> dict[int, Path]:
    """Wait until the brokers have exited; returns those still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    alive = dict(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid: home for pid, home in alive.items() if _is_our_broker(pid, home)}
    return alive
