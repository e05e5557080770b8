"""Simulated OVRO-LWA observations with known truth: the project's test data."""
from .night import SimConfig, SimNight, simulate_ms, simulate_night

__all__ = ["SimConfig", "SimNight", "simulate_ms", "simulate_night"]
