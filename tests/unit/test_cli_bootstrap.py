"""`--bootstrap` on every command that talks to Kafka: the same option, refused when empty, and
winning over EDGEML_BOOTSTRAP_SERVERS (no broker: the error names the address that was dialled).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edgeml.app.settings import Settings

Invoke = Callable[..., tuple[int, str, str]]
CLOSED = "127.0.0.1:1"  # nothing listens on port 1 either; the settings point at port 9


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "pump-1.csv"
    path.write_text("ts,temp\n2026-01-01T00:00:00Z,21.5\n")
    return path


def _commands(history: Path) -> dict[str, list[str]]:
    return {
        "simulate": ["simulate", "--count", "1", "--devices", "1", "--no-progress"],
        "replay": ["replay", str(history), "--device-from", "filename", "--no-progress"],
        "tail": ["tail", "alerts", "--timeout", "5"],
        "models promote": ["models", "promote", "failure-gbm", "1"],
    }


@pytest.mark.parametrize("command", ["simulate", "replay", "tail", "models promote"])
def test_an_empty_bootstrap_is_refused_in_one_line(
    invoke_cli: Invoke, settings: Settings, history: Path, command: str
) -> None:
    code, out, err = invoke_cli(settings, *_commands(history)[command], "--bootstrap", " ")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"edgeml {command}: error: Invalid value for --bootstrap: empty; give HOST:PORT"
    ]


def test_bootstrap_wins_over_the_environment(
    invoke_cli: Invoke, settings: Settings, history: Path
) -> None:
    """`tail` here (it fails at once; `simulate` and `replay` take the admin client's 15 s to
    give up): all build their settings with `options.settings_with`, and
    tests/integration/test_replay_dir.py replays and tails through `--bootstrap` alone."""
    assert settings.bootstrap_servers != CLOSED
    code, out, err = invoke_cli(settings, *_commands(history)["tail"], "--bootstrap", CLOSED)
    assert out == ""
    assert code == 1, err
    (line,) = err.splitlines()
    assert line.startswith(f"edgeml: error: cannot reach Kafka at {CLOSED}"), line
