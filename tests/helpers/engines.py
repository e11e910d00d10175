"""A one-shard engine on 127.0.0.1 (any port), as the engine tests use it."""

from __future__ import annotations

from visio_media.engine import Engine, EngineConfig

from .peers import LOOPBACK


def make_engine() -> Engine:
    return Engine(
        EngineConfig(shards=1, bind_ip=LOOPBACK, announce_ip=None, port_min=0, port_max=0)
    )
