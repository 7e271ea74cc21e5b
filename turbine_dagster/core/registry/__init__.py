"""The model registry: versions, the serving pointer and its history, events."""
