"""`edgeml demo`: README's main job (broker, worker, simulator, live alerts, web page URL)."""

from __future__ import annotations

import typer
from rich.console import Console

from edgeml.app.cli.tail import render
from edgeml.app.demo import DemoPlan, run_demo
from edgeml.app.settings import Settings

__all__ = ["add_to"]


def add_to(cli: typer.Typer) -> None:
    @cli.command()
    def demo(
        devices: int = typer.Option(10, "--devices", "-n", min=1, max=1000, help="Devices."),
        hz: float = typer.Option(5.0, "--hz", min=0.1, max=100, help="Readings/s per device."),
        duration: float | None = typer.Option(
            None, "--duration", min=1, help="Stop after S seconds [default: until Ctrl-C]."
        ),
        seed: int = typer.Option(7, "--seed", help="Simulator seed."),
    ) -> None:
        """Start the broker (if needed), a worker and a simulator; print alerts as they come."""
        console = Console(highlight=False)
        shown = run_demo(
            Settings(),
            DemoPlan(devices=devices, hz=hz, duration_s=duration, seed=seed),
            say=lambda line: console.print(f"[dim]demo:[/] {line}"),
            on_alert=lambda record: console.print(render("alerts", record)),
        )
        console.print(f"[dim]demo:[/] {shown} alert events shown")
