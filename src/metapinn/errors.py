"""The error every module raises for invalid settings or inputs, in a module of its own so that
the command line can catch it without importing torch."""


class ConfigError(ValueError):
    """A configuration value, override or input file is invalid; the message names it."""
