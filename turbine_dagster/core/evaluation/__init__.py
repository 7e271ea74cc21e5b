"""Metrics, thresholds, champion selection and the promotion gate."""
