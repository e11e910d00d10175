"""The one exception tree of visio-media.

Every error the package raises on purpose is a :class:`VisioError`. Edges (signalling, the admin
API, the CLI) map these to their own error codes; nothing below them knows about those codes.
"""

__all__ = [
    "AuthError",
    "ConfigError",
    "EngineFailure",
    "ForbiddenError",
    "InvalidStateError",
    "NotFoundError",
    "ProtocolError",
    "RoomFullError",
    "ShuttingDownError",
    "TrackLimitError",
    "VisioError",
]


class VisioError(Exception):
    """Base class of every error visio-media raises on purpose."""


class ConfigError(VisioError):
    """The configuration is invalid: unknown key, wrong type, value out of range, weak secret."""


class AuthError(VisioError):
    """A token or credential was missing, malformed, expired, or does not grant the request."""


class NotFoundError(VisioError):
    """A room, participant, peer or track id that does not exist (or no longer does)."""


class InvalidStateError(VisioError):
    """The request is valid but not in the current state (e.g. subscribe before join)."""


class ProtocolError(VisioError):
    """A peer sent a malformed or out-of-sequence message (signalling JSON, SDP, ...)."""


class EngineFailure(VisioError):
    """The Rust engine reported a failure (an ``EngineError`` from ``visio_media._native``)."""


class RoomFullError(InvalidStateError):
    """The room already has its maximum number of participants."""


class TrackLimitError(InvalidStateError):
    """Publishing this would pass the participant's or the room's track limit."""


class ShuttingDownError(InvalidStateError):
    """The server is draining and takes no new participants."""


class ForbiddenError(AuthError):
    """The credentials are valid but do not grant this action."""
