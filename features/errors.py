"""The exception tree shared by every Freshet package.

Every error a user can cause derives from :class:`FreshetError`, so the CLI can
print it as one clear line (no traceback) and exit with the error's ``exit_code``:

- 1: a check found problems or differences (``validate``, ``parity``; set by those commands);
- 2: usage: a flag, argument, setting, definition or repository is wrong (:class:`UsageError`);
- 3: a runtime failure: a server unreachable or refusing, a sink or a worker failing.
"""

from __future__ import annotations

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


class FreshetError(Exception):
    """Base class of every error Freshet raises on purpose."""

    exit_code = EXIT_RUNTIME


class UsageError(FreshetError):
    """What the user asked for is wrong: fix the flag, setting or definition named in the message."""

    exit_code = EXIT_USAGE


# --- definitions and the feature repository --------------------------------


class DefinitionError(UsageError, ValueError):
    """A feature definition is invalid (bad value, out of range, unknown name)."""


class RepositoryError(UsageError):
    """A feature repository cannot be loaded (bad file, duplicate names)."""


class FingerprintError(RepositoryError):
    """A view's semantics changed while its version did not (see freshet.lock)."""


# --- configuration and the local stack -------------------------------------


class ConfigError(UsageError):
    """Settings, flags or environment variables are missing or invalid."""


class CredentialsError(FreshetError):
    """A server (Kafka, Redis) refused Freshet's credentials: waiting does not help, so nothing retries."""


class StackError(FreshetError):
    """The local broker/Redis stack cannot be started, found or stopped."""


class TopicError(FreshetError):
    """A topic is missing or exists with a configuration that does not match."""


# --- the stream processor and its sinks ------------------------------------


class PipelineError(FreshetError):
    """The stream processor cannot run (no views, bad topology, bad state)."""


class SinkError(FreshetError):
    """A sink (Redis, Parquet) cannot write."""


class OnlineStoreError(FreshetError):
    """The online store (Redis) cannot be reached or returned bad data."""


class RequestError(UsageError, ValueError):
    """A read asked for something its views cannot answer (e.g. ``at`` of a last-event view)."""


class OfflineStoreError(FreshetError):
    """The offline log (Parquet) cannot be read or written."""


class ReplayError(FreshetError):
    """A replay cannot be planned or completed."""


class ReplayUsageError(ReplayError, UsageError):
    """A replay was asked for with flags that cannot work together (or over a log it would destroy)."""

    exit_code = EXIT_USAGE
