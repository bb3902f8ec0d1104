"""Measurement and its consequences: Prometheus metrics (and, later, statistics and the controller)."""
