"""jujubackup: SSH-driven backup and disaster recovery for Juju controllers."""

__version__ = "0.1.0"
