"""The sensor simulator: a fleet of devices with realistic, correlated signals and labelled faults.

Pure and deterministic: `simulate(SimConfig(seed=...))` builds the whole run up front with numpy
(`numpy.random.Generator`, one child seed per device, so device `k` is the same whatever the fleet
size) and `Simulation.events()` streams it in event-time order. Nothing here knows about Kafka.

Signals per device (metric: unit), built from shared drivers so they correlate like real ones:

- a daily **ambient** cycle (peak mid-afternoon, local time of the site) raises `temperature`
  and lowers `humidity`;
- a daily **load** cycle (work hours) raises `temperature` and `vibration` (mm/s RMS);
- per-site **weather** moves `pressure` (hPa) slowly and identically for every device of a site;
- AR(1) process noise plus white measurement noise; per-device offsets on every metric;
- values rounded to the sensor's resolution.

`SimConfig.day_seconds` compresses the day (e.g. 600 s) so short runs show the cycle.

Faults (see `sim.truth.FAULT_KINDS`) are placed at random times per device after a warm-up, with
magnitudes drawn in units of the metric's normal noise so they are detectable but not trivial.
`degradation` ramps vibration and temperature up over 5-15 minutes of event time, ends in a
failure (`MaintenanceEvent(kind="failure")`), the machine stands still, and a `repair` event
returns it to normal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgeml.sim.truth import FAULT_KINDS, FaultKind, GroundTruth, Incident, RunSummary
from edgeml.topics.records import MaintenanceEvent, SensorReading

__all__ = [
    "DEFAULT_START_TS",
    "DEVICE_TYPES",
    "METRICS",
    "SITES",
    "Device",
    "SimConfig",
    "Simulation",
    "simulate",
]

METRICS: tuple[str, ...] = ("temperature", "humidity", "pressure", "vibration")
SITES: tuple[str, ...] = ("plant-a", "plant-b", "plant-c", "plant-d")
DEFAULT_START_TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed start for tests

_T, _H, _P, _V = range(4)
_DECIMALS = (2, 2, 2, 3)


@dataclass(frozen=True, slots=True)
class _Profile:
    temperature: float  # degC at nominal load
    vibration: float  # mm/s RMS at nominal load
    load_gain: float  # degC per unit of load above nominal


DEVICE_TYPES: dict[str, _Profile] = {
    "pump": _Profile(temperature=48.0, vibration=2.8, load_gain=10.0),
    "compressor": _Profile(temperature=62.0, vibration=4.5, load_gain=14.0),
    "fan": _Profile(temperature=34.0, vibration=1.6, load_gain=5.0),
    "motor": _Profile(temperature=55.0, vibration=3.4, load_gain=12.0),
}

# Relative frequency of each fault kind, and its duration range in seconds of event time.
_KIND_WEIGHT: dict[FaultKind, float] = {
    "spike": 0.22,
    "level_shift": 0.16,
    "drift": 0.14,
    "stuck": 0.14,
    "noise_burst": 0.16,
    "degradation": 0.18,
}
_DURATION_S: dict[FaultKind, tuple[float, float]] = {
    "spike": (0.0, 0.0),  # 1-3 readings, whatever the interval
    "level_shift": (60.0, 300.0),
    "drift": (180.0, 600.0),
    "stuck": (60.0, 300.0),
    "noise_burst": (30.0, 120.0),
    "degradation": (300.0, 900.0),  # the ramp; then the machine is down:
}
_MIN_READINGS: dict[FaultKind, int] = {
    "spike": 3,
    "level_shift": 5,
    "drift": 10,
    "stuck": 10,
    "noise_burst": 5,
    "degradation": 20,
}
_DOWNTIME_S = (120.0, 600.0)
_MIN_DOWN_READINGS = 5
_MIN_GAP_S = 120.0  # normal operation between two incidents of one device
_TAIL_S = 30.0  # normal readings kept after the last incident


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate. `count` readings per device, spaced `interval` seconds of event time
    from `start_ts`; faults start after `warmup` seconds, on average every `incident_every`
    seconds per device (at least 2 minutes apart)."""

    devices: int = 10
    count: int = 3600
    seed: int = 0
    interval: float = 1.0
    start_ts: float = DEFAULT_START_TS
    day_seconds: float = 86_400.0
    incident_every: float = 900.0
    warmup: float = 300.0
    fault_kinds: tuple[FaultKind, ...] = FAULT_KINDS

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError(f"devices must be >= 1, got {self.devices}")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if not 0.01 <= self.interval <= 86_400:
            raise ValueError(f"interval must be in [0.01, 86400] seconds, got {self.interval}")
        if self.day_seconds < 60:
            raise ValueError(f"day_seconds must be >= 60, got {self.day_seconds}")
        if self.incident_every <= 0 or self.warmup < 0:
            raise ValueError("incident_every must be > 0 and warmup >= 0")
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(
                f"unknown fault kinds {sorted(unknown)}; valid: {', '.join(FAULT_KINDS)}"
            )

    @property
    def end_ts(self) -> float:
        """Event time just after the last reading slot."""
        return self.start_ts + self.count * self.interval


