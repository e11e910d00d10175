"""A participant in its own process, to be killed: ``python sdk_process.py WS_URL TOKEN HZ``.

Joins with the SDK, publishes a sine of HZ, prints ``published`` and then keeps the call going
until it is killed (tests send SIGKILL: no leave, no close frame, no last datagram).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.media import SineAudioTrack
from helpers.peers import patch_aioice_loopback
from visio_media.client import Client


async def main(url: str, token: str, hz: float) -> None:
    patch_aioice_loopback()
    client = Client(url, token)
    await client.connect()
    await client.publish(SineAudioTrack(hz))
    print("published", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
