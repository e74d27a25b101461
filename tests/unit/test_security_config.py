"""TLS and SASL from one `Settings`: what Faust, aiokafka and kafka-python are each given for
PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL, the SSL context doing mutual TLS, and one-line
errors for combinations that would connect less securely than configured (no broker)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka.admin import KafkaAdminClient
from kafka.producer import KafkaProducer
from pydantic import ValidationError

from edgeml.app import kafka_admin
from edgeml.app.cli.errors import describe_validation_error
from edgeml.app.errors import ConfigError
from edgeml.app.factory import _broker_credentials, create_app
from edgeml.app.settings import Settings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client and a server certificate it signed (EC keys: fast to make)."""
    root = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=edgeml-test-ca")  # fmt: skip
    for name in ("client", "server"):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=edgeml-test-{name}")  # fmt: skip
        (root / f"{name}.ext").write_text("subjectAltName=DNS:localhost\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext")  # fmt: skip
    return {p.name.removesuffix(".pem"): p for p in root.iterdir()}


def _settings(protocol: str, pki: dict[str, Path], **extra: Any) -> Settings:
    fields: dict[str, Any] = {"security_protocol": protocol, "store": "memory://"}
    if protocol.startswith("SASL_"):
        fields |= {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "edge",
                   "sasl_password": "s3cret"}  # fmt: skip
    if protocol.endswith("SSL"):
        fields |= {"ssl_cafile": pki["ca"], "ssl_certfile": pki["client"],
                   "ssl_keyfile": pki["client.key"]}  # fmt: skip
    return Settings(**(fields | extra))


PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_client_is_given_the_protocol_its_sasl_and_its_tls(
    protocol: str, pki: dict[str, Path]
) -> None:
    settings = _settings(protocol, pki)
    tls, sasl = protocol.endswith("SSL"), protocol.startswith("SASL_")

    # aiokafka and kafka-python: the shared client options
    config = settings.kafka_client_config()
    assert config["security_protocol"] == protocol
    assert isinstance(config.get("ssl_context"), ssl.SSLContext) is tls
    if tls:
        assert config["ssl_context"].verify_mode == ssl.CERT_REQUIRED
        assert config["ssl_context"].check_hostname
    expected_sasl = ("SCRAM-SHA-512", "edge", "s3cret") if sasl else (None, None, None)
    assert tuple(config.get(k) for k in ("sasl_mechanism", "sasl_plain_username",
                                         "sasl_plain_password")) == expected_sasl  # fmt: skip

    # Faust: what its aiokafka consumer and producer get from broker_credentials
    auth = credentials_to_aiokafka_auth(_broker_credentials(settings))
    assert auth["security_protocol"] == protocol
    assert isinstance(auth.get("ssl_context"), ssl.SSLContext) is tls
    assert auth.get("sasl_mechanism") == expected_sasl[0]
    assert (auth.get("sasl_plain_username"), auth.get("sasl_plain_password")) == (
        expected_sasl[1:] if sasl else (None, None)
    )