@dataclass(frozen=True, slots=True)
class Device:
    """One simulated device: id, site and type, with its per-device signal parameters."""

    device_id: str
    site: str
    device_type: str


@dataclass(slots=True)
class Simulation:
    """A generated run: devices, their readings (as arrays), labelled incidents and the
    maintenance events. Created by `simulate(config)`; stream it with `events()`."""

    config: SimConfig
    devices: tuple[Device, ...]
    incidents: tuple[Incident, ...]
    maintenance: tuple[MaintenanceEvent, ...]
    ts: np.ndarray  # (devices, count) event time of each reading
    values: np.ndarray  # (devices, count, len(METRICS))
    _order: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    @property
    def readings_count(self) -> int:
        return len(self.devices) * self.config.count

    def events(self) -> Iterator[SensorReading | MaintenanceEvent]:
        """Every reading and maintenance event, in event-time order (`sent_at` left unset)."""
        pending = list(self.maintenance)
        next_event = 0
        ids = [d.device_id for d in self.devices]
        sites = [d.site for d in self.devices]
        types = [d.device_type for d in self.devices]
        for i in range(self.config.count):
            row_ts = self.ts[:, i].tolist()
            row_values = self.values[:, i, :].tolist()
            for d in self._order[:, i].tolist():
                ts = row_ts[d]
                while next_event < len(pending) and pending[next_event].ts <= ts:
                    yield pending[next_event]
                    next_event += 1
                yield SensorReading(
                    device_id=ids[d],
                    ts=ts,
                    seq=i,
                    metrics=dict(zip(METRICS, row_values[d], strict=True)),
                    site=sites[d],
                    device_type=types[d],
                )
        yield from pending[next_event:]

    def readings(self) -> Iterator[SensorReading]:
        """Only the readings, in event-time order."""
        for event in self.events():
            if isinstance(event, SensorReading):
                yield event

    def ground_truth(
        self,
        *,
        malformed_by_kind: dict[str, int] | None = None,
        run_started_at: float = 0.0,
        run_finished_at: float = 0.0,
        topic: str = "",
        readings_per_device: dict[str, int] | None = None,
    ) -> GroundTruth:
        """The run's ground truth; pass `readings_per_device` if not every reading was sent."""
        summary = RunSummary(
            seed=self.config.seed,
            start_ts=self.config.start_ts,
            end_ts=self.config.end_ts,
            interval=self.config.interval,
            readings_per_device=readings_per_device
            or {d.device_id: self.config.count for d in self.devices},
            malformed_by_kind=dict(malformed_by_kind or {}),
            run_started_at=run_started_at,
            run_finished_at=run_finished_at,
            topic=topic,
        )
        return GroundTruth(summary, self.incidents)


