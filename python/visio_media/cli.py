"""Command line of visio-media (``visio-media`` / ``python -m visio_media``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visio_media import __version__

__all__ = ["build_parser", "main"]

# Exit status for "this cannot run", as argparse uses for usage errors.
EXIT_UNAVAILABLE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visio-media",
        description="visio-media: a WebRTC SFU (Rust data plane, asyncio control plane).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve",
        help="run the signalling server and the media engine",
        description="Run the signalling server and the media engine.",
    )
    return parser


def _serve(_args: argparse.Namespace) -> int:
    print(
        "visio-media serve: the signalling server is not built yet (issue 3)",
        file=sys.stderr,
    )
    return EXIT_UNAVAILABLE


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    args = build_parser().parse_args(argv)
    handlers = {"serve": _serve}
    return handlers[args.command](args)  # argparse has already rejected unknown commands