def test_the_worker_app_carries_sasl_over_tls(
    pki: dict[str, Path], settings_factory: Callable[..., Settings]
) -> None:
    base = _settings("SASL_SSL", pki)
    app = create_app(settings_factory(**{k: getattr(base, k) for k in (
        "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
        "ssl_cafile", "ssl_certfile", "ssl_keyfile")}))  # fmt: skip
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert auth["security_protocol"] == "SASL_SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_aiokafka_clients_accept_the_config(protocol: str, pki: dict[str, Path]) -> None:
    settings = _settings(protocol, pki)
    consumer = AIOKafkaConsumer(**settings.consumer_config(None))  # constructed, not started
    producer = AIOKafkaProducer(**settings.producer_config())
    try:
        for client in (consumer._client, producer.client):
            assert client._security_protocol == protocol
            assert isinstance(client._ssl_context, ssl.SSLContext) is protocol.endswith("SSL")
            if protocol.startswith("SASL_"):  # aiokafka's default is PLAIN, used only by SASL_*
                assert (client._sasl_mechanism, client._sasl_plain_username) == (
                    "SCRAM-SHA-512",
                    "edge",
                )
    finally:
        await consumer.stop()
        await producer.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kafka_python_clients_are_given_only_keys_they_know(
    protocol: str, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(protocol, pki)
    assert set(settings.kafka_client_config()) <= set(KafkaAdminClient.DEFAULT_CONFIG)
    assert set(settings.producer_config()) <= set(KafkaProducer.DEFAULT_CONFIG)
    given: dict[str, Any] = {}

    class Admin:
        def __init__(self, **config: Any) -> None:
            given.update(config)

        def list_topics(self) -> list[str]:
            return [settings.topic(spec.name) for spec in kafka_admin.ALL_TOPICS]

        def close(self) -> None:
            pass

    monkeypatch.setattr("kafka.admin.KafkaAdminClient", Admin)
    assert kafka_admin.ensure_topics(settings) == []
    assert given["security_protocol"] == protocol
    assert isinstance(given.get("ssl_context"), ssl.SSLContext) is protocol.endswith("SSL")
    assert given.get("sasl_mechanism") == settings.sasl_mechanism


def test_the_ssl_context_does_mutual_tls_with_the_configured_files(pki: dict[str, Path]) -> None:
    """A handshake in memory against a server that demands a client certificate from the CA."""
    client_context = _settings("SSL", pki).ssl_context()
    assert client_context is not None
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_cert_chain(str(pki["server"]), str(pki["server.key"]))
    server = _handshake(client_context, server_context, "localhost")
    peer: Any = server.getpeercert()  # typeshed's union hides the nested-tuple layout
    assert dict(rdn[0] for rdn in peer["subject"])["commonName"] == "edgeml-test-client"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(client_context, server_context, "kafka.example.com")
    lenient = _settings("SSL", pki, ssl_check_hostname=False).ssl_context()
    assert lenient is not None
    _handshake(lenient, server_context, "kafka.example.com")
    system_cas = _settings("SSL", pki, ssl_cafile=None).ssl_context()  # server's CA unknown
    assert system_cas is not None
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(system_cas, server_context, "localhost")


def _handshake(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, hostname: str
) -> ssl.SSLObject:
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return server
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs EDGEML_SASL_MECHANISM (one of PLAIN, "
         "SCRAM-SHA-256, SCRAM-SHA-512)"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
         "needs EDGEML_SASL_USERNAME and EDGEML_SASL_PASSWORD"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
          "sasl_username": "u"}, "SASL_PLAINTEXT needs EDGEML_SASL_PASSWORD"),
        ({"sasl_mechanism": "SCRAM-SHA-256"}, "EDGEML_SASL_MECHANISM set but "
         "EDGEML_SECURITY_PROTOCOL=PLAINTEXT does not authenticate"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
          "sasl_password": "p", "ssl_cafile": "ca"}, "EDGEML_SSL_CAFILE set but "
         "EDGEML_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS"),
        ({"security_protocol": "SSL", "ssl_certfile": "client"},
         "EDGEML_SSL_CERTFILE needs EDGEML_SSL_KEYFILE too"),
        ({"security_protocol": "SSL", "ssl_keyfile": "client.key"},
         "EDGEML_SSL_KEYFILE needs EDGEML_SSL_CERTFILE too"),
        ({"security_protocol": "SSL", "ssl_cafile": "missing.pem"},
         "EDGEML_SSL_CAFILE: no such file"),
        ({"security_protocol": "TLS"}, "EDGEML_SECURITY_PROTOCOL='TLS': Input should be "
         "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
         "EDGEML_SASL_MECHANISM='GSSAPI': Input should be 'PLAIN', 'SCRAM-SHA-256' or "
         "'SCRAM-SHA-512'"),
    ],
)  # fmt: skip
def test_unusable_combinations_fail_with_one_line(
    fields: dict[str, Any], message: str, pki: dict[str, Path]
) -> None:
    named = {k: (pki.get(v, pki["ca"].parent / v) if k.startswith("ssl_") else v)
             for k, v in fields.items()}  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        Settings(**named)
    line = describe_validation_error(caught.value)
    assert message in line and "\n" not in line, line


def test_secret_values_are_not_repeated_in_errors() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(web_token=["not", "a", "string"], web_port="abc")  # type: ignore[arg-type]
    line = describe_validation_error(caught.value)
    assert "EDGEML_WEB_PORT='abc'" in line and "EDGEML_WEB_TOKEN: " in line
    assert "not" not in line.split("EDGEML_WEB_TOKEN")[1].split(":")[0]


def test_files_that_are_not_pem_fail_with_one_line(pki: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"EDGEML_SSL_CAFILE: cannot load .*junk\.pem"):
        _settings("SSL", pki, ssl_cafile=junk).ssl_context()
    with pytest.raises(ConfigError, match=r"EDGEML_SSL_CERTFILE/_KEYFILE: cannot load"):
        _settings("SASL_SSL", pki, ssl_keyfile=pki["server.key"]).ssl_context()  # wrong key
