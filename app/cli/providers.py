"""`--providers`, shared by `edgeml optimize` and `edgeml serve`: an ordered ONNX Runtime
execution-provider wish list (`models.inference.providers`), repeatable or comma-separated.

    edgeml serve --providers openvino,cpu
    edgeml optimize failure-gbm --providers cpu --providers cuda

Unknown names are refused here (exit 2, one line naming the valid ones); known names this
onnxruntime build lacks are not an error: the command falls back to CPU, logs it once and
counts it (`edgeml_provider_fallbacks`).
"""

from __future__ import annotations

import typer

__all__ = ["PROVIDERS_HELP", "parse_providers", "providers_option", "short_names"]

PROVIDERS_HELP = (
    "ONNX Runtime execution providers in priority order, comma-separated or repeated: cpu, "
    "openvino, cuda, tensorrt, coreml, dml (or ORT names); CPU always closes the list and a "
    "missing one falls back to it. [default: cpu]"
)


def providers_option() -> list[str]:
    """The `--providers` option (a fresh `typer.Option` per command)."""
    return typer.Option([], "--providers", metavar="NAME[,NAME...]", help=PROVIDERS_HELP)


def parse_providers(values: list[str]) -> list[str]:
    """`["openvino,cpu", "cuda"]` -> `["openvino", "cpu", "cuda"]`; unknown names raise
    `typer.BadParameter`. Nothing is resolved against this machine here (so nothing is counted
    as a fallback twice): the command's sessions do that."""
    from edgeml.models.inference.providers import KNOWN, resolve

    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if values and not names:
        raise typer.BadParameter("empty; give at least one provider", param_hint="--providers")
    try:
        resolve(names, available=sorted(KNOWN))  # validates names; every known one "exists"
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--providers") from None
    return names


def short_names(providers: tuple[str, ...] | list[str]) -> str:
    """`("OpenVINOExecutionProvider", "CPUExecutionProvider")` -> `openvino+cpu` (empty: cpu)."""
    from edgeml.models.inference.providers import ALIASES

    short = {name: alias for alias, name in reversed(list(ALIASES.items()))}
    return "+".join(short.get(p, p) for p in providers) or "cpu"
