"""docker-compose.yml cannot run here (no Docker engine): keep it valid against the Compose spec."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "data" / "compose-spec.json").read_text())


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification() -> None:
    jsonschema.Draft201909Validator(SCHEMA).validate(_compose())


def test_schema_rejects_a_broken_compose_file() -> None:
    broken = _compose()
    broken["services"]["worker"]["ports"] = {"not": "a list"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(SCHEMA).validate(broken)


def test_services_point_at_the_in_network_listener() -> None:
    services = _compose()["services"]
    assert {"kafka", "worker", "simulator"} <= set(services)
    for name in ("worker", "simulator"):
        assert services[name]["environment"]["EDGEML_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
