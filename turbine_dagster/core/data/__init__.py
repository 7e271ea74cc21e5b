"""Data as teams land it: layouts, landing zone, value checks, splits, demo data."""
