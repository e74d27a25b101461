"""Simulator, replay and evaluation: everything that feeds the platform test data and scores it.

No Faust here. `generator` builds a fleet's readings with labelled faults (`simulate`),
`malformed` makes invalid messages of known kinds, `truth` is the ground-truth file format,
`replay` parses CSV/JSONL files into readings, `evaluation` computes the benchmark metrics.
"""

from edgeml.sim.generator import METRICS, SimConfig, Simulation, simulate
from edgeml.sim.truth import FAULT_KINDS, GroundTruth, Incident, RunSummary

__all__ = [
    "FAULT_KINDS",
    "METRICS",
    "GroundTruth",
    "Incident",
    "RunSummary",
    "SimConfig",
    "Simulation",
    "simulate",
]
