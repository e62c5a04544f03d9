"""The exception tree shared by every Freshet package.

Every error a user can cause derives from :class:`FreshetError`, so the CLI can
print it as one clear line (no traceback) and exit non-zero.
"""

from __future__ import annotations


class FreshetError(Exception):
    """Base class of every error Freshet raises on purpose."""


# --- definitions and the feature repository --------------------------------


class DefinitionError(FreshetError, ValueError):
    """A feature definition is invalid (bad value, out of range, unknown name)."""


class RepositoryError(FreshetError):
    """A feature repository cannot be loaded (bad file, duplicate names)."""


class FingerprintError(RepositoryError):
    """A view's semantics changed while its version did not (see freshet.lock)."""


# --- configuration and the local stack -------------------------------------


class ConfigError(FreshetError):
    """Settings, flags or environment variables are missing or invalid."""


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


class OfflineStoreError(FreshetError):
    """The offline log (Parquet) cannot be read or written."""


class ReplayError(FreshetError):
    """A replay cannot be planned or completed."""
