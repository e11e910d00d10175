"""``python -m visio_media``: the same as the ``visio-media`` command."""

from visio_media.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
