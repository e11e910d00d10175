"""aiortc is the client SDK's optional dependency (the ``client`` extra): the server and its
CLI never import it, and importing the SDK without it says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Makes `import aiortc` fail in the child, as on an install without the extra.
_HIDE_AIORTC = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoAiortc(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "aiortc" or name.startswith("aiortc."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoAiortc())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _HIDE_AIORTC + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_server_and_cli_import_without_aiortc() -> None:
    done = _run(
        """
        import sys
        import visio_media, visio_media.cli, visio_media.server, visio_media.signalling
        import visio_media.load
        loaded = sorted(m for m in sys.modules if m == "aiortc" or m.startswith("aiortc."))
        print("loaded:", loaded)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout, done.stdout


def test_client_import_without_aiortc_names_the_extra() -> None:
    done = _run(
        """
        try:
            import visio_media.client
        except ImportError as exc:
            print("refused:", exc)
        else:
            print("imported")
        """
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout, done.stdout
    assert "visio-media[client]" in done.stdout and "aiortc" in done.stdout, done.stdout


def test_client_extra_pins_the_tested_aiortc() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pinned = [
        line.strip()
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("aiortc==")
    ]
    assert len(pinned) == 1 and extras["client"] == pinned, (extras, pinned)
