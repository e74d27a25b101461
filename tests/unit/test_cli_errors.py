"""Every way a user can get `edgeml` wrong (or meet a broker that is down) ends in one line on
stderr and exit 1 (operational) or 2 (input to change), never a traceback. Each case runs the
real console entry in a subprocess; the broker address is the discard port 127.0.0.1:9, which
refuses connections at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_BROKER = "127.0.0.1:9"
READING = b'{"device_id": "d1", "ts": 1767225600, "metrics": {"temp": 21.5}}\n'


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-inputs")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (root / "late-garbage.csv").write_bytes(
        b"device_id,ts,temp\nd1,1767225600,21.5\n\xff\xfe,1,2\n"
    )
    (root / "bad-second-line.jsonl").write_bytes(READING + b'{"device_id": "d1", "ts": \n')
    (root / "array-line.jsonl").write_bytes(READING + b"[1, 2]\n")
    (root / "no-device.csv").write_bytes(b"ts,temp\n1767225600,21.5\n")
    return root


CASES = [
    # (id, args, extra environment, exit code, text on the one stderr line)
    ("binary-csv", ["replay", "{files}/binary.csv"], {}, 2,
     "binary.csv:2: not UTF-8 text (invalid start byte at column 118)"),  # 0x80 at byte 128
    ("garbage-on-line-3", ["replay", "{files}/late-garbage.csv"], {}, 2,
     "late-garbage.csv:3: not UTF-8 text"),
    ("unreadable-file", ["replay", "/proc/self/mem", "--format", "csv"], {}, 1,
     "cannot read /proc/self/mem: Input/output error"),
    ("jsonl-bad-second-line", ["replay", "{files}/bad-second-line.jsonl"], {}, 2,
     "bad-second-line.jsonl:2: not JSON"),
    ("jsonl-not-an-object", ["replay", "{files}/array-line.jsonl"], {}, 2,
     "array-line.jsonl:2: expected a JSON object per line"),
    ("replay-missing-column", ["replay", "{files}/no-device.csv"], {}, 2,
     "no device_id column; give --device ID"),
    ("replay-missing-file", ["replay", "{files}/nope.csv"], {}, 2, "does not exist"),
    ("tail-broker-down", ["tail", "alerts", "--timeout", "5"], {}, 1,
     f"cannot reach Kafka at {NO_BROKER}"),
    ("tail-unknown-kind", ["tail", "alarms"], {}, 2, "'alarms'; choose one of: alerts"),
    ("port-not-a-number", ["tail", "alerts"], {"EDGEML_WEB_PORT": "abc"}, 2,
     "EDGEML_WEB_PORT='abc': Input should be a valid integer"),
    ("port-out-of-range", ["tail", "alerts"], {"EDGEML_WEB_PORT": "70000"}, 2,
     "EDGEML_WEB_PORT='70000': Input should be less than or equal to 65535"),
    ("gc-threshold-negative", ["tail", "alerts"], {"EDGEML_GC_THRESHOLD": "-5"}, 2,
     "EDGEML_GC_THRESHOLD='-5': Input should be greater than or equal to 0"),
    ("store-unknown", ["replay", "{files}/binary.csv"], {"EDGEML_STORE": "redis://"}, 2,
     "EDGEML_STORE='redis://': store must start with rocksdb://"),
    ("sasl-without-mechanism", ["tail", "alerts"], {"EDGEML_SECURITY_PROTOCOL": "SASL_SSL"}, 2,
     "EDGEML_SECURITY_PROTOCOL=SASL_SSL needs EDGEML_SASL_MECHANISM (one of PLAIN"),
    ("unknown-mechanism", ["tail", "alerts"],
     {"EDGEML_SECURITY_PROTOCOL": "SASL_SSL", "EDGEML_SASL_MECHANISM": "MD5"}, 2,
     "EDGEML_SASL_MECHANISM='MD5': Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
    ("cert-without-key", ["tail", "alerts"],
     {"EDGEML_SECURITY_PROTOCOL": "SSL", "EDGEML_SSL_CERTFILE": "{files}/binary.csv"}, 2,
     "EDGEML_SSL_CERTFILE needs EDGEML_SSL_KEYFILE too"),
    ("cert-not-pem", ["tail", "alerts"],
     {"EDGEML_SECURITY_PROTOCOL": "SSL", "EDGEML_SSL_CAFILE": "{files}/binary.csv"}, 2,
     "EDGEML_SSL_CAFILE: cannot load"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "env", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_failure_is_one_line_with_its_exit_code(
    files: Path, args: list[str], env: dict[str, str], code: int, text: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    environment = (
        base
        | {"EDGEML_BOOTSTRAP_SERVERS": NO_BROKER}
        | {k: v.format(files=files) for k, v in env.items()}
    )
    result = subprocess.run(
        [sys.executable, "-m", "edgeml.app", *(a.format(files=files) for a in args)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert text in lines[0], lines[0]
    assert result.returncode == code, result.stderr


def test_csv_lines_decoded_one_by_one_keep_quoted_newlines_and_the_bom(tmp_path: Path) -> None:
    """`read_rows` decodes CSV per line (to report a bad byte at its own line): a quoted field
    spanning lines, CRLF endings and a UTF-8 BOM still read as before."""
    from edgeml.sim.replay import read_rows

    path = tmp_path / "quoted.csv"
    path.write_bytes(b'\xef\xbb\xbfdevice_id,ts,note\r\nd1,1767225600,"two\r\nlines"\r\nd2,1,x\r\n')
    assert list(read_rows(path)) == [
        {"device_id": "d1", "ts": "1767225600", "note": "two\r\nlines"},
        {"device_id": "d2", "ts": "1", "note": "x"},
    ]


async def test_a_send_that_fails_part_way_leaves_the_count_with_the_caller() -> None:
    """`edgeml replay` reports how many readings went out when the broker fails mid-file."""
    from edgeml.sim.replay import to_readings
    from edgeml.sim.sender import SendStats, plan_messages, send_messages

    class FailingThird:
        sent = 0

        async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None):
            if self.sent == 2:
                raise ConnectionError("broker gone")
            self.sent += 1
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

    rows = [{"device_id": "d1", "ts": 1767225600 + n, "temp": 1.0} for n in range(5)]
    stats = SendStats()
    with pytest.raises(ConnectionError):
        await send_messages(FailingThird(), plan_messages(to_readings(rows)), stats=stats)
    assert (stats.readings, stats.messages) == (2, 2)


def test_defaults_left_unbuilt_by_another_error_are_not_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pydantic also reports the settings whose default factories did not run because another
    field failed (`EDGEML_BROKER_HOME`, `EDGEML_KAFKA_CACHE`): the line names the cause only."""
    from pydantic import ValidationError

    from edgeml.app.cli.errors import describe_validation_error
    from edgeml.app.settings import Settings

    monkeypatch.setenv("EDGEML_GC_THRESHOLD", "abc")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert {e["type"] for e in caught.value.errors()} >= {"default_factory_not_called"}
    assert describe_validation_error(caught.value) == (
        "EDGEML_GC_THRESHOLD='abc': Input should be a valid integer, unable to parse string as "
        "an integer"
    )
