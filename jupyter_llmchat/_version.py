"""The package version, in one place (read by hatchling and by Welcome)."""

__version__ = "0.1.0"
