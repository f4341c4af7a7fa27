"""The chaos suite reuses the integration suite's fixtures (cluster, primary, pgcat) and helpers; it runs on a
cluster of its own (scripts/chaos.sh) because it kills and promotes servers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from conftest import *  # noqa: E402,F401,F403  (fixtures and hooks)
