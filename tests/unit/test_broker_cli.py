"""`edgeml broker` and `infra/kafka/broker.py` without a real broker.

Java and Maven are replaced by small fake executables on an otherwise empty PATH, and a
"running broker" by a sleeping Python process whose command line looks like one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeml.app.cli import main
from edgeml.infra.kafka import broker

CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRun:
    """`run("broker", "up", ...) -> (exit code, stdout, stderr)` through the real `main()`."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["edgeml", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err

    return run


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "kafka-home"


@pytest.fixture
def ports(unused_tcp_port_factory: Callable[[], int]) -> tuple[int, int]:
    return unused_tcp_port_factory(), unused_tcp_port_factory()


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """`make(name, body)`: a Python executable `name` on a PATH that holds nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    def make(name: str, body: str) -> Path:
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\nimport sys, time\nargs = sys.argv[1:]\n{body}")
        path.chmod(0o755)
        return path

    return make


JAVA_17 = """
if "-version" in args:
    print('openjdk version "17.0.9" 2023-10-17', file=sys.stderr)
"""


@pytest.fixture
def fake_running_broker(home: Path, ports: tuple[int, int]) -> Iterator[subprocess.Popen[bytes]]:
    """A process that `status` takes for the broker of `home` (its pid file and command line)."""
    home.mkdir(parents=True)
    properties = home / "server.properties"
    properties.write_text(
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{ports[0]}\n"
        f"listeners=PLAINTEXT://127.0.0.1:{ports[0]},CONTROLLER://127.0.0.1:{ports[1]}\n"
    )
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "kafka.Kafka", str(properties)]
    )
    (home / "broker.pid").write_text(f"{sleeper.pid}\n")
    try:
        yield sleeper
    finally:
        sleeper.kill()
        sleeper.wait()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("edgeml: error: ")
    return lines[0]


# --- up ------------------------------------------------------------------------------------------


def test_up_refuses_a_port_another_process_listens_on(
    run_cli: CliRun, home: Path, ports: tuple[int, int]
) -> None:
    with socket.create_server(("127.0.0.1", ports[0])):
        code, _, err = run_cli("broker", "up", "--home", str(home), "--port", str(ports[0]))
    assert code == 1
    assert f"port {ports[0]} on 127.0.0.1 is already in use by another process" in _one_line(err)
    assert "--port" in err


def test_up_refuses_a_taken_controller_port(
    run_cli: CliRun, home: Path, ports: tuple[int, int]
) -> None:
    port, controller_port = ports
    with socket.create_server(("127.0.0.1", controller_port)):
        code, _, err = run_cli(
            "broker", "up", "--home", str(home), "--port", str(port),
            "--controller-port", str(controller_port),
        )  # fmt: skip
    assert code == 1
    assert f"port {controller_port}" in _one_line(err) and "--controller-port" in err


def test_up_without_java_says_what_to_install(
    run_cli: CliRun, home: Path, ports: tuple[int, int], fake_bin: Callable[..., Path]
) -> None:
    code, _, err = run_cli(
        "broker", "up", "--home", str(home), "--port", str(ports[0]),
        "--controller-port", str(ports[1]),
    )  # fmt: skip
    assert code == 1
    assert _one_line(err) == (
        "edgeml: error: Java not found on PATH: "
        "install OpenJDK 17+ or use `docker compose up kafka`"
    )


def test_up_with_java_8_says_it_is_too_old(
    run_cli: CliRun, home: Path, ports: tuple[int, int], fake_bin: Callable[..., Path]
) -> None:
    fake_bin("java", "print('java version \"1.8.0_392\"', file=sys.stderr)\n")
    code, _, err = run_cli(
        "broker", "up", "--home", str(home), "--port", str(ports[0]),
        "--controller-port", str(ports[1]),
    )  # fmt: skip
    assert code == 1
    assert "Java 8" in _one_line(err) and "install OpenJDK 17+" in err


def test_up_without_maven_and_no_cached_kafka_says_so(
    run_cli: CliRun,
    home: Path,
    ports: tuple[int, int],
    fake_bin: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_bin("java", JAVA_17)
    monkeypatch.setenv("EDGEML_KAFKA_CACHE", str(tmp_path / "empty-cache"))
    code, _, err = run_cli(
        "broker", "up", "--home", str(home), "--port", str(ports[0]),
        "--controller-port", str(ports[1]),
    )  # fmt: skip
    assert code == 1
    assert "Maven (mvn) not found on PATH" in _one_line(err)


def test_up_says_already_running_with_pid_and_port(
    run_cli: CliRun,
    home: Path,
    ports: tuple[int, int],
    fake_running_broker: subprocess.Popen[bytes],
) -> None:
    code, _, err = run_cli("broker", "up", "--home", str(home), "--port", str(ports[0]))
    assert code == 1
    line = _one_line(err)
    assert f"already running (pid {fake_running_broker.pid}, port {ports[0]}" in line


# --- down, status, logs --------------------------------------------------------------------------


def test_down_is_a_no_op_when_nothing_runs(run_cli: CliRun, home: Path) -> None:
    code, out, err = run_cli("broker", "down", "--home", str(home))
    assert (code, err) == (0, "")
    assert "No Kafka broker running" in out


def test_down_stops_the_broker_and_status_follows(
    run_cli: CliRun,
    home: Path,
    ports: tuple[int, int],
    fake_running_broker: subprocess.Popen[bytes],
) -> None:
    code, out, _ = run_cli("broker", "status", "--home", str(home))
    assert code == 0
    assert out.split() == ["running", "pid", str(fake_running_broker.pid), "port", str(ports[0]),
                           "home", str(home)]  # fmt: skip

    code, out, _ = run_cli("broker", "down", "--home", str(home))
    assert code == 0
    assert f"Stopped Kafka broker (pid {fake_running_broker.pid}, port {ports[0]})" in out
    assert fake_running_broker.wait(timeout=5) is not None
    assert not (home / "broker.pid").exists()

    code, out, _ = run_cli("broker", "status", "--home", str(home))
    assert code == 3
    assert out.startswith(f"stopped  port {ports[0]} (last run)")


def test_a_relative_home_names_the_same_broker(
    run_cli: CliRun,
    home: Path,
    fake_running_broker: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(home.parent)
    code, out, _ = run_cli("broker", "status", "--home", home.name)
    assert (code, out.split()[:3]) == (0, ["running", "pid", str(fake_running_broker.pid)])
    assert (home / "broker.pid").exists()


def test_status_removes_a_stale_pid_file(run_cli: CliRun, home: Path) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    home.mkdir()
    (home / "broker.pid").write_text(f"{exited.pid}\n")
    code, out, _ = run_cli("broker", "status", "--home", str(home))
    assert (code, out.split()[0]) == (3, "stopped")
    assert not (home / "broker.pid").exists()


def test_logs_prints_the_last_lines(run_cli: CliRun, home: Path) -> None:
    broker.log_path(home).parent.mkdir(parents=True)
    broker.log_path(home).write_text("".join(f"line {i}\n" for i in range(100)))
    code, out, _ = run_cli("broker", "logs", "--home", str(home), "--lines", "3")
    assert (code, out) == (0, "line 97\nline 98\nline 99\n")


def test_logs_without_a_log_is_one_line_error(run_cli: CliRun, home: Path) -> None:
    code, _, err = run_cli("broker", "logs", "--home", str(home))
    assert code == 1
    assert "no broker log at" in _one_line(err)


# --- fetching Kafka ------------------------------------------------------------------------------

FAKE_MVN = """
calls = __import__("pathlib").Path(sys.argv[0]).with_name("mvn-calls")
calls.open("a").write(" ".join(args) + "\\n")
out = __import__("pathlib").Path(next(a for a in args if a.startswith("-DoutputDirectory="))[18:])
out.mkdir(parents=True, exist_ok=True)
(out / "kafka_2.13-fake.jar").write_bytes(b"jar")
"""


def test_ensure_kafka_runs_maven_once_then_uses_the_cache(
    fake_bin: Callable[..., Path], tmp_path: Path
) -> None:
    fake_bin("java", JAVA_17)
    mvn = fake_bin("mvn", FAKE_MVN)
    cache = tmp_path / "cache"
    progress: list[str] = []

    first = broker.ensure_kafka(cache, echo=progress.append)
    second = broker.ensure_kafka(cache, echo=progress.append)

    libs = cache / f"libs-{broker.KAFKA_VERSION}"
    assert first == second == f"{libs}/*"
    assert (libs / "kafka_2.13-fake.jar").is_file()
    calls = mvn.with_name("mvn-calls").read_text().splitlines()
    assert len(calls) == 1 and "dependency:copy-dependencies" in calls[0]
    assert "-DincludeScope=runtime" in calls[0]
    assert len(progress) == 1 and broker.KAFKA_VERSION in progress[0]
    assert [p.name for p in cache.iterdir()] == [libs.name]  # no staging dirs left behind


def test_ensure_kafka_reports_a_maven_failure_in_one_line(
    fake_bin: Callable[..., Path], tmp_path: Path
) -> None:
    fake_bin("java", JAVA_17)
    fake_bin("mvn", "print('[ERROR] Could not resolve dependencies: no network')\nsys.exit(1)\n")
    with pytest.raises(broker.BrokerError, match=r"exit 1.*Could not resolve dependencies"):
        broker.ensure_kafka(tmp_path / "cache", echo=lambda _: None)
    assert not (tmp_path / "cache" / f"libs-{broker.KAFKA_VERSION}").exists()


# --- start: failures after the JVM was launched --------------------------------------------------


def _fake_kafka_java(fake_bin: Callable[..., Path], on_start: str) -> None:
    fake_bin("java", JAVA_17 + 'elif "kafka.Kafka" in args:\n' + textwrap.indent(on_start, "    "))
    fake_bin("mvn", FAKE_MVN)


def test_start_reports_a_broker_that_exits_during_startup(
    fake_bin: Callable[..., Path], home: Path, ports: tuple[int, int], tmp_path: Path
) -> None:
    _fake_kafka_java(fake_bin, "print('Error: Could not find or load main class kafka.Kafka')\n"
                               "sys.exit(1)\n")  # fmt: skip
    with pytest.raises(broker.BrokerError) as failed:
        broker.start(home, ports[0], controller_port=ports[1], cache_dir=tmp_path / "cache")
    message = str(failed.value)
    assert "exited with code 1 during startup" in message
    assert "Could not find or load main class" in message
    assert str(broker.log_path(home)) in message
    assert not broker.status(home).running


def test_start_gives_up_after_the_timeout_and_stops_the_broker(
    fake_bin: Callable[..., Path], home: Path, ports: tuple[int, int], tmp_path: Path
) -> None:
    _fake_kafka_java(fake_bin, "time.sleep(120)\n")
    began = time.monotonic()
    with pytest.raises(broker.BrokerError, match=r"did not become ready within 1 s; see .*server"):
        broker.start(
            home, ports[0], controller_port=ports[1], cache_dir=tmp_path / "cache", timeout_s=1
        )
    assert time.monotonic() - began < 15
    assert not broker.status(home).running
    assert not (home / "broker.pid").exists()


def test_server_properties_follow_the_ports(
    fake_bin: Callable[..., Path], home: Path, ports: tuple[int, int], tmp_path: Path
) -> None:
    _fake_kafka_java(fake_bin, "sys.exit(3)\n")
    with pytest.raises(broker.BrokerError):
        broker.start(home, ports[0], controller_port=ports[1], cache_dir=tmp_path / "cache")
    properties = (home / "server.properties").read_text()
    assert f"listeners=PLAINTEXT://127.0.0.1:{ports[0]},CONTROLLER://127.0.0.1:{ports[1]}\n" in (
        properties
    )
    assert f"controller.quorum.voters=1@127.0.0.1:{ports[1]}\n" in properties
    assert "offsets.topic.replication.factor=1\n" in properties
    assert "${" not in properties
    info = broker.status(home)
    assert (info.port, info.controller_port, info.running) == (ports[0], ports[1], False)
