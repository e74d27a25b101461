"""The fault scenarios of issue #9, each against a real broker and real worker processes.

| name | fault |
|---|---|
| R1 | kill -9 of the worker at 20/50/80 % of the run, restarted on the same data dir |
| R1f | the same, each restart on a fresh (empty) data dir: state from the changelog alone |
| R1d | the worker kills itself after its Nth commit flush, before the offset commit |
| R2 | two workers; SIGTERM one mid-run (seconds to exit), restart it (rejoin) |
| R3 | kill -9 of the single broker for `outage_s`, then the same home and port again |
| R4 | 1 % poison of every kind (`traffic.POISON_KINDS`) |

Every scenario has its own topic prefix and app id (`faults-<run id>-<name>-`), sends its
readings at a fixed rate while the faults happen, waits until the outputs settle, and is judged
by `verdict.judge` plus the fleet total. Timing targets (restart to first new output <= 15 s,
SIGTERM to exit <= 10 s) are reported apart from the correctness failures: they are what
`make faults` measures, not what a CI test on a shared machine should assert.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.checker import Probe
from bench.common import BenchEnv, cleanup, emit
from bench.faults.procs import Broker, Worker, WorkerFailed
from bench.faults.traffic import Plan, Producer, TrafficSpec, build_plan
from bench.faults.verdict import Figures, fleet_totals, judge
from bench.faults.watch import Watch

__all__ = ["SCENARIOS", "Options", "Result", "run_scenario"]

RESUME_TARGET_S = 15.0
SIGTERM_TARGET_S = 10.0
KILL_AFTER_FLUSH = "EDGEML_FAULT_KILL_AFTER_FLUSH"


@dataclass(frozen=True)
class Options:
    """Sizes and limits shared by the scenarios (`python -m bench.faults --help`)."""

    readings: int = 50_000
    devices: int = 100
    seconds: float = 20.0  # readings are sent over this long
    kills: tuple[float, ...] = (0.2, 0.5, 0.8)
    flush_kill: int = 3
    outage_s: float = 30.0
    poison_fraction: float = 0.01
    stall_s: float = 45.0
    resume_timeout_s: float = 120.0
    keep_topics: bool = False
    worker_env: tuple[tuple[str, str], ...] = ()  # extra EDGEML_* for every worker


@dataclass
class Result:
    """What one scenario printed: figures, the story, failures, timings and missed targets."""

    name: str
    title: str
    figures: Figures = field(default_factory=Figures)
    events: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    missed_targets: list[str] = field(default_factory=list)
    timings: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "failures": self.failures,
            "missed_targets": self.missed_targets,
            "timings": self.timings,
            "figures": self.figures.as_dict(),
        }


class Run:
    """One scenario's broker, workers, traffic and watch; `finish` judges and cleans up."""

    def __init__(self, name: str, broker: Broker, work_dir: Path, run_id: str, opts: Options,
                 *, poison_fraction: float = 0.0) -> None:  # fmt: skip
        self.name, self.broker, self.opts = name, broker, opts
        self.prefix = f"faults-{run_id}-{name.lower()}-"
        self.dir = work_dir / name
        self.spec = TrafficSpec(readings=opts.readings, devices=opts.devices,
                                seconds=opts.seconds, poison_fraction=poison_fraction)  # fmt: skip
        self.plan: Plan = build_plan(self.spec)
        self.probe = Probe(broker.bootstrap)
        self.workers: list[Worker] = []
        topics = [f"{self.prefix}predictions", f"{self.prefix}sensor-readings.dlq"]
        self.watch = Watch(self.probe, topics, self.workers, stall_s=opts.stall_s,
                           resume_timeout_s=opts.resume_timeout_s)  # fmt: skip
        self.producer: Producer | None = None
        self.timings: dict[str, list[float | None]] = {}
        self.missed: list[str] = []

    def worker(self, name: str, **env: str) -> Worker:
        worker = Worker(name, self.broker.bootstrap, self.prefix, self.dir / f"{name}-data",
                        self.dir, extra_env={**dict(self.opts.worker_env), **env})  # fmt: skip
        self.workers.append(worker)
        return worker

    def start(self, worker: Worker) -> None:
        ready = worker.start(timeout_s=self.opts.resume_timeout_s)
        self.watch.note(f"{worker.name} start #{worker.starts}: ready in {ready:.1f} s")

    def produce(self) -> None:
        rate = len(self.plan.messages) / self.spec.seconds
        self.producer = Producer(self.broker.bootstrap, f"{self.prefix}sensor-readings",
                                 self.plan, rate).start()  # fmt: skip
        self.watch.note(f"sending {len(self.plan.messages):,} messages at {rate:,.0f}/s")

    def target(self, fraction: float) -> int:
        return int(fraction * len(self.plan.valid))

    def timing(self, what: str, seconds: float | None, target_s: float) -> None:
        self.timings.setdefault(what, []).append(None if seconds is None else round(seconds, 2))
        if seconds is None or seconds > target_s:
            shown = "never" if seconds is None else f"{seconds:.1f} s"
            self.missed.append(f"{what} {shown} > {target_s:.0f} s")

    def restart(self, worker: Worker, **changes: Any) -> None:
        """Start `worker` again (after a kill) and time its first new output; not timed when
        every input message was already answered before the kill (nothing new must come:
        a redelivered reading may be suppressed, and a late kill can follow the last one)."""
        for key, value in changes.items():
            setattr(worker, key, value)
        before = self.watch.poll()
        done = self.producer is not None and self.producer.done
        if done and before >= len(self.plan.messages):
            self.watch.note(f"every input message was answered before the kill ({before:,} "
                            "outputs): restart not timed")  # fmt: skip
            self.start(worker)
            return
        self.watch.grace()
        self.start(worker)
        resumed = self.watch.resumed(worker, before)
        if resumed is not None:
            self.watch.note(f"{worker.name} resumed in {resumed:.1f} s (restart to first new "
                            "output)")  # fmt: skip
        self.timing("resumed_s", resumed, RESUME_TARGET_S)
        self.watch.grace(0)

    def finish(self, result: Result) -> Result:
        producer = self.producer
        assert producer is not None
        expected = len(self.plan.messages)
        self.watch.settle(expected, lambda: producer.done)
        producer.join()
        self.watch.failures.extend(f"producer: {e}" for e in producer.errors)
        figures = judge(self.probe, self.prefix, self.plan, producer)
        alive = [w for w in self.workers if w.alive()]
        if alive:
            totals = fleet_totals(alive[0], (figures.rebuild_count, figures.rebuild_dead_letters))
            figures.fleet_count = totals.get("count")
            figures.fleet_dead_letters = totals.get("dead_letters")
            figures.fleet_late = totals.get("late")
            if "answer" in totals:
                self.watch.note(f"/analytics/fleet of {alive[0].name}: {totals['answer']}")
        else:
            self.watch.note("no worker alive to ask /analytics/fleet")
        result.figures = figures
        result.events = self.watch.events
        result.failures = [*self.watch.failures, *figures.failures()]
        result.timings = self.timings
        result.missed_targets = self.missed
        return result

    def close(self) -> None:
        for worker in self.workers:
            if worker.alive():
                worker.terminate(timeout_s=20)
        self.probe.close()
        cleanup(BenchEnv(bootstrap=self.broker.bootstrap, keep_topics=self.opts.keep_topics),
                self.prefix)  # fmt: skip


