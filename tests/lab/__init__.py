"""The jujubackup test lab: throwaway Juju-controller hosts in systemd-nspawn containers (test code).

Entry points: `python -m tests.lab {rootfs,up,down,status}` and `tests.lab.lab.Lab` (see lab.py).
"""