def simulate(config: SimConfig) -> Simulation:
    """Generate a whole run. Memory: about 40 bytes x devices x count."""
    root = np.random.SeedSequence(config.seed)
    site_seq, *device_seqs = root.spawn(config.devices + 1)
    site_rng = np.random.default_rng(site_seq)
    site_tz = site_rng.uniform(0.0, 1.0, size=len(SITES))
    site_weather = [_weather_params(site_rng) for _ in SITES]

    devices: list[Device] = []
    incidents: list[Incident] = []
    maintenance: list[MaintenanceEvent] = []
    ts_all = np.empty((config.devices, config.count))
    values_all = np.empty((config.devices, config.count, len(METRICS)))
    types = tuple(DEVICE_TYPES)
    for k, seq in enumerate(device_seqs):
        rng = np.random.default_rng(seq)
        site_index = int(rng.integers(len(SITES)))
        device = Device(
            device_id=f"dev-{k + 1:04d}",
            site=SITES[site_index],
            device_type=types[int(rng.integers(len(types)))],
        )
        ts, values, sigma, idle_temperature = _clean_signals(
            config, rng, device, site_tz[site_index], site_weather[site_index]
        )
        device_incidents, events = _inject_faults(
            config, rng, device, ts, values, sigma, idle_temperature
        )
        np.clip(values[:, _H], 0.0, 100.0, out=values[:, _H])
        np.clip(values[:, _V], 0.0, None, out=values[:, _V])
        for m, decimals in enumerate(_DECIMALS):
            values[:, m] = np.round(values[:, m], decimals)
        devices.append(device)
        incidents.extend(device_incidents)
        maintenance.extend(events)
        ts_all[k] = ts
        values_all[k] = values

    maintenance.sort(key=lambda e: (e.ts, e.device_id))
    order = np.argsort(ts_all, axis=0, kind="stable")
    return Simulation(
        config=config,
        devices=tuple(devices),
        incidents=tuple(sorted(incidents, key=lambda i: (i.start_ts, i.device_id))),
        maintenance=tuple(maintenance),
        ts=ts_all,
        values=values_all,
        _order=order,
    )


# --- signals ----------------------------------------------------------------------------------


