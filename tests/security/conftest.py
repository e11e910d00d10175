"""The security tests reuse the live server and SDK helpers of tests/signalling."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
