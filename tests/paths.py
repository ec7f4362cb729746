"""Where test data lives, independent of where the repository is cloned."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES_28 = REPO / "tests" / "fixtures" / "juju-2.8"
"""Real Juju 2.8 archives (juju-restore's public test data; see the README there)."""
VALID_28 = FIXTURES_28 / "valid-backup.tar.gz"
MISSING_ROOT_28 = FIXTURES_28 / "missing-root-backup.tar.gz"
