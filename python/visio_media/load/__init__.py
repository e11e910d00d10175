"""`visio-media load`: a load generator whose simulated participants take the real path.

Signalling (one WebSocket per participant, a real token) runs here on asyncio; the media of all
participants (ICE, DTLS, SRTP, synthetic Opus and VP8) runs in Rust (`_native.LoadGen`).
Layering: ``probe`` (the server process and its /metrics) and ``report`` (the summary) below
``runner`` (the run itself); ``cli.py`` parses the options into a ``LoadOptions``.
"""

from visio_media.load.runner import LoadOptions, run_load

__all__ = ["LoadOptions", "run_load"]