def _weather_params(rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Site pressure: a base level plus three slow waves (periods of hours, amplitudes in hPa)."""
    base = float(rng.normal(1013.0, 6.0))
    periods = rng.uniform(2.0, 9.0, size=3) * 3600.0
    amplitudes = rng.uniform(0.5, 2.5, size=3)
    phases = rng.uniform(0.0, 2 * math.pi, size=3)
    return base, periods, amplitudes, phases


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """Stationary AR(1) noise with standard deviation `sigma`, as a truncated causal filter."""
    length = min(int(6.0 / (1.0 - phi)) + 1, 2000)
    kernel = phi ** np.arange(length)
    shocks = rng.standard_normal(n + length - 1)
    series = np.convolve(shocks, kernel, mode="valid")
    return series * (sigma / math.sqrt(float(np.sum(kernel**2))))


def _clean_signals(
    config: SimConfig,
    rng: np.random.Generator,
    device: Device,
    site_tz: float,
    weather: tuple[float, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Event times, fault-free values, per-metric short-term noise sigma, and idle temperature."""
    n = config.count
    interval = config.interval
    profile = DEVICE_TYPES[device.device_type]

    phase = rng.uniform(0.05, 0.9) * interval
    jitter = rng.uniform(-0.04, 0.04, size=n) * interval
    ts = np.round(config.start_ts + np.arange(n) * interval + phase + jitter, 3)

    day_pos = ts / config.day_seconds + site_tz
    ambient = rng.uniform(1.5, 4.0) * np.sin(2 * math.pi * (day_pos - 0.375))  # peak 15:00
    load = 0.8 + rng.uniform(0.1, 0.25) * np.sin(2 * math.pi * (day_pos - 0.30))
    load = load + _ar1(rng, n, 0.98, 0.03)

    t_sigma = (0.3, 0.08)
    h_sigma = (0.8, 0.3)
    p_sigma = 0.15
    v_rel = (0.05, 0.04)

    values = np.empty((n, len(METRICS)))
    base_t = profile.temperature + rng.normal(0.0, 3.0)
    values[:, _T] = (
        base_t
        + ambient
        + profile.load_gain * (load - 0.8)
        + _ar1(rng, n, 0.95, t_sigma[0])
        + rng.normal(0.0, t_sigma[1], size=n)
    )
    base_h = rng.uniform(35.0, 60.0)
    values[:, _H] = (
        base_h
        - rng.uniform(1.2, 2.2) * ambient
        + _ar1(rng, n, 0.97, h_sigma[0])
        + rng.normal(0.0, h_sigma[1], size=n)
    )
    base_p, periods, amplitudes, phases = weather
    scale = config.day_seconds / 86_400.0  # weather moves faster when the day is compressed
    waves = sum(
        a * np.sin(2 * math.pi * ts / (p * scale) + ph)
        for p, a, ph in zip(periods, amplitudes, phases, strict=True)
    )
    values[:, _P] = base_p + rng.normal(0.0, 1.5) + waves + rng.normal(0.0, p_sigma, size=n)
    base_v = profile.vibration * rng.uniform(0.8, 1.25)
    values[:, _V] = base_v * load * (1.0 + _ar1(rng, n, 0.9, v_rel[0])) + rng.normal(
        0.0, v_rel[1] * base_v, size=n
    )

    sigma = np.array(
        [
            math.hypot(*t_sigma),
            math.hypot(*h_sigma),
            p_sigma * 2.0,  # pressure's slow waves make its noise look larger than the white part
            base_v * math.hypot(*v_rel),
        ]
    )
    idle_temperature = 22.0 + ambient + rng.normal(0.0, 0.2, size=n)
    return ts, values, sigma, idle_temperature


# --- faults -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Label:
    kind: FaultKind
    start_ts: float
    end_ts: float
    metrics: tuple[str, ...]
    start_seq: int
    end_seq: int
    magnitude: float
    failure_ts: float | None
    repair_ts: float | None


def _readings(interval: float, seconds: float, minimum: int) -> int:
    return max(minimum, round(seconds / interval))


def _inject_faults(
    config: SimConfig,
    rng: np.random.Generator,
    device: Device,
    ts: np.ndarray,
    values: np.ndarray,
    sigma: np.ndarray,
    idle_temperature: np.ndarray,
) -> tuple[list[Incident], list[MaintenanceEvent]]:
    """Place faults on `values` in place; return the incidents and maintenance events."""
    n = config.count
    interval = config.interval
    kinds = [k for k in FAULT_KINDS if k in config.fault_kinds]
    tail = math.ceil(_TAIL_S / interval)
    cursor = math.ceil(config.warmup / interval)
    incidents: list[Incident] = []
    events: list[MaintenanceEvent] = []
    while kinds:
        # The warm-up already gives the first fault its run-in; the minimum gap is between faults.
        gap_s = (_MIN_GAP_S if incidents else 0.0) + rng.exponential(config.incident_every)
        start = cursor + math.ceil(gap_s / interval)
        room = n - tail - start
        fitting = [k for k in kinds if _min_total(k, interval) <= room]
        if not fitting:
            break
        weights = np.array([_KIND_WEIGHT[k] for k in fitting])
        kind = fitting[int(rng.choice(len(fitting), p=weights / weights.sum()))]
        incident, stop, kind_events = _apply(
            kind, rng, start, room, ts, values, sigma, idle_temperature, interval
        )
        incidents.append(
            Incident(
                incident_id=f"{device.device_id}#{len(incidents)}",
                device_id=device.device_id,
                site=device.site,
                device_type=device.device_type,
                kind=incident.kind,
                start_ts=incident.start_ts,
                end_ts=incident.end_ts,
                metrics=incident.metrics,
                start_seq=incident.start_seq,
                end_seq=incident.end_seq,
                magnitude=incident.magnitude,
                failure_ts=incident.failure_ts,
                repair_ts=incident.repair_ts,
            )
        )
        events.extend(
            MaintenanceEvent(device_id=device.device_id, ts=t, kind=k) for k, t in kind_events
        )
        cursor = stop
    return incidents, events


def _min_total(kind: FaultKind, interval: float) -> int:
    if kind == "degradation":
        ramp = _readings(interval, _DURATION_S[kind][0], _MIN_READINGS[kind])
        return ramp + _readings(interval, _DOWNTIME_S[0], _MIN_DOWN_READINGS) + 1
    if kind == "spike":
        return _MIN_READINGS[kind]
    return _readings(interval, _DURATION_S[kind][0], _MIN_READINGS[kind])


def _apply(
    kind: FaultKind,
    rng: np.random.Generator,
    a: int,
    room: int,
    ts: np.ndarray,
    values: np.ndarray,
    sigma: np.ndarray,
    idle_temperature: np.ndarray,
    interval: float,
) -> tuple[_Label, int, list[tuple[Literal["failure", "repair"], float]]]:
    """Apply one fault starting at reading `a`; return its label fields, the index after it,
    and any maintenance events as (kind, ts)."""
    events: list[tuple[Literal["failure", "repair"], float]] = []
    metrics: tuple[str, ...]
    failure_ts: float | None = None
    repair_ts: float | None = None
    if kind == "spike":
        length = int(rng.integers(1, 4))
        m = int(rng.integers(len(METRICS)))
        magnitude = float(rng.uniform(6.0, 15.0))
        sign = 1.0 if m == _V else float(rng.choice((-1.0, 1.0)))
        values[a : a + length, m] += sign * magnitude * sigma[m] * rng.uniform(0.8, 1.2, length)
        b, metrics = a + length, (METRICS[m],)
    elif kind == "degradation":
        low, high = _DURATION_S[kind]
        ramp = _readings(interval, rng.uniform(low, high), _MIN_READINGS[kind])
        down = _readings(interval, rng.uniform(*_DOWNTIME_S), _MIN_DOWN_READINGS)
        if ramp + down + 1 > room:  # shrink the ramp first, keep a real downtime
            ramp = max(_MIN_READINGS[kind], room - down - 1)
            down = min(down, room - ramp - 1)
        f, r = a + ramp, a + ramp + down  # first reading while down; first after repair
        u = np.linspace(0.0, 1.0, ramp)
        rate = rng.uniform(2.0, 4.0)
        shape = np.expm1(rate * u) / math.expm1(rate)  # slow, then fast
        magnitude = float(rng.uniform(2.5, 5.0))
        heat = rng.uniform(6.0, 15.0)
        vib = values[a:f, _V]
        values[a:f, _V] = vib * (1.0 + (magnitude - 1.0) * shape) + rng.normal(
            0.0, sigma[_V], ramp
        ) * (2.0 * shape)
        values[a:f, _T] += heat * shape
        t_fail = float(values[f - 1, _T])
        elapsed = ts[f:r] - ts[f]
        idle = idle_temperature[f:r]
        values[f:r, _T] = idle + (t_fail - idle) * np.exp(-elapsed / 180.0)
        values[f:r, _V] = np.abs(rng.normal(0.0, 0.02, down))
        failure_ts = round(float(ts[f - 1] + ts[f]) / 2.0, 3)
        repair_ts = round(float(ts[r - 1] + ts[r]) / 2.0, 3)
        events = [("failure", failure_ts), ("repair", repair_ts)]
        b, metrics = r, ("vibration", "temperature")
    else:
        low, high = _DURATION_S[kind]
        length = min(room, _readings(interval, rng.uniform(low, high), _MIN_READINGS[kind]))
        m = int(rng.integers(len(METRICS)))
        b, metrics = a + length, (METRICS[m],)
        if kind == "level_shift":
            magnitude = float(rng.uniform(4.0, 10.0))
            values[a:b, m] += float(rng.choice((-1.0, 1.0))) * magnitude * sigma[m]
        elif kind == "drift":
            magnitude = float(rng.uniform(8.0, 20.0))
            sign = float(rng.choice((-1.0, 1.0)))
            values[a:b, m] += sign * magnitude * sigma[m] * np.linspace(0.0, 1.0, length + 1)[1:]
        elif kind == "stuck":
            magnitude = 0.0
            values[a:b, m] = values[a - 1, m]
        else:  # noise_burst
            magnitude = float(rng.uniform(4.0, 10.0))
            extra = math.sqrt(magnitude**2 - 1.0) * sigma[m]
            values[a:b, m] += rng.normal(0.0, extra, length)
    label = _Label(
        kind=kind,
        start_ts=float(ts[a]),
        end_ts=float(ts[b - 1]),
        metrics=metrics,
        start_seq=a,
        end_seq=b - 1,
        magnitude=round(magnitude, 3),
        failure_ts=failure_ts,
        repair_ts=repair_ts,
    )
    return label, b, events
