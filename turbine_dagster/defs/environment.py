"""The settings every definition module shares, read once per code-server process."""

from turbine_dagster.settings import Settings

SETTINGS = Settings.from_env()
