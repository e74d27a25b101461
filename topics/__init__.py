"""Declarations only: record schemas (`records`, Faust-free so the edge agent reuses them) and the
broker-side topics and tables (`catalog`)."""
