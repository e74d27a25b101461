"""The optimizer's measured report: one row per step, as a rich table, JSON or markdown."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["OptimizationReport", "ProviderResult", "StepResult"]

Status = Literal["baseline", "kept", "rejected", "skipped", "failed"]


@dataclass(slots=True)
class ProviderResult:
    """One step's figures on one execution provider (a session on [provider, CPU]); deltas are
    against the fp32 baseline on CPU. `note` says when the session fell back to CPU."""

    provider: str  # ORT's name, e.g. "OpenVINOExecutionProvider"
    session_providers: list[str] = field(default_factory=list)  # what the session took
    p50_us: float | None = None
    p99_us: float | None = None
    batch64_per_s: float | None = None
    session_ms: float | None = None
    quality_delta: float | None = None
    max_abs_diff: float | None = None
    note: str = ""


@dataclass(slots=True)
class StepResult:
    """One step's measurements: `status` says whether the optimizer kept it and `note` why."""

    step: str
    status: Status
    note: str = ""
    applied_to: str | None = None
    size_bytes: int | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    batch64_per_s: float | None = None
    session_ms: float | None = None
    quality: dict[str, float] = field(default_factory=dict)
    quality_delta: float | None = None  # primary metric minus the baseline's (+ = better AUC)
    max_abs_diff: float | None = None  # vs the fp32 baseline's scores
    label_agreement: float | None = None  # vs the fp32 baseline's labels (classifiers)
    providers: dict[str, ProviderResult] = field(default_factory=dict)  # "cpu", "openvino", ...

    @property
    def measured(self) -> bool:
        return self.size_bytes is not None


