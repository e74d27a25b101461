"""Benchmarks against a real Kafka broker: `python -m bench` (= `make bench`) runs them all.

Each module is also a command that prints its own figures:

    python -m bench.ladder    # ceiling ladder A (raw aiokafka) / B (Faust no-op) / C (pipeline)
    python -m bench.latency   # end-to-end latency at fixed offered rates (+ the plot)
    python -m bench.scaling   # 1, 2, 3 workers
    python -m bench.memory    # worker RSS over many readings; state bytes per device
    python -m bench.steps     # per-step cost in microseconds per reading (in-process)

Method: the load generator (`bench.load`) and the system under test (`bench.passthrough`,
`bench.noop`, or the real worker `python -m edgeml.app worker`) run as separate processes; the
driver checks outputs on the broker. Every reading carries its scheduled send time (`sent_at`),
which the pipeline carries into its predictions and alerts. Each run uses its own topic prefix and
app id, and deletes its topics at the end. `--quick` shortens everything.
"""
