"""One frozen settings object from `EDGEML_*` environment variables, built once, passed down.

No other module reads `os.environ`: everything that is configurable is a field here.

Where state lives: every directory setting (`data_dir`, `registry_root`, `broker_home`,
`kafka_cache`) defaults to a folder under `home` (`EDGEML_HOME`, else the working directory),
and a relative value resolves against `home` too. Never against the install location: after
`pip install edgeml` that is site-packages, and `edgeml optimize` wrote new model versions into
the package folder (issue #10). From a checkout (cwd = the repository root) the defaults are the
folders they always were: `var/worker-data`, `models/artifacts`, `var/kafka`, `.cache/kafka`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import ssl

    from edgeml.models.analytics import AnalyticsWindows
    from edgeml.models.inference import TaskConfig
    from edgeml.models.inference.pool import PoolSpec
    from edgeml.topics.layout import TopicLayout

__all__ = ["Settings"]

# The directory settings, resolved against `home` when relative (module docstring).
_HOME_PATHS = ("data_dir", "registry_root", "broker_home", "kafka_cache")


def _under_home(*parts: str) -> Callable[[dict[str, Any]], Path]:
    """A default factory for a folder under the already validated `home` field."""

    def default(data: dict[str, Any]) -> Path:
        return Path(data.get("home") or Path.cwd()).joinpath(*parts)

    return default


def _weights(text: str) -> dict[str, float]:
    """'a=2,b=0.5' -> {'a': 2.0, 'b': 0.5} (EDGEML_FAILURE_WEIGHTS)."""
    weights: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name or not weight >= 0:
            raise ValueError(f"weight {item!r} is not name=number (number >= 0)")
        weights[name.strip()] = weight
    return weights


class Settings(BaseSettings):
    """Platform configuration. Create with `Settings()` (env) or `Settings(field=...)` in tests."""

    model_config = SettingsConfigDict(env_prefix="EDGEML_", frozen=True, extra="forbid")

    # --- where state lives (declared first: the directory defaults below are built from it) --
    home: Path = Field(
        default_factory=Path.cwd,
        description="Base of every directory setting and of relative ones; default: the "
        "working directory (never the install location).",
    )

    # --- Kafka -------------------------------------------------------------------------------
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="SSL and SASL_SSL use TLS; SASL_* authenticate."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) to verify the brokers; default: system CAs."
    )
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM).")
    ssl_keyfile: Path | None = Field(
        default=None, description="Client key (PEM; may be the certificate file if it holds both)."
    )
    ssl_check_hostname: bool = Field(
        default=True, description="Verify the broker's certificate names the host dialled."
    )
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    topic_prefix: str = ""
    producer_linger_ms: int = Field(default=5, ge=0)

    # --- Faust app ---------------------------------------------------------------------------
    app_id: str = "edgeml"
    store: str = "rocksdb://"
    data_dir: Path = Field(default_factory=_under_home("var", "worker-data"))
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)

    # --- pipeline ----------------------------------------------------------------------------
    batch_max: int = Field(default=500, ge=1, description="Most messages scored in one batch.")
    scoring_kernel: Literal["compiled", "reference"] = Field(
        default="compiled",
        description="Scoring core: numba-compiled (models.kernel) or the pure-Python reference.",
    )
    batch_within_s: float = Field(
        default=0.005, gt=0, description="Longest wait to fill a batch (adds to latency)."
    )
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    max_future_s: float = Field(default=3600.0, ge=0, description="Clock skew allowed on ts.")
    max_abs_value: float = Field(
        default=1e12, gt=0, le=1e100, description="Largest |metric value| accepted (OutOfRange)."
    )

    # --- analytics, web page and metrics (`agents.analytics`, `app.web`, `app.metrics`) -------
    analytics_tumbling_s: int = Field(default=60, ge=1, description="Tumbling window, event s.")
    analytics_hopping_s: int = Field(default=300, ge=1, description="Hopping window, event s.")
    analytics_hop_s: int = Field(default=60, ge=1, description="Hop of the hopping window.")
    analytics_retention_s: int = Field(
        default=3600, ge=1, description="Event-time seconds of windows kept per device/site."
    )
    analytics_sweep_s: float = Field(
        default=60.0, gt=0, description="Wall seconds between sweeps for devices gone quiet."
    )
    web_canonical_url: str | None = Field(
        default=None,
        description="URL other workers reach this one's web server at (table routing); "
        "default http://<web_host>:<web_port>.",
    )
    web_token: SecretStr | None = Field(
        default=None, description="If set, every endpoint but /health needs this bearer token."
    )
    web_stats: bool = Field(default=True, description="Faust's stats page at / (/assignment/).")
    web_tables: bool = Field(default=False, description="Faust's /table pages (raw state).")
    alerts_backlog: int = Field(
        default=200, ge=0, description="Recent alerts a new browser gets before live ones."
    )

    registry_root: Path = Field(
        default_factory=_under_home("models", "artifacts"),
        description="The model registry (read and written). The default one is filled with the "
        "models the package ships on first use (`seeds_registry`); a root set explicitly is "
        "taken as it is.",
    )
    onnx_threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads.")
    rocksdb_write_buffer_bytes: int = Field(
        default=8 * 2**20,
        ge=2**20,
        description="RocksDB memtable size per table partition (Faust's default is 64 MiB, three "
        "of them, per partition and table: RSS grew by hundreds of MB before the first flush).",
    )
    rocksdb_block_cache_bytes: int = Field(
        default=16 * 2**20, ge=0, description="RocksDB block cache per table partition."
    )
    stall_after_s: float = Field(
        default=120.0,
        gt=0,
        description="/health?probe=live answers 503 once one batch has been in progress this "
        "long while the broker answers (a stuck worker, for the orchestrator to restart); a "
        "batch waiting on an unreachable broker is not stuck.",
    )

    # --- the failure task on the inference engine (`models.inference`, docs/inference.md) -----
    failure_engine: bool = Field(
        default=False,
        description="Serve the failure model through the inference engine (a pool with "
        "golden-set probes, breakers, failover within failure_timeout_s); on by itself when "
        "failure_remote is set. Off: one in-process session, as before.",
    )
    failure_replicas: int = Field(
        default=1, ge=0, le=16, description="In-process ONNX replicas, each on its own thread."
    )
    failure_remote: str = Field(
        default="",
        description="Comma-separated base URLs of Open Inference Protocol v2 servers serving "
        "the failure model (`edgeml serve`, Triton, KServe); web_token is sent to them.",
    )
    failure_remote_model: str = Field(default="failure", description="Its name on them.")
    failure_strategy: Literal[
        "lowest_latency", "best_quality", "least_loaded", "weighted", "route"
    ] = "lowest_latency"
    failure_weights: str = Field(
        default="", description="weighted strategy / aggregation: 'backend-or-ref=w,...'."
    )
    failure_aggregation: Literal["none", "mean", "max", "vote", "stack"] = Field(
        default="none",
        description="none: first answer wins; else fan out and combine (stack: logistic "
        "regression over the backends' logits, learned from delayed maintenance labels).",
    )
    failure_fanout: int = Field(default=0, ge=0, description="Backends per call; 0 = all.")
    failure_timeout_s: float = Field(
        default=0.5, gt=0, le=5.0, description="Per backend call, then fail over."
    )
    failure_deadline_s: float = Field(
        default=2.0, gt=0, le=30.0, description="Per batch, failovers included."
    )
    failure_probe_interval_s: float = Field(
        default=5.0, ge=0, description="Golden-set probes of every backend; 0 = at start only."
    )
    failure_breaker_failures: int = Field(default=3, ge=1, description="Failures to open.")
    failure_breaker_cooldown_s: float = Field(
        default=5.0, ge=0, description="Open this long, then one trial call."
    )
    failure_challenger: str | None = Field(
        default=None,
        description="Shadow scoring: a registry ref ('failure-gbm@1') scored beside the "
        "promoted failure model on every batch, off the critical path; comparisons go to "
        "`model-comparisons` (`edgeml models compare --from-topic`). Unset: no shadow, no cost.",
    )

    # --- worker lifecycle (`app.lifecycle`) --------------------------------------------------
    worker_name: str | None = Field(
        default=None,
        description="Stable name of this worker: its Kafka group.instance.id (static "
        "membership, so a restarted worker takes its partitions back at once); default "
        "<hostname>-<web_port>; empty string: dynamic membership.",
    )
    session_timeout_s: float = Field(
        default=15.0,
        ge=6.0,
        le=90.0,
        description="Kafka consumer session timeout: how long the group waits for a worker "
        "that stopped heartbeating (gone for good, or stopped: static members do not leave) "
        "before its partitions move. Faust's default is 60 s.",
    )
    stop_timeout_s: float = Field(
        default=8.0,
        gt=0,
        description="After SIGTERM or an agent crash: seconds to stop gracefully before the "
        "process exits anyway (as after kill -9: nothing is lost, the batch is redone).",
    )
    outage_log_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="While the broker is unreachable: one WARNING per this many seconds, with "
        "a count of the Kafka client messages suppressed.",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The worker's event loop: uvloop measured 10-20 % more readings/s than "
        "asyncio's own loop at single-reading messages (docs/benchmarks.md).",
    )
    gc_threshold: int = Field(
        default=20_000,
        ge=0,
        description="Python's cyclic GC runs after this many net container allocations (its "
        "default is 700), and the start-up heap (modules, models, the app) is frozen out of "
        "its scans: a batched reading allocated its way into ~3.7 µs of collections of "
        "~18 µs (docs/benchmarks.md). 0 keeps Python's defaults and freezes nothing.",
    )
    library_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Floor for aiokafka/faust/mode loggers: Faust sets the root logger to DEBUG "
        "at -l warn (for its spinner), which otherwise builds a log record per Kafka send.",
    )

    # --- fault injection (tests and `make faults` only) ---------------------------------------
    fault_kill_after_flush: int = Field(
        default=0,
        ge=0,
        description="Test hook, 0 = off: SIGKILL the worker after its Nth commit flush that "
        "wrote state, before that commit's offsets are committed (`agents.writeback`).",
    )
    fault_kill_before_sends: int = Field(
        default=0,
        ge=0,
        description="Test hook, 0 = off: SIGKILL the worker right after its Nth commit flush "
        "that wrote state wrote it locally, before any of its messages is sent.",
    )
    fault_failure_backends: str = Field(
        default="",
        description="Test hook, '' = off: extra failure-task backends that fail, "
        "comma-separated raise | hang | corrupt (`models.inference.pool`); implies the engine.",
    )

    # --- local broker (`edgeml broker`) -------------------------------------------------------
    broker_port: int = Field(default=9092, ge=1, le=65535)
    broker_home: Path = Field(default_factory=_under_home("var", "kafka"))
    kafka_cache: Path = Field(default_factory=_under_home(".cache", "kafka"))

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # Absolute once, here: a worker that changes directory later keeps the same folders.
        return value.expanduser().absolute()

    @field_validator(*_HOME_PATHS)
    @classmethod
    def _relative_to_home(cls, value: Path, info: ValidationInfo) -> Path:
        home = info.data.get("home")  # absent only when `home` itself failed validation
        value = value.expanduser()
        return value if value.is_absolute() or home is None else home / value

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if not value.startswith(("rocksdb://", "memory://", "aerospike://")):
            raise ValueError(f"store must start with rocksdb:// or memory://, got {value!r}")
        return value

    @field_validator("failure_challenger")
    @classmethod
    def _challenger_ref(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        model, sep, version = value.strip().rpartition("@")
        if not sep or not model or not version:
            raise ValueError(f"failure_challenger must be a registry ref 'model-id@version' "
                             f"(e.g. failure-gbm@1), got {value!r}")  # fmt: skip
        return f"{model}@{version}"

    @model_validator(mode="after")
    def _valid_security(self) -> Settings:
        from edgeml.app.security import check_security

        check_security(self)
        return self

    @model_validator(mode="after")
    def _valid_windows(self) -> Settings:
        try:
            self.analytics_windows()
        except ValueError as exc:
            raise ValueError(f"analytics_* settings: {exc}") from None
        return self

    @model_validator(mode="after")
    def _valid_failure_pool(self) -> Settings:
        if self.failure_engine_enabled():
            try:
                self.failure_pool()
            except ValueError as exc:
                raise ValueError(f"failure_* settings: {exc}") from None
        return self

    def failure_engine_enabled(self) -> bool:
        """Whether the failure task runs on the inference engine (`failure_engine`, or a
        remote backend or fault drill configured)."""
        return self.failure_engine or bool(self.failure_remote or self.fault_failure_backends)

    def failure_pool(self) -> tuple[PoolSpec, TaskConfig]:
        """The failure task's pool and serving configuration (`models.inference`)."""
        from edgeml.models.inference import Aggregation, BreakerConfig, TaskConfig, strategy_named
        from edgeml.models.inference.pool import PoolSpec

        weights = _weights(self.failure_weights)
        strategy = self.failure_strategy
        spec = PoolSpec(
            replicas=self.failure_replicas,
            remote=tuple(u.strip() for u in self.failure_remote.split(",") if u.strip()),
            remote_model=self.failure_remote_model,
            token=self.web_token.get_secret_value() if self.web_token else None,
            remote_timeout_s=max(self.failure_timeout_s, 1.0),
            drills=tuple(d.strip() for d in self.fault_failure_backends.split(",") if d.strip()),
            scratch=self.data_dir,
        )
        aggregation = (
            None
            if self.failure_aggregation == "none"
            else Aggregation(self.failure_aggregation, weights=weights)
        )
        if self.failure_deadline_s < self.failure_timeout_s:
            raise ValueError("failure_deadline_s must be >= failure_timeout_s")
        config = TaskConfig(
            strategy=strategy_named(strategy, weights=weights if strategy == "weighted" else None),
            timeout_s=self.failure_timeout_s,
            deadline_s=self.failure_deadline_s,
            aggregation=aggregation,
            fanout=self.failure_fanout,
            probe_interval_s=self.failure_probe_interval_s,
            probe_timeout_s=max(self.failure_timeout_s, 1.0),
            breaker=BreakerConfig(
                failures=self.failure_breaker_failures, cooldown_s=self.failure_breaker_cooldown_s
            ),
        )
        return spec, config

    def analytics_windows(self) -> AnalyticsWindows:
        """The analytics window layout (`models.analytics.AnalyticsWindows`)."""
        from edgeml.models.analytics import AnalyticsWindows

        return AnalyticsWindows(
            tumbling_s=self.analytics_tumbling_s,
            hopping_s=self.analytics_hopping_s,
            hop_s=self.analytics_hop_s,
            retention_s=self.analytics_retention_s,
        )

    def seeds_registry(self) -> bool:
        """True when `registry_root` is the default one (under `home`): callers that open it
        first copy in the models the package ships and the root lacks
        (`models.shipped.seed_registry`), so a fresh home serves the promoted failure model. A
        root set explicitly (`EDGEML_REGISTRY_ROOT`, a test's `tmp_path`) is taken as it is:
        an empty one means "no offline model"."""
        return "registry_root" not in self.model_fields_set

    def web_url(self) -> str:
        """The URL other workers and clients reach this worker's web server at."""
        if self.web_canonical_url:
            return self.web_canonical_url.rstrip("/")
        host = self.web_host
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"

    def group_instance_id(self) -> str | None:
        """This worker's Kafka `group.instance.id` (None: dynamic membership)."""
        if self.worker_name == "":
            return None
        if self.worker_name is not None:
            return self.worker_name
        import socket

        return f"{socket.gethostname()}-{self.web_port}"

    def topic(self, name: str) -> str:
        """The broker-side name of one of the platform's topics (with the optional prefix)."""
        return f"{self.topic_prefix}{name}"

    def topic_layout(self) -> TopicLayout:
        """The narrow config `topics.declare` / `topics.analytics` take instead of `Settings`:
        the prefix, default partitions and replication, and the tables' store options."""
        from edgeml.topics.layout import TopicLayout

        return TopicLayout(
            prefix=self.topic_prefix,
            partitions=self.topic_partitions,
            replication=self.topic_replication,
            table_options=self.table_options(),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context every Kafka client is given (None unless the protocol uses TLS)."""
        from edgeml.app.security import ssl_context

        return ssl_context(self)

    def kafka_client_config(self) -> dict[str, Any]:
        """Connection and security options shared by every aiokafka / kafka-python client (both
        take the same `ssl_context` and `sasl_*` keys). Builds a fresh SSL context per call."""
        from edgeml.app.security import client_security

        return {"bootstrap_servers": self.bootstrap_servers, **client_security(self)}

    def table_options(self) -> dict[str, Any]:
        """Store options for every table (`app.Table(options=...)`; the memory store ignores
        them): bounded RocksDB memtables and block cache, as an edge box needs."""
        return {
            "write_buffer_size": self.rocksdb_write_buffer_bytes,
            "max_write_buffer_number": 2,
            "block_cache_size": self.rocksdb_block_cache_bytes,
        }

    def producer_config(self) -> dict[str, Any]:
        """Durable producer settings: every send is acknowledged by all in-sync replicas."""
        return {
            **self.kafka_client_config(),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": self.producer_linger_ms,
        }

    def consumer_config(self, group_id: str | None) -> dict[str, Any]:
        """Consumer settings: commit only what was processed, start from the beginning."""
        return {
            **self.kafka_client_config(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
        }

    def as_dict(self) -> dict[str, Any]:
        """All settings as plain values, secrets masked: safe to log or show on a web page."""
        return {
            key: ("**********" if isinstance(value, SecretStr) else value)
            for key, value in self.model_dump().items()
        }
