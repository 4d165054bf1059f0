"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class ConfigError(Exception):
    """Bad input (config, profile, command line) that the user must fix; the message says how."""
