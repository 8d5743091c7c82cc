"""The package version, in one place (read by the facade, the CLI and the service without importing torch)."""

__version__ = "0.1.0"
