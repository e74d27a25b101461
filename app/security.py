"""TLS and SASL for every Kafka client, from the one `Settings` object.

Three client libraries talk to the broker: Faust (its own aiokafka consumer and producer,
configured through `broker_credentials`), aiokafka directly (`edgeml tail`, `replay`,
`simulate`, `evaluate`, the web alert feed) and kafka-python (`app.kafka_admin`). aiokafka and
kafka-python take the same keys (`security_protocol`, `ssl_context`, `sasl_mechanism`,
`sasl_plain_username`, `sasl_plain_password`), so `client_security` builds them once; Faust gets
the same SSL context wrapped in its credentials by `app.factory`.

- `ssl_context(settings)` is the one place an `ssl.SSLContext` is built (from
  `EDGEML_SSL_CAFILE` / `_CERTFILE` / `_KEYFILE`); None unless the protocol uses TLS.
- `check_security(settings)` rejects combinations that would silently connect less securely
  than configured (a SASL mechanism with `PLAINTEXT`, CA files without TLS, a certificate
  without its key), each with one line naming the variables.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, get_args

from edgeml.app.errors import ConfigError

if TYPE_CHECKING:
    from edgeml.app.settings import Settings

__all__ = [
    "SASL_PROTOCOLS",
    "SSL_PROTOCOLS",
    "check_security",
    "client_security",
    "sasl_mechanisms",
    "ssl_context",
]

SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


def sasl_mechanisms() -> tuple[str, ...]:
    """The SASL mechanisms `EDGEML_SASL_MECHANISM` accepts (from the field's type)."""
    from edgeml.app.settings import Settings

    annotation = Settings.model_fields["sasl_mechanism"].annotation
    return tuple(m for arg in get_args(annotation) for m in get_args(arg))


def check_security(settings: Settings) -> None:
    """Raise ValueError (one line) for a security setup that cannot work as written."""
    protocol = settings.security_protocol
    where = f"EDGEML_SECURITY_PROTOCOL={protocol}"
    if protocol in SASL_PROTOCOLS:
        if settings.sasl_mechanism is None:
            raise ValueError(
                f"{where} needs EDGEML_SASL_MECHANISM (one of {', '.join(sasl_mechanisms())})"
            )
        missing = [
            name
            for name, value in (
                ("EDGEML_SASL_USERNAME", settings.sasl_username),
                ("EDGEML_SASL_PASSWORD", settings.sasl_password),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"{where} needs {' and '.join(missing)}")
    else:
        given = [
            name
            for name, value in (
                ("EDGEML_SASL_MECHANISM", settings.sasl_mechanism),
                ("EDGEML_SASL_USERNAME", settings.sasl_username),
                ("EDGEML_SASL_PASSWORD", settings.sasl_password),
            )
            if value
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} set but {where} does not authenticate; "
                "use SASL_PLAINTEXT or SASL_SSL"
            )
    files = {
        "EDGEML_SSL_CAFILE": settings.ssl_cafile,
        "EDGEML_SSL_CERTFILE": settings.ssl_certfile,
        "EDGEML_SSL_KEYFILE": settings.ssl_keyfile,
    }
    if protocol not in SSL_PROTOCOLS:
        given = [name for name, path in files.items() if path is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} set but {where} does not use TLS; use SSL or SASL_SSL"
            )
        return
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        has, lacks = (
            ("EDGEML_SSL_CERTFILE", "EDGEML_SSL_KEYFILE")
            if settings.ssl_keyfile is None
            else ("EDGEML_SSL_KEYFILE", "EDGEML_SSL_CERTFILE")
        )
        raise ValueError(
            f"{has} needs {lacks} too (the same file if the PEM holds certificate and key)"
        )
    for name, path in files.items():
        if path is not None and not path.is_file():
            raise ValueError(f"{name}: no such file {path}")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for `SSL` / `SASL_SSL` (None otherwise): verifies the brokers against
    `ssl_cafile` (default: the system CAs) and presents the client certificate if one is set.
    Raises `ConfigError` (one line) when a file cannot be loaded."""
    if settings.security_protocol not in SSL_PROTOCOLS:
        return None
    cafile = settings.ssl_cafile
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"EDGEML_SSL_CAFILE: cannot load {cafile}: {_reason(exc)}") from None
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        try:
            context.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"EDGEML_SSL_CERTFILE/_KEYFILE: cannot load {settings.ssl_certfile} with key "
                f"{settings.ssl_keyfile}: {_reason(exc)}"
            ) from None
    return context


def client_security(settings: Settings) -> dict[str, Any]:
    """`security_protocol`, `ssl_context` and `sasl_*` options for aiokafka and kafka-python."""
    config: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        config["ssl_context"] = context
    if settings.security_protocol in SASL_PROTOCOLS:
        password = settings.sasl_password
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = password.get_secret_value() if password else None
    return config


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