# --- the scenarios ----------------------------------------------------------------------------


def _kill_loop(run: Run, fresh: bool) -> None:
    worker = run.worker("w1")
    run.start(worker)
    run.produce()
    for fraction in run.opts.kills:
        if not run.watch.wait_predicted(run.target(fraction)):
            return
        worker.kill()
        run.watch.note(f"kill -9 {worker.name} at {run.watch.predicted():,} predictions "
                       f"({fraction:.0%})")  # fmt: skip
        changes = {"data_dir": run.dir / f"w1-data-{worker.starts + 1}"} if fresh else {}
        run.restart(worker, **changes)


def r1(run: Run) -> None:
    _kill_loop(run, fresh=False)


def r1f(run: Run) -> None:
    _kill_loop(run, fresh=True)


def r1d(run: Run) -> None:
    n = str(run.opts.flush_kill)
    worker = run.worker("w1", **{KILL_AFTER_FLUSH: n})
    run.start(worker)
    worker.expected_exit = True  # it is meant to kill itself
    run.produce()
    deadline = time.monotonic() + run.opts.resume_timeout_s
    while worker.alive() and time.monotonic() < deadline:
        run.watch.poll()
        time.sleep(0.1)
    if worker.alive():
        worker.kill()
        run.watch.fail(f"the worker did not kill itself after commit flush {n} "
                       f"({KILL_AFTER_FLUSH} not supported?): killed it at "
                       f"{run.watch.predicted():,} predictions")  # fmt: skip
    else:
        rc, predicted = worker.returncode, run.watch.predicted()
        run.watch.note(f"the worker killed itself after commit flush {n} (rc {rc}) at "
                       f"{predicted:,} predictions")  # fmt: skip
    worker.extra_env.pop(KILL_AFTER_FLUSH)
    run.restart(worker)


