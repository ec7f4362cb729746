# jujubackup — two commands for a newcomer:
#   make demo   set everything up from nothing and run the disaster-recovery story against lab hosts
#               (PROFILE=juju-3.6: any lab profile, README "Lab profiles"; default juju-2.9)
#   make test   set everything up and run the whole suite: lint + unit as an unprivileged user, then the
#               tests that need root (tests/host: a loopback sshd; tests/integration: the lab)
SHELL := /bin/bash
PY ?= python3
PROFILE ?= juju-2.9
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := systemd-container debootstrap zstd pigz shellcheck openssh-client iproute2 python3-venv python3-bson openssh-server age gcc make libc6-dev

.PHONY: demo test deps venv libjuju rootfs lint unit unprivileged lab-down clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to install:$$missing" >&2; exit 1; fi; \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BIN)/jujubackup: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# .pyc as a wheel install has them (an editable install under PYTHONDONTWRITEBYTECODE=1 would
	# compile every module at every start: ~0.2 s per command)
	$(BIN)/python -m compileall -q jujubackup
	touch $@

venv: $(BIN)/jujubackup

# python-libjuju in venvs of its own (tests/libjuju: 2.9.49.1 for 2.x pins paramiko<3, 3.6.1.3 for 3.x);
# the lab tests use it as a client
libjuju: venv
	$(BIN)/python -c 'import tests.libjuju as l; print(l.python(2), l.python(3))'

# the lab rootfs (tests/lab/rootfs.py PACKAGES) has nftables: a drill target needs nftables or iptables;
# the xenial profile's bash 4.3 is built here from tests/lab/vendor (gcc, make: tests/lab/oldbash.py)
rootfs: deps venv
	$(BIN)/python -m tests.lab rootfs

lint: venv
	$(BIN)/ruff check jujubackup tests benchmarks
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit

# the root-free lane: lint + tests/unit as an unprivileged user (as root: `nobody`, on a copy of the tree)
unprivileged: deps
	.ci/unprivileged

# root-free lane first, then the lanes that need root: tests/host (a loopback sshd, mounts) and the lab
test: deps venv libjuju unprivileged rootfs
	$(BIN)/pytest -q -ra --durations=30 tests/host tests/integration

demo: deps venv rootfs
	$(BIN)/python -m tests.lab.demo --profile $(PROFILE)

lab-down: venv
	$(BIN)/python -m tests.lab down

clean: lab-down
	rm -rf $(VENV) .venv-libjuju .venv-libjuju3 build dist *.egg-info
