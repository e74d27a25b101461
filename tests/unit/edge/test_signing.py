"""Signed models on the edge: `edgeml edge keygen` / `sign`, and an agent with a public key loads
only a promoted model it signed; unsigned, badly signed and tampered ones are refused with one
log line and a metric, and the agent scores on with the online model."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edgeml.app.settings import Settings
from edgeml.edge.agent import EdgeAgent
from edgeml.edge.metrics import render
from edgeml.edge.settings import EdgeSettings
from edgeml.edge.signing import SIGNATURE, UntrustedModel, generate_keypair, sign_version
from edgeml.models.shipped import SHIPPED_ROOT

VERSION = Path("failure-gbm") / "2"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    shutil.copytree(SHIPPED_ROOT, root)
    return root


@pytest.fixture
def keys(
    tmp_path: Path,
    invoke_cli: Callable[..., tuple[int, str, str]],
    settings_factory: Callable[..., Settings],
) -> tuple[Path, Path]:
    status, _, err = invoke_cli(settings_factory(), "edge", "keygen", "--out", str(tmp_path))
    assert status == 0, err
    private, public = tmp_path / "edge-signing.key", tmp_path / "edge-signing.pub"
    assert private.stat().st_mode & 0o077 == 0  # the private key is the owner's only
    return private, public


def _agent(tmp_path: Path, registry: Path, public: Path) -> EdgeAgent:
    settings = EdgeSettings(
        db_path=tmp_path / "edge.db", registry_root=registry, model_public_key=public, web_port=0
    )
    return EdgeAgent(settings)


def _scores_one(agent: EdgeAgent) -> None:
    reading = {"device_id": "d", "ts": 1_767_225_600.0, "seq": 0, "metrics": {"t": 1.0}}
    outcome = agent.runner.run([orjson.dumps(reading)])
    assert outcome.result.readings == 1


def test_a_signed_model_is_loaded(
    tmp_path: Path,
    registry: Path,
    keys: tuple[Path, Path],
    invoke_cli: Callable[..., tuple[int, str, str]],
    settings_factory: Callable[..., Settings],
) -> None:
    private, public = keys
    status, _, err = invoke_cli(
        settings_factory(), "edge", "sign", str(registry / VERSION), "--key", str(private)
    )
    assert status == 0, err
    assert (registry / VERSION / SIGNATURE).is_file()
    agent = _agent(tmp_path, registry, public)
    assert agent.model_version == "failure-gbm@2"
    assert agent.metrics.models_refused == {}
    _scores_one(agent)


def _tamper_model(version: Path) -> None:
    model = version / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")


def _sign_then_tamper(version: Path, private: Path) -> None:
    sign_version(version, private.read_bytes())  # a valid signature over the manifest ...
    _tamper_model(version)  # ... and model bytes that no longer hash to its sha256


def _sign_with_another_key(version: Path) -> None:
    sign_version(version, generate_keypair()[0])


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (lambda version, private: None, "unsigned"),
        (lambda version, private: _sign_with_another_key(version), "bad_signature"),
        (lambda version, private: _sign_then_tamper(version, private), "tampered"),
    ],
)
def test_an_untrusted_model_is_refused_and_counted(
    tmp_path: Path,
    registry: Path,
    keys: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
    prepare: Callable[[Path, Path], object],
    reason: str,
) -> None:
    private, public = keys
    prepare(registry / VERSION, private)
    with caplog.at_level(logging.ERROR, logger="edgeml.edge"):
        agent = _agent(tmp_path, registry, public)
    refusals = [r.getMessage() for r in caplog.records if "refusing model" in r.getMessage()]
    assert len(refusals) == 1 and "failure-gbm@2" in refusals[0]
    assert agent.metrics.models_refused == {reason: 1}
    assert agent.model_version.startswith("residual-ensemble@")  # no failure model
    text = render(agent.metrics, agent.outbox, "a", agent.model_version)
    assert f'edgeml_edge_model_refused_total{{reason="{reason}"}} 1' in text
    _scores_one(agent)  # it keeps scoring with the online model


def test_sign_writes_the_golden_set_and_publish_refuses_an_unsigned_version(
    tmp_path: Path,
    registry: Path,
    keys: tuple[Path, Path],
    invoke_cli: Callable[..., tuple[int, str, str]],
    settings_factory: Callable[..., Settings],
) -> None:
    from edgeml.edge.signing import GOLDEN, verify_version

    private, public = keys
    version = registry / "failure-gbm" / "1"
    status, _, err = invoke_cli(settings_factory(), "edge", "publish", str(version))
    assert status == 2 and "has no manifest.json.sig: sign it first" in err
    assert len(err.strip().splitlines()) == 1
    status, out, err = invoke_cli(
        settings_factory(), "edge", "sign", str(version), "--key", str(private)
    )
    assert status == 0, err
    assert f"wrote {version / GOLDEN}" in out
    verify_version(version, public.read_bytes())
    (version / GOLDEN).unlink()  # the signature covers the golden set: removing it is caught
    with pytest.raises(UntrustedModel, match="bad signature"):
        verify_version(version, public.read_bytes())
