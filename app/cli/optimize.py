"""`edgeml optimize MODEL_ID`: shrink and speed up a registered model, measuring every step."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import typer

from edgeml.app.cli.models import ROOT_OPTION, open_registry
from edgeml.app.cli.providers import parse_providers, providers_option
from edgeml.app.errors import EdgeMLError

__all__ = ["MissingExtra", "add_to"]

# Import names of the `train` extra: the optimizer scores quality with sklearn's metrics,
# refits with sklearn (trees, prune), re-exports with skl2onnx and edits graphs with onnx /
# onnxconverter-common. The `cli` extra alone does not bring them (an edge box's CLI should
# not carry sklearn), so the command checks before it starts instead of failing half-way.
TRAIN_MODULES = ("sklearn", "skl2onnx", "onnx", "onnxconverter_common")


class MissingExtra(EdgeMLError):
    """A command needs an optional dependency group that is not installed."""


_HELP = """Run optimization steps on a registered ONNX model and print what each one measured:
size, single-sample p50/p99, batch-of-64 throughput, session creation, and quality on the
trainer's held-out rows (holdout.npz next to the artifact; see docs/CONTRACTS.md).

Steps (canonical order; each optional): trees (fewer trees), prune (50 % magnitude), dynamic
(int8), static (QDQ int8, calibrated on the holdout's first half), fp16, graph (ORT offline
optimization saved as the artifact), compress (zstd). Number formats are measured side by side
and one is kept by --objective. The result is registered as a child version only when its
quality loss is within budget; otherwise the command prints the table and exits 1.

--providers adds per-provider p50 and quality-delta columns (each candidate on a session on
[provider, CPU]); what is kept is decided on CPU's figures, and a provider this onnxruntime
build lacks is reported as fallen back (one line), not an error."""


def add_to(cli: typer.Typer) -> None:
    @cli.command(help=_HELP, short_help="Optimize a registered model (measured report).")
    def optimize(
        model_id: str = typer.Argument(..., help="Model id in the registry."),
        version: str | None = typer.Option(None, "--version", "-v", help="[default: promoted]"),
        steps: str = typer.Option(
            "dynamic,static,fp16,prune,trees,graph,compress",
            "--steps",
            help="Comma-separated steps to try.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        budget_auc: float = typer.Option(
            0.01, "--budget-auc", min=0.0, help="Max AUC lost (classifiers)."
        ),
        budget_rmse: float = typer.Option(
            0.05, "--budget-rmse", min=0.0, help="Max relative RMSE increase (regressors)."
        ),
        objective: str = typer.Option(
            "balanced", "--objective", help="balanced | size | latency: which candidate to keep."
        ),
        sparsity: float = typer.Option(0.5, "--sparsity", help="Fraction of weights to prune."),
        threads: int = typer.Option(1, "--threads", min=1, help="ONNX intra-op threads."),
        register: bool = typer.Option(
            True, "--register/--no-register", help="Register the result as a child version."
        ),
        timing_s: float = typer.Option(
            0.3, "--timing-s", min=0.001, help="Seconds of single-sample timing per round."
        ),
        markdown: Path | None = typer.Option(  # noqa: B008
            None, "--markdown", dir_okay=False, help="Also write the report as markdown here."
        ),
        providers: list[str] = providers_option(),  # noqa: B008
        root: Path | None = ROOT_OPTION,
    ) -> None:
        wished = parse_providers(providers) or ["cpu"]
        _require_train_extra()
        from rich.console import Console

        from edgeml.models.manifest import QualityBudgetExceeded
        from edgeml.models.optimize.pipeline import OBJECTIVES, optimize, parse_steps

        try:
            chosen = parse_steps(steps)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--steps") from None
        if objective not in OBJECTIVES:
            raise typer.BadParameter(
                f"{objective!r}; choose from {', '.join(OBJECTIVES)}", param_hint="--objective"
            )
        if not 0.0 < sparsity < 1.0:
            raise typer.BadParameter("must be in (0, 1)", param_hint="--sparsity")
        registry = open_registry(root, threads)
        report = optimize(
            registry,
            model_id,
            version,
            steps=chosen,
            budget_auc=budget_auc,
            budget_rmse=budget_rmse,
            objective=objective,  # type: ignore[arg-type]
            sparsity=sparsity,
            threads=threads,
            register=register,
            timing_s=timing_s,
            providers=wished,
        )
        if markdown is not None:
            markdown.write_text(report.to_markdown())
        if as_json:
            typer.echo(report.to_json())
        else:
            wide = None if sys.stdout.isatty() else 200  # pipes and logs get the whole table
            console = Console(highlight=False, width=wide)
            console.print(report.to_table())
            for line in report.provider_lines():
                console.print(line)
            for note in report.notes:
                console.print(f"note: {note}")
            if report.within_budget:
                console.print(
                    f"registered {report.registered}"
                    if report.registered
                    else "not registered" + ("" if register else " (--no-register)")
                )
        if not report.within_budget:
            raise QualityBudgetExceeded(report.budget_message())


def _require_train_extra() -> None:
    missing = [name for name in TRAIN_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"edgeml optimize needs the train extra ({', '.join(missing)} not installed): "
            "pip install 'edgeml[cli,train]'"
        )
