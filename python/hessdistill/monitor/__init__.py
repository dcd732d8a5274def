"""Energy-conservation monitoring shared by every MD engine."""

from .energy import COLUMNS, EnergyMonitor, drift_slope, plot_monitor, read_monitor_csv  # noqa: F401

__all__ = ["COLUMNS", "EnergyMonitor", "drift_slope", "plot_monitor", "read_monitor_csv"]
