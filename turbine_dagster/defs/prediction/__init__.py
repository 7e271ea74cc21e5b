"""Definitions of the prediction code location: batch scoring and monitoring."""
