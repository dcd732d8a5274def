"""Energy-conservation monitoring shared by every MD engine."""

from .drift import RunningSlope, drift_slope  # noqa: F401
from .energy import EnergyMonitor  # noqa: F401
from .plot import COLUMNS, plot_monitor, read_monitor_csv  # noqa: F401

__all__ = ["COLUMNS", "EnergyMonitor", "RunningSlope", "drift_slope", "plot_monitor", "read_monitor_csv"]
