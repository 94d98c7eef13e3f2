"""The one error type that stops startup with a single actionable line."""


class ConfigError(Exception):
    """A user-fixable problem with parameters, engine_config.json or the model folder.

    The message is one line that names the field (or file and JSON path) and what was
    expected; it never contains a secret value.
    """
