"""The Host seam (see base.py). Only this package imports fabric/paramiko."""

from jujubackup.host.base import Host, Progress, RemoteResult

__all__ = ["Host", "Progress", "RemoteResult"]
