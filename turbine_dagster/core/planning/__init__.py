"""Capacity planning for the GPU run queue."""
