"""Monitoring shared by every MD engine: energy conservation (``energy``, ``drift``) and trust in the student
(``deviation``: committee force deviation and teacher spot checks)."""

from .deviation import DeviationMonitor, force_deviation, force_errors, read_deviation_csv  # noqa: F401
from .drift import RunningSlope, drift_slope  # noqa: F401
from .energy import EnergyMonitor  # noqa: F401
from .plot import COLUMNS, plot_monitor, read_monitor_csv  # noqa: F401

__all__ = ["COLUMNS", "DeviationMonitor", "EnergyMonitor", "RunningSlope", "drift_slope", "force_deviation",
           "force_errors", "plot_monitor", "read_deviation_csv", "read_monitor_csv"]
