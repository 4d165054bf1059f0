"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class ConfigError(Exception):
    """Bad input (config, profile, command line) that the user must fix; the message says how."""

    def __str__(self) -> str:
        # A value echoed into the message (a path or a name with a line break in it) must not split the one line.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")