@dataclass(slots=True)
class OptimizationReport:
    """What `optimize` did to one model: the baseline, every step, and the final choice.

    `quality_delta` is final minus baseline on the primary metric (`auc` for classifiers,
    where negative is a loss; `rmse` for regressors, where positive is a loss).
    """

    model: str
    task: str
    primary: str
    steps: list[StepResult]
    final_step: str
    budget: float
    threads: int
    machine: str
    eval_rows: int
    calibration_rows: int
    registered: str | None = None
    notes: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=lambda: ["cpu"])  # resolved, in order
    provider_fallbacks: dict[str, str] = field(default_factory=dict)  # wished -> what happened

    def step(self, name: str) -> StepResult:
        for result in self.steps:
            if result.step == name:
                return result
        raise KeyError(f"no step {name!r} in the report (steps: {[s.step for s in self.steps]})")

    @property
    def baseline(self) -> StepResult:
        return self.steps[0]

    @property
    def final(self) -> StepResult:
        return self.step(self.final_step)

    @property
    def size_ratio(self) -> float:
        base, final = self.baseline.size_bytes or 0, self.final.size_bytes or 0
        return base / final if final else 0.0

    @property
    def quality_delta(self) -> float:
        return self.final.quality_delta or 0.0

    @property
    def quality_loss(self) -> float:
        """How much worse the final model is (>= 0 means worse), in the budget's units."""
        return _loss(self.primary, self.quality_delta, self.baseline.quality.get(self.primary))

    @property
    def within_budget(self) -> bool:
        return self.quality_loss <= self.budget + 1e-12

    def step_loss(self, result: StepResult) -> float:
        return _loss(
            self.primary, result.quality_delta or 0.0, self.baseline.quality.get(self.primary)
        )

    def budget_message(self) -> str:
        """One line: the loss, the budget and what each kept step cost."""
        costs = ", ".join(
            f"{s.step} {self.step_loss(s):+.4f}"
            for s in self.steps
            if s.status == "kept" and s.quality_delta is not None
        )
        unit = "AUC" if self.primary == "auc" else "relative RMSE"
        return (
            f"{self.model}: optimized model loses {self.quality_loss:.4f} {unit} "
            f"(budget {self.budget:.4f}); cumulative loss after each kept step: {costs}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "primary_metric": self.primary,
            "machine": self.machine,
            "threads": self.threads,
            "eval_rows": self.eval_rows,
            "calibration_rows": self.calibration_rows,
            "budget": self.budget,
            "steps": [asdict(s) for s in self.steps],
            "final_step": self.final_step,
            "size_ratio": round(self.size_ratio, 3),
            "quality_delta": round(self.quality_delta, 6),
            "within_budget": self.within_budget,
            "registered": self.registered,
            "notes": self.notes,
            "providers": self.providers,
            "provider_fallbacks": self.provider_fallbacks,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    def rows(self) -> list[list[str]]:
        """Table cells (header first), shared by the rich table and the markdown."""
        metrics = ["auc", "f1", "accuracy"] if self.primary == "auc" else ["rmse"]
        # The main columns are CPU's; every other provider gets its p50 and Δ columns.
        others = [p for p in self.providers if p != "cpu"]
        extra = [h for p in others for h in (f"p50 µs {p}", f"Δ{self.primary} {p}")]
        header = [
            "step", "status", "size", "x smaller", "p50 µs", "p99 µs", "batch64/s",
            "session ms", *metrics, "Δ" + self.primary, *extra, "note",
        ]  # fmt: skip
        base = self.baseline.size_bytes or 0
        out = [header]
        for s in self.steps:
            ratio = f"{base / s.size_bytes:.2f}" if s.size_bytes else ""
            out.append(
                [
                    s.step,
                    s.status + (" ◀" if s.step == self.final_step else ""),
                    _size(s.size_bytes),
                    ratio,
                    _num(s.p50_us, 1),
                    _num(s.p99_us, 1),
                    _num(s.batch64_per_s, 0),
                    _num(s.session_ms, 1),
                    *[_num(s.quality.get(m), 4) for m in metrics],
                    "" if s.quality_delta is None else f"{s.quality_delta:+.4f}",
                    *[cell for p in others for cell in _provider_cells(s.providers.get(p))],
                    s.note,
                ]
            )
        return out

    def provider_lines(self) -> list[str]:
        """`providers: cpu, openvino` and one line per wished provider that fell back."""
        lines = [f"providers: {', '.join(self.providers)} (decisions on cpu)"]
        lines += [f"fallback: {name}: {why}" for name, why in self.provider_fallbacks.items()]
        return lines

    def to_markdown(self) -> str:
        rows = self.rows()
        lines = [
            f"**{self.model}** ({self.task}, {self.eval_rows} eval rows, "
            f"{self.threads} thread, {self.machine}): final `{self.final_step}`, "
            f"{self.size_ratio:.2f}x smaller, Δ{self.primary} {self.quality_delta:+.4f}",
            "",
            "| " + " | ".join(rows[0]) + " |",
            "|" + "---|" * len(rows[0]),
        ]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
        lines += ["", *(f"- {line}" for line in self.provider_lines())]
        return "\n".join(lines) + "\n"

    def to_table(self) -> Any:
        """A `rich.table.Table` of the steps."""
        from rich.table import Table

        rows = self.rows()
        table = Table(
            title=f"{self.model}: {self.size_ratio:.2f}x smaller, "
            f"Δ{self.primary} {self.quality_delta:+.4f} (final: {self.final_step})"
        )
        for i, name in enumerate(rows[0]):
            table.add_column(name, justify="left" if i in (0, 1, len(rows[0]) - 1) else "right")
        for row in rows[1:]:
            table.add_row(*row)
        return table


def _loss(primary: str, delta: float, base: float | None) -> float:
    if primary == "auc":
        return -delta
    return delta / base if base else delta


def _provider_cells(entry: ProviderResult | None) -> tuple[str, str]:
    if entry is None or entry.p50_us is None:
        return ("fell back" if entry is not None else "", "")
    delta = "" if entry.quality_delta is None else f"{entry.quality_delta:+.4f}"
    return _num(entry.p50_us, 1), delta


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def _size(value: int | None) -> str:
    if value is None:
        return ""
    if value >= 1 << 20:
        return f"{value / (1 << 20):.2f} MiB"
    if value >= 1 << 10:
        return f"{value / (1 << 10):.1f} KiB"
    return f"{value} B"
