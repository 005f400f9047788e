"""The project's own error types.

Every error raised on purpose derives from :class:`SparringError`; the CLI prints its message
without a traceback. Messages name the file, line, field or component at fault and say what
was expected.
"""


class SparringError(Exception):
    """Base class of every deliberate error in Sparring."""


class ConfigError(SparringError):
    """A configuration file or override is invalid."""


class DataError(SparringError):
    """A prompt or seed file cannot be read or is malformed."""


class ModelError(SparringError):
    """A model or tokenizer cannot be loaded or used."""


class JudgeError(SparringError):
    """A judge failed or returned output of the wrong shape or range."""


class CheckpointError(SparringError):
    """A checkpoint cannot be written or read."""


class NonFiniteError(SparringError):
    """NaN or Inf appeared in rewards, logits or losses."""


class EndpointError(SparringError):
    """A served model (an OpenAI-compatible endpoint) failed after its retries, or the run's
    request budget is spent."""
