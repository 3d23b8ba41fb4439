"""Typed errors of the ML core.

Callers (Celery tasks, the edge agent, the portal) catch ``MLError`` to tell "the input or artefact
was bad" apart from programming errors; the subclasses say what kind of bad.
"""


class MLError(Exception):
    """Base class of every error raised on purpose by ``worker.ml``."""


class MLInputError(MLError, ValueError):
    """Data given to the ML core is unusable (empty, wrong dtype/shape, NaN/out-of-bounds boxes)."""


class ConfigError(MLError, ValueError):
    """An algorithm configuration is invalid. ``field`` names the offending key path."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class RegistryError(MLError, LookupError):
    """A plugin alias is unknown, registered twice, or a plugin module cannot be loaded."""


class ModelArchiveError(MLError):
    """A model archive is missing, corrupt, incomplete or was written by an incompatible version."""


class ChecksumMismatchError(ModelArchiveError):
    """A model archive (or one of its members) does not match its recorded sha256."""


class ModelNotReadyError(MLError):
    """The model was used before it was built, trained or loaded."""
