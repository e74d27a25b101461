"""ML and per-reading logic, Faust-free so the worker and the edge agent share it: validation,
windowed features, online and ONNX detectors, alerting, the model registry and optimizer."""
