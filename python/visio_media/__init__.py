"""visio-media: a WebRTC SFU with a Rust data plane and an asyncio control plane.

The Rust engine lives in the private extension module ``visio_media._native``; the Python
modules of this package wrap it (see docs/architecture.md).
"""

from visio_media._native import __version__

__all__ = ["__version__"]
