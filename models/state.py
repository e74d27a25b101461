"""One device's scoring state (`DeviceState`) and its byte codec, the value of the worker's table.

`to_bytes`/`from_bytes` round-trip exactly, so a device scored after a restore gives the same
scores as one that never left memory. The format is versioned by its magic: `EDS3` (written)
adds the seasonal profiles and the score calibration to `EDS2` (read with fresh ones), which
added the seq mark and held jumps to `EDS1` (read with no mark and nothing held). Built by
`Scorer.new_state`; re-exported by `models.scoring`.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any

import orjson

from edgeml.models.alerting import AlertState
from edgeml.models.detectors import WIDTH as _DETECTOR_WIDTH
from edgeml.models.features import DeviceFeatures

__all__ = ["STATE_MAGICS", "DeviceState"]

_MAGIC = b"EDS3"  # EDS3 adds seasonal profiles (header "p") and the calibration ("c")
# every format `from_bytes` reads (EDS2 adds the seq mark ("s") and held jumps)
STATE_MAGICS = (_MAGIC, b"EDS2", b"EDS1")
_HEAD = struct.Struct("<4sI")
_OLD_DETECTOR_WIDTH = 10  # EDS1/EDS2: no resolution slot (read with resolution unknown)


class DeviceState:
    """One device's scoring state. Created by `Scorer.new_state`; stored via `to_bytes`."""

    __slots__ = (
        "alert",
        "calib",
        "detectors",
        "device_id",
        "features",
        "last_row_ts",
        "n",
        "rows",
        "seasons",
        "seq",
        "seq_ts",
        "threshold",
    )

    def __init__(self, device_id: str, threshold_bins: int) -> None:
        self.device_id = device_id
        self.features = DeviceFeatures()
        self.detectors: dict[str, list[float]] = {}
        self.seasons: dict[str, list[float]] = {}  # per metric (models.seasonal)
        self.calib: list[float] = [0.0, 1.0, 0.0]  # models.calibration.ScoreCalibrator
        self.threshold: list[float] = [0.0] * (threshold_bins + 1)
        self.alert = AlertState()
        self.rows: list[list[float]] = []  # [ts, *failure inputs] label buffer
        self.last_row_ts = -math.inf
        self.n = 0
        self.seq = -1  # highest seq applied (-1: none yet)
        self.seq_ts = -math.inf  # event time of the reading that set `seq`

    def is_idle(self, now_event_ts: float, idle_timeout_s: float = 600.0) -> bool:
        """True when the device's last event is older than `idle_timeout_s` of event time."""
        return self.features.is_idle(now_event_ts, idle_timeout_s)

    @property
    def watermark(self) -> float:
        return self.features.watermark

    def to_bytes(self) -> bytes:
        """Header (orjson) + float64 blob (windows, detectors, threshold, label-row times) +
        float32 blob (label rows, which are float32-rounded when buffered, so exact)."""
        fheader, floats = self.features.dump()
        names = list(self.detectors)
        for name in names:
            floats.extend(self.detectors[name])
        floats.extend(self.threshold)
        season_names = list(self.seasons)
        for name in season_names:
            floats.extend(self.seasons[name])
        floats.extend(self.calib)
        width = len(self.rows[0]) - 1 if self.rows else 0
        f32: list[float] = []
        for row in self.rows:
            floats.append(row[0])
            f32.extend(row[1:])
        floats.append(self.last_row_ts)
        header = orjson.dumps(
            {
                "id": self.device_id,
                "n": self.n,
                "f": fheader,
                "d": names,
                "t": len(self.threshold),
                "r": [len(self.rows), width, len(floats)],
                "a": self.alert.to_obj(),
                "s": [self.seq, self.seq_ts if self.seq_ts > -math.inf else None],
                "p": [[name, len(self.seasons[name])] for name in season_names],
            }
        )
        return b"".join(
            (
                _HEAD.pack(_MAGIC, len(header)),
                header,
                array("d", floats).tobytes(),
                array("f", f32).tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceState:
        magic, size = _HEAD.unpack_from(data)
        if magic not in STATE_MAGICS:
            raise ValueError(f"not a DeviceState (magic {magic!r}, expected {_MAGIC!r})")
        start = _HEAD.size + size
        header: dict[str, Any] = orjson.loads(data[_HEAD.size : start])
        nrows, width, nd = header["r"]
        floats = array("d", data[start : start + 8 * nd]).tolist()
        f32 = array("f", data[start + 8 * nd :]).tolist()
        state = cls(str(header["id"]), int(header["t"]) - 1)
        state.n = int(header["n"])
        state.features, pos = DeviceFeatures.load(header["f"], floats, 0)
        dwidth = _DETECTOR_WIDTH if magic == _MAGIC else _OLD_DETECTOR_WIDTH
        for name in header["d"]:
            metric = floats[pos : pos + dwidth]
            state.detectors[name] = metric + [0.0] * (_DETECTOR_WIDTH - dwidth)
            pos += dwidth
        t = int(header["t"])
        state.threshold = floats[pos : pos + t]
        pos += t
        if magic == _MAGIC:
            for name, size in header["p"]:
                state.seasons[str(name)] = floats[pos : pos + int(size)]
                pos += int(size)
            state.calib = floats[pos : pos + 3]
            pos += 3
        for i in range(nrows):
            state.rows.append([floats[pos], *f32[i * width : (i + 1) * width]])
            pos += 1
        state.last_row_ts = floats[pos]
        state.alert = AlertState.from_obj(header["a"])
        if "s" in header:  # absent in EDS1 states
            seq, seq_ts = header["s"]
            state.seq = int(seq)
            state.seq_ts = -math.inf if seq_ts is None else float(seq_ts)
        return state
