"""The edge agent from the wheel with only the core and the `edge` extra (issue #13): a fresh
venv outside the checkout, no Faust, no kafka-python, no training libraries; `edgeml edge run`
scores a simulated fleet offline (nothing listens on its broker address) with the shipped
failure model, commits every prediction to its outbox, and writes nothing under site-packages.

No broker: it builds and installs (pip, its cache, the package index). Same wheel build and
clean environment as tests/integration/test_wheel_install.py (its helpers).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_wheel_install import (  # noqa: F401 (`wheel` is a fixture)
    ROOT,
    _clean_env,
    _diff,
    _listing,
    _run,
    wheel,
)

ABSENT = ("faust", "mode", "kafka", "rocksdict", "sklearn", "skl2onnx", "onnx")
DEVICES, COUNT = 4, 300


def test_the_edge_agent_runs_offline_from_the_wheel_with_core_and_edge_extras_only(
    wheel: Path,  # noqa: F811
    tmp_path: Path,
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    venv, cwd = tmp_path / "venv", tmp_path / "box"
    cwd.mkdir()
    assert ROOT not in venv.parents and ROOT not in cwd.parents
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
          f"{wheel}[edge]"], tmp_path)  # fmt: skip
    probe = (
        "import importlib.util, json, sys; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    found = json.loads(_run([str(python), "-c", probe, *ABSENT], cwd).stdout)
    assert found == dict.fromkeys(ABSENT, False)
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd)
        .stdout.strip()
    )  # fmt: skip
    before = _listing(site)
    offline = f"127.0.0.1:{unused_tcp_port_factory()}"  # nothing listens there
    done = subprocess.run(
        [str(venv / "bin" / "edgeml"), "edge", "run", "--source", "sim", "--devices", str(DEVICES),
         "--count", str(COUNT), "--bootstrap", offline, "--db", "edge.db", "--web-port", "0",
         "--agent-id", "box-1", "--until", "scored"],
        cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scoring with failure-gbm@" in done.stderr  # the shipped model, from the package
    assert "source ended" in done.stderr
    alerts = [json.loads(line)["alert"] for line in done.stdout.splitlines()]
    assert all(a["origin"] == "edge" and a["agent_id"] == "box-1" for a in alerts)
    assert _diff(before, _listing(site)) == []  # the package stays read-only
    conn = sqlite3.connect(cwd / "edge.db")
    try:
        rows = conn.execute(
            "SELECT device_id, seq FROM outbox WHERE stream = 'predictions'"
        ).fetchall()
    finally:
        conn.close()
    assert sorted(rows) == sorted(
        (f"dev-{d + 1:04d}", seq) for d in range(DEVICES) for seq in range(COUNT)
    )
