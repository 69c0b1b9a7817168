"""Calibrators, calibration and selective-prediction metrics, and the learned correctness judge."""
