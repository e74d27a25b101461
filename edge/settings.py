"""`EdgeSettings`: the edge agent's own frozen configuration, from `EDGEML_EDGE_*` variables.

The agent runs on a device that installs only the core and the `edge` extra, so it does not
depend on the platform's `app.settings.Settings` (which belongs to the worker and the CLI). It is
the only module of `edge/` that reads the environment; everything else gets this object, or a
narrower one built from it (`outbox_limits()`, `topic_layout()`), handed down. Flags of
`edgeml edge run` override fields (`EdgeSettings(**flags)`: init values win over variables).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgeml.edge.outbox import OnFull, OutboxLimits, StreamPolicy
from edgeml.topics.layout import TopicLayout

__all__ = ["EdgeSettings", "RawMode"]

RawMode = Literal["off", "on", "downsample"]

_DAY_S = 24 * 3600.0


class EdgeSettings(BaseSettings):
    """Edge agent configuration. Create with `EdgeSettings()` (env) or with keywords in tests."""

    model_config = SettingsConfigDict(env_prefix="EDGEML_EDGE_", frozen=True, extra="forbid")

    agent_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="This agent's name on every record it forwards (default: the host name).",
    )
    db_path: Path = Field(
        default=Path("var/edge/edge.db"),
        description="The one SQLite file (WAL mode): device state, outbox, counters.",
    )
    registry_root: Path | None = Field(
        default=None,
        description="Model registry to load the promoted failure model from (read only); "
        "default: the models the package ships.",
    )
    onnx_threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads.")
    scoring_kernel: Literal["compiled", "reference"] = Field(
        default="compiled",
        description="`compiled`: the numba scoring kernel (same scores; needs its one-off compile, "
        "~20 s on a 2-core x86 box, cached on disk); `reference`: pure Python, numba never loaded "
        "(less memory, no compile; slower on batches).",
    )
    model_public_key: Path | None = Field(
        default=None,
        description="Ed25519 public key (PEM): when set, only a promoted model whose manifest it "
        "signed is loaded (`edge.signing`); others are refused and counted.",
    )

    # --- model updates (`edge.updates`, `edge.follow`) ---------------------------------------
    model_updates: bool = Field(
        default=True,
        description="Follow the platform's model-registry topic while online and hot-swap to "
        "announced versions (needs model_public_key: only signed models are taken).",
    )
    model_store: Path | None = Field(
        default=None,
        description="Where downloaded model versions are kept (a registry root the agent "
        "writes); default: `models/` next to the database.",
    )
    model_artifacts_topic: str = Field(
        default="model-artifacts",
        min_length=1,
        description="Compacted topic of model bundles, key model_id@version (with the prefix).",
    )
    model_health_batches: int = Field(
        default=20, ge=1, description="Batches a swapped-in model is watched before it is kept."
    )
    model_max_drift: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Roll back when the mean failure probability over the health window moves "
        "more than this from the previous model's over its last window.",
    )
    model_max_bad_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Roll back when more than this share of the window's rows failed "
        "(the model raised, or returned NaN/inf): 0 = any failed row.",
    )
    model_max_bundle_bytes: int = Field(
        default=8 * 2**20, ge=2**20, description="Largest model bundle fetched."
    )

    # --- Kafka (the platform's broker; unreachable is the normal case on a device) ------------
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", description="Prefix of the platform's topic names.")
    request_timeout_ms: int = Field(
        default=15_000, ge=1000, description="How long one send waits for its ack."
    )

    # --- scoring ------------------------------------------------------------------------------
    batch_max: int = Field(default=200, ge=1, description="Readings per scoring batch/commit.")
    batch_within_s: float = Field(
        default=0.05, gt=0, description="Longest wait to fill a batch (one commit per batch)."
    )
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    max_future_s: float = Field(default=3600.0, ge=0)
    state_cache_devices: int = Field(
        default=10_000, ge=1, description="Device states kept decoded-ready in memory (LRU)."
    )

    # --- outbox -------------------------------------------------------------------------------
    raw_readings: RawMode = Field(
        default="off", description="Keep raw readings in the outbox: off, on, downsample."
    )
    raw_every: int = Field(
        default=10, ge=1, description="With raw_readings=downsample: keep seq % raw_every == 0."
    )
    outbox_max_bytes: int = Field(
        default=256 * 2**20, ge=4096, description="Bound on the outbox's stored record bytes."
    )
    predictions_on_full: OnFull = "drop-oldest"
    alerts_on_full: OnFull = "drop-oldest"
    readings_on_full: OnFull = "drop-oldest"
    predictions_max_age_s: float = Field(default=7 * _DAY_S, gt=0)
    alerts_max_age_s: float = Field(default=30 * _DAY_S, gt=0)
    readings_max_age_s: float = Field(default=1 * _DAY_S, gt=0)

    # --- sync ---------------------------------------------------------------------------------
    sync_enabled: bool = Field(default=True, description="Forward the outbox to Kafka.")
    sync_chunk_rows: int = Field(default=500, ge=1, description="Rows per forward round.")
    sync_max_bytes_per_s: float = Field(
        default=0.0, ge=0, description="Bandwidth cap on forwarded bytes (0 = none)."
    )
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)

    # --- MQTT source (`--source mqtt`, `edge.mqtt`) -------------------------------------------
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_topic: str = Field(default="sensors/#", min_length=1)
    mqtt_qos: int = Field(default=1, ge=0, le=2)
    mqtt_client_id: str | None = Field(
        default=None, description="Set: a persistent session (the broker keeps QoS 1 backlog)."
    )

    # --- local alerts and web server ----------------------------------------------------------
    webhook_url: str | None = Field(
        default=None, description="POST each local alert (JSON) here; failures are counted."
    )
    webhook_timeout_s: float = Field(default=2.0, gt=0)
    web_host: str = Field(default="127.0.0.1", description="Bind address of /health, /metrics.")
    web_port: int = Field(default=6070, ge=0, le=65535, description="0 = no web server.")

    # --- fault injection (tests only) ---------------------------------------------------------
    fault_kill_in_batch: int = Field(
        default=0,
        ge=0,
        description="Test hook, 0 = off: SIGKILL the agent inside its Nth batch transaction, "
        "after the state and outbox rows are written and before COMMIT.",
    )

    @field_validator("db_path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must start with http:// or https://, got {value!r}")
        return value

    def model_store_path(self) -> Path:
        """The registry root downloaded models go to (`model_store`, else next to the db)."""
        return (self.model_store or self.db_path.parent / "models").expanduser().absolute()

    def outbox_limits(self) -> OutboxLimits:
        """The outbox's bounds and per-stream policies (`edge.outbox`)."""
        return OutboxLimits(
            max_bytes=self.outbox_max_bytes,
            policies={
                "readings": StreamPolicy(self.readings_on_full, self.readings_max_age_s),
                "predictions": StreamPolicy(self.predictions_on_full, self.predictions_max_age_s),
                "alerts": StreamPolicy(self.alerts_on_full, self.alerts_max_age_s),
            },
        )

    def topic_layout(self) -> TopicLayout:
        """Where the platform's topic names land (the worker's names, with the prefix)."""
        return TopicLayout(prefix=self.topic_prefix)
