"""`python -m tests.lab.without_readdress ARGS...`: the jujubackup CLI with restore's decision to
re-address forced to "no" (test code). A test restores onto a new address with it to show that the
restored jujud then refuses to run (peergrouper: the replica set names the old address) and that
restore's verify step catches it (exit 8): the product has no switch for this, the test patches the
one decision (restore/fresh.py's needs_readdress) in this process only."""

from __future__ import annotations

import sys

from jujubackup.cli import main
from jujubackup.restore import fresh


def never_readdress(*_: object) -> bool:
    return False


if __name__ == "__main__":
    setattr(fresh, "needs_readdress", never_readdress)  # noqa: B010  (patching the module's name)
    sys.exit(main(sys.argv[1:]))
