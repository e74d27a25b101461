"""`edgeml tail`: record decoding, filters and rendering (no broker)."""

from __future__ import annotations

import sys
from typing import Any

import orjson
import pytest

from edgeml.app.cli import main
from edgeml.app.cli.tail import render
from edgeml.app.tail import TailFilter, _records

DRIVER = {"metric": "vibration", "feature": "fast", "value": 9.1, "zscore": 6.25}
ALERT = {"alert_id": "d1:7", "device_id": "d1", "state": "open", "severity": "warning",
         "ts": 1767225600.0, "score": 0.91, "threshold": 0.5, "site": "plant-a",
         "drivers": [DRIVER]}  # fmt: skip
PREDICTION = {"device_id": "d2", "ts": 1767225601.0, "seq": 3, "anomaly_score": 0.12,
              "failure_prob": 0.01, "is_anomaly": False, "late": True}  # fmt: skip


@pytest.mark.parametrize(
    ("where", "record", "accepted"),
    [
        (TailFilter(), ALERT, True),
        (TailFilter(device="d1"), ALERT, True),
        (TailFilter(device="d2"), ALERT, False),
        (TailFilter(devices=frozenset({"d2", "d1"})), ALERT, True),
        (TailFilter(devices=frozenset({"d2", "d3"})), ALERT, False),
        (TailFilter(min_severity="warning"), ALERT, True),
        (TailFilter(min_severity="critical"), ALERT, False),
        (TailFilter(min_severity="critical"), PREDICTION, True),  # no severity: not filtered
        (TailFilter(anomalies_only=True), PREDICTION, False),
        (TailFilter(anomalies_only=True), PREDICTION | {"is_anomaly": True}, True),
        (TailFilter(anomalies_only=True), ALERT, True),  # alerts have no is_anomaly
    ],
)
def test_filters(where: TailFilter, record: dict[str, Any], accepted: bool) -> None:
    assert where.accepts(record) is accepted


def test_a_bad_severity_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="info, warning, critical"):
        TailFilter(min_severity="fatal")


def test_records_fan_out_envelopes_and_keep_dead_letters_raw() -> None:
    single = list(_records(orjson.dumps(PREDICTION), []))
    assert single == [PREDICTION]
    envelope = {"predictions": [PREDICTION, PREDICTION | {"seq": 4}]}
    assert [r["seq"] for r in _records(orjson.dumps(envelope), [])] == [3, 4]
    headers = [("edgeml.error.class", b"InvalidJson"), ("edgeml.origin.offset", b"7")]
    (letter,) = _records(b"{not json", headers)
    assert letter == {"error.class": "InvalidJson", "origin.offset": "7", "original": "{not json"}


@pytest.mark.parametrize(
    ("kind", "record", "parts"),
    [
        ("alerts", ALERT, ["OPEN", "warning", "d1", "score=0.910", "vibration.fast z=+6.2"]),
        ("predictions", PREDICTION, ["d2", "#3", "anomaly=0.120", "LATE"]),
        ("predictions", PREDICTION | {"is_anomaly": True}, ["ANOMALY"]),
        ("dlq", {"error.class": "WrongType", "error.reason": "ts must be a number",
                 "origin.topic": "sensor-readings", "origin.partition": "1",
                 "origin.offset": "9", "original": '{"ts": "x"}'},
         ["WrongType", "ts must be a number", "sensor-readings[1]@9"]),
    ],
)  # fmt: skip
def test_render(kind: str, record: dict[str, Any], parts: list[str]) -> None:
    line = render(kind, record)
    for part in parts:
        assert part in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tail", "everything"], "choose one of: alerts, predictions, dlq, late"),
        (["tail", "alerts", "--severity", "loud"], "choose one of: info, warning, critical"),
        (["tail", "alerts", "--limit", "0"], "--limit"),
        (["tail", "alerts", "--bootstrap", ""], "--bootstrap: empty; give HOST:PORT"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["edgeml", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
