"""Offline jobs of the ML core: train the failure model, evaluate the Scorer on the simulator."""
