"""Checks a response against docs/oip.openapi.yaml (OpenAPI 3.1: its schemas are JSON Schema
2020-12, so jsonschema validates them as they are). Used by the server's unit and integration
tests; `check` fails when the documented status or body and the real one disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC_PATH = Path(__file__).resolve().parents[4] / "docs" / "oip.openapi.yaml"


class OipSpec:
    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.doc: dict[str, Any] = yaml.safe_load(path.read_text())
        Draft202012Validator.check_schema({"$defs": self.doc["components"]["schemas"]})
        self.checked: set[tuple[str, str, int]] = set()

    def _deref(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            node: Any = self.doc
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def check(self, method: str, template: str, status: int, body: Any) -> None:
        """Assert that `template` documents `method` answering `status` with this JSON body."""
        operation = self.doc["paths"][template][method.lower()]
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {template}: {status} is not documented"
        response = self._deref(responses[str(status)])
        schema = response["content"]["application/json"]["schema"]
        # the document as root, so `#/components/...` references resolve inside it
        Draft202012Validator({**self.doc, **schema}).validate(body)
        self.checked.add((method.upper(), template, status))
