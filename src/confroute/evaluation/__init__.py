"""Measuring a routed system: evaluation at every threshold, plots, drift monitoring."""
