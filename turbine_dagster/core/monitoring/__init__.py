"""Feature drift between training and scoring data."""