def r2(run: Run) -> None:
    first, second = run.worker("w1"), run.worker("w2")
    run.start(first)
    run.start(second)
    run.produce()
    if not run.watch.wait_predicted(run.target(0.5)):
        return
    before = run.watch.predicted()
    run.watch.grace()
    took = second.terminate(timeout_s=60)
    rc = second.returncode
    shown = "did not exit in 60 s (SIGKILLed)" if took is None else f"exited in {took:.1f} s"
    run.watch.note(f"SIGTERM {second.name} at {before:,} predictions: {shown}, rc {rc}")
    run.timing("sigterm_exit_s", took, SIGTERM_TARGET_S)
    if took is not None and rc != 0:
        run.watch.fail(f"{second.name} exited with rc {rc} after SIGTERM")
    run.start(second)  # rejoin
    run.watch.grace(0)


def r3(run: Run) -> None:
    if not run.broker.own:
        raise RuntimeError("R3 kills the broker: run it with the harness's own broker")
    worker = run.worker("w1")
    run.start(worker)
    run.produce()
    if not run.watch.wait_predicted(run.target(0.5)):
        return
    run.watch.grace(run.opts.outage_s + run.opts.resume_timeout_s)
    noise_before = worker.log_lines("[ERROR]", "[WARNING]")
    run.broker.kill9()
    run.watch.note(f"kill -9 the broker at {run.watch.last_total:,} output messages")
    time.sleep(run.opts.outage_s / 2)
    live, ready = worker.get("/health?probe=live")[0], worker.get("/health")[0]
    run.watch.note(f"mid-outage: worker alive {worker.alive()}, /health?probe=live {live}, "
                   f"/health {ready}")  # fmt: skip
    time.sleep(run.opts.outage_s / 2)
    noise = worker.log_lines("[ERROR]", "[WARNING]") - noise_before
    up = run.broker.restart()
    run.watch.note(f"broker back after {run.opts.outage_s:.0f} s (ready in {up:.1f} s); "
                   f"{noise:,} ERROR/WARNING log lines during the outage")  # fmt: skip
    before, since = run.watch.poll(), time.time()
    deadline = time.monotonic() + run.opts.resume_timeout_s
    while run.watch.poll() <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    resumed = time.time() - since if run.watch.last_total > before else None
    run.watch.note(
        "first new output "
        + ("never" if resumed is None else f"{resumed:.1f} s after the broker was back")
    )
    run.timing("resumed_after_broker_s", resumed, RESUME_TARGET_S)
    run.watch.grace(0)


def r4(run: Run) -> None:
    worker = run.worker("w1")
    run.start(worker)
    run.produce()
    kinds = run.plan.poison_by_kind()
    run.watch.note("poison by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))


SCENARIOS: dict[str, tuple[str, Callable[[Run], None], float]] = {
    "R1": ("kill -9 at 20/50/80 %, same data dir", r1, 0.0),
    "R1f": ("kill -9 at 20/50/80 %, fresh data dir", r1f, 0.0),
    "R1d": ("kill between state flush and offset commit", r1d, 0.0),
    "R2": ("two workers, SIGTERM one, rejoin", r2, 0.0),
    "R3": ("single broker kill -9 for the outage, restart", r3, 0.0),
    "R4": ("1 % poison of every kind", r4, -1.0),  # -1: the options' poison fraction
}


def run_scenario(name: str, broker: Broker, work_dir: Path, run_id: str, opts: Options) -> Result:
    """Run one scenario of `SCENARIOS` to the end and judge it (never raises for a fault the
    worker mishandles: that is a failure in the result)."""
    title, body, poison = SCENARIOS[name]
    result = Result(name, title)
    emit(f"== {name}: {title}")
    fraction = opts.poison_fraction if poison < 0 else poison
    run = Run(name, broker, work_dir, run_id, opts, poison_fraction=fraction)
    try:
        try:
            body(run)
        except WorkerFailed as exc:
            run.watch.fail(str(exc))
        if run.producer is None:
            run.produce()
        run.finish(result)
    finally:
        run.close()
    for line in result.figures.lines():
        emit(f"  {line}")
    if result.figures.dlq_classes:
        emit(f"  {result.figures.class_line()}")
    for line in result.failures:
        emit(f"  FAIL {line.splitlines()[0]}")
    for line in result.missed_targets:
        emit(f"  TARGET MISSED {line}")
    emit(f"  {name}: {'ok' if result.ok else 'FAILED'}")
    return result
