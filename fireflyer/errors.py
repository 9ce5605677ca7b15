"""Exceptions of the fireflyer glue package (CLI, config, launcher)."""


class FireflyerError(Exception):
    """Base of every error raised by fireflyer itself."""


class ConfigError(FireflyerError, ValueError):
    """A cluster configuration is malformed; the message names the field."""
