"""The fault harness of issue #9: `python -m bench.faults` (= `make faults`).

Kills, stops and poisons a real worker against a real broker and checks that nothing is lost,
nothing is falsely `late`, the analytics fleet total equals a rebuild from the input topic,
every poison message reaches the dead-letter topic exactly once, and the worker never stalls.
`scenarios` holds the scenarios (R1, R1f, R1d, R2, R3, R4), `traffic` what they send, `procs`
the broker and worker processes, `watch` the live checks and `verdict` the final read-back.
"""
