"""The exceptions of the client SDK."""

from __future__ import annotations

from visio_media.errors import VisioError

__all__ = ["ClientError", "ConnectionLost"]


class ClientError(VisioError):
    """The server refused a request (``code`` is the protocol error code), or the client cannot
    do what was asked in its current state (``code`` ``"invalid_state"``)."""

    def __init__(self, code: str, message: str = "", ref: str | int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.ref = ref


class ConnectionLost(ClientError):
    """The signalling socket closed while a request was waiting for its reply."""

    def __init__(self, message: str = "the signalling connection closed") -> None:
        super().__init__("connection_lost", message)
