#!/usr/bin/env bash
# Nightly restore drill: restore the newest backup of a Juju controller onto a throwaway VM, isolated
# (its egress closed before juju-db or jujud start), and check that it really restored.
#
#   CONTROLLER=mycontroller DRILL_TARGET=ubuntu@10.0.0.99 examples/nightly-drill.sh
#
# CONTROLLER    the controller's name in the Juju client's controllers.yaml ($JUJU_DATA; user ubuntu,
#               key juju_id_rsa), whose catalog holds the backups (`jujubackup -c NAME create` makes them)
# DRILL_TARGET  a throwaway VM that nothing else uses: the same series as the controller, the mongo
#               tools of the backup's Juju (juju-db snap for 2.9/3.x, juju-mongodb for 2.8), nftables
#               or iptables, sudo without a password for the SSH user, its host key in known_hosts
# REPORTS       where drill.json and drill.xml (JUnit) go (default: ./reports)
#
# Exit code: 0 every check passed; 8 a check failed (drill.xml says which); 6 the target is a live or
# a model's machine, or its egress cannot be closed; 3 SSH; 5 no backup; 4 a restore step failed.
set -euo pipefail
: "${CONTROLLER:?set CONTROLLER to the controller name in controllers.yaml}"
: "${DRILL_TARGET:?set DRILL_TARGET to a throwaway VM ([user@]host)}"
REPORTS=${REPORTS:-reports}
mkdir -p "$REPORTS"

# A fresh backup first (comment out to drill the newest existing one).
jujubackup -q -c "$CONTROLLER" create "nightly drill $(date -u +%F)"

# Then drill it. The VM is left with the drilled controller stopped (its units disabled, egress still
# closed): destroy it afterwards, it holds the backup's secrets.
rc=0
jujubackup -c "$CONTROLLER" --format json drill latest --target "$DRILL_TARGET" \
  --junit "$REPORTS/drill.xml" >"$REPORTS/drill.json" || rc=$?
echo "drill exit code $rc; reports in $REPORTS/" >&2
exit "$rc"
