"""Thin CLI: parse flags, build typed settings, call one operation, render the result.

Each verb lives in its own module in this package and registers itself with `register(app)`.
No SSH and no logic here.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jujubackup import __version__, sudopassword
from jujubackup.alloc import reuse_big_buffers
from jujubackup.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    JujuBackupError,
    exit_code_table,
    local_os_error,
)
from jujubackup.settings import ConnectionSettings, GlobalOptions, OutputFormat, StreamVia
from jujubackup.ui import UI

if TYPE_CHECKING:
    from jujubackup.host.base import Connector

ConnectorFactory = Callable[[ConnectionSettings], "Connector"]

# Verb modules, in the order of DESIGN.md §1. Only verbs that exist are listed (no stubs).
VERB_MODULES: tuple[str, ...] = (
    "create",
    "list_backups",
    "info",
    "download",
    "upload",
    "remove",
    "prune",
    "verify",
    "restore",
    "repoint",
    "drill",
    "status",
    "config",
    "run",
)

BackupDirOption = Annotated[
    str,
    typer.Option(
        "--backup-dir",
        help="Backup dir on the controller: an absolute path to a dedicated dir (system dirs and dirs "
        "holding files jujubackup did not make are refused).",
    ),
]
"""The `--backup-dir` option every catalog verb takes (default: profiles.DEFAULT_BACKUP_DIR)."""

FormatOption = Annotated[
    OutputFormat | None,
    typer.Option("--format", help="tabular|json|yaml (overrides the global --format).", case_sensitive=False),
]
"""A verb's own `--format`, which wins over the global one (see make_ui)."""

BackupIdArgument = Annotated[
    str | None, typer.Argument(help="Stored backup ID, unique prefix or `latest` (on the -H controller).")
]
"""The optional ID argument of restore and drill (the other form is --archive)."""
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
"""`--yes`, for every verb that asks before it changes anything (restore, prune, remove)."""

SUDO_PASSWORD_HELP = ("The login user's sudo password (first line; mode 0600), when its sudo asks for one. "
                      "Else $JUJUBACKUP_SUDO_PASSWORD, else asked once on a terminal.")

HELP = f"""Back up and restore Juju controllers over SSH.

\b
Exit codes:
{exit_code_table()}
"""

app = typer.Typer(
    name="jujubackup",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jujubackup {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    ctx: typer.Context,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", "-H", help="[user@]host[:port] or ssh-config alias; repeat for HA."),
    ] = None,
    controller: Annotated[
        str | None, typer.Option("--controller", "-c", help="Juju controller name from controllers.yaml.")
    ] = None,
    identity: Annotated[Path | None, typer.Option("--identity", "-i", help="SSH private key.")] = None,
    ssh_config: Annotated[
        Path | None, typer.Option("--ssh-config", "-F", help="OpenSSH client config (default ~/.ssh/config).")
    ] = None,
    known_hosts: Annotated[
        Path | None, typer.Option("--known-hosts", help="known_hosts file to use.")
    ] = None,
    accept_new_host_key: Annotated[
        bool, typer.Option("--accept-new-host-key", help="Trust and record an unknown host key.")
    ] = False,
    connect_timeout: Annotated[float, typer.Option("--connect-timeout", help="Seconds.")] = 10.0,
    sudo_password_file: Annotated[
        Path | None,
        typer.Option("--sudo-password-file", metavar="FILE", help=SUDO_PASSWORD_HELP),
    ] = None,
    transfer: Annotated[
        StreamVia,
        typer.Option(
            "--transfer", envvar="JUJUBACKUP_TRANSFER", case_sensitive=False,
            help="How archives move: auto = the OpenSSH client when it accepts the same key, else paramiko.",
        ),
    ] = StreamVia.auto,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output format for data.", case_sensitive=False)
    ] = OutputFormat.tabular,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More progress detail.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Global options, shared by every verb."""
    make_connector = ctx.obj if callable(ctx.obj) else ssh_connector  # main(make_connector=...): tests
    ctx.obj = GlobalOptions(
        connection=ConnectionSettings(
            hosts=tuple(host or ()),
            controller=controller,
            identity=identity,
            ssh_config=ssh_config,
            known_hosts=known_hosts,
            accept_new_host_key=accept_new_host_key,
            connect_timeout=connect_timeout,
            stream_via=transfer.value,
            sudo_password=sudopassword.from_options(sudo_password_file),
        ),
        format=output_format,
        quiet=quiet,
        verbose=verbose,
        make_connector=make_connector,
    )


def ssh_connector(settings: ConnectionSettings) -> Connector:
    """Return the SSH Connector over `settings` (imported only by a verb that connects: paramiko)."""
    from jujubackup.connect import SSHConnector

    return SSHConnector(settings)


def options(ctx: typer.Context) -> GlobalOptions:
    """Return the GlobalOptions of this invocation (set by the app callback)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions(make_connector=ssh_connector)


def make_ui(opts: GlobalOptions, fmt: OutputFormat | None = None) -> UI:
    """Return the UI for these options; a verb's own --format wins over the global one."""
    return UI(format=fmt or opts.format, quiet=opts.quiet, verbose=opts.verbose)


# Global options that take a value (the token after them is not the verb).
_VALUED_OPTIONS = frozenset({"-H", "--host", "-c", "--controller", "-i", "--identity", "-F", "--ssh-config",
                             "--known-hosts", "--connect-timeout", "--transfer", "--format",
                             "--sudo-password-file"})
_VERB_MODULE = {"list": "list_backups"}


def invoked_verb(argv: list[str]) -> str | None:
    """Given the command line (without the program), return the verb module it names, or None
    (no verb, or one that is unknown: then every verb is registered and click reports it)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--":
            return None
        elif token in _VALUED_OPTIONS:
            skip = True
        elif not token.startswith("-"):
            name = _VERB_MODULE.get(token, token)
            return name if name in VERB_MODULES else None
    return None


_registered: set[str] = set()
"""Verb modules already registered with `app` (main() may run several times in one process)."""


def _register_verbs(argv: list[str] | None = None) -> None:
    """Register the verb the command line names (startup imports only its modules: paramiko and
    the other verbs' operations cost ~1 s on a busy 2-vCPU machine), or every verb; each once."""
    verb = invoked_verb(sys.argv[1:] if argv is None else argv)
    for name in (verb,) if verb else VERB_MODULES:
        if name not in _registered:
            module = importlib.import_module(f"jujubackup.cli.{name}")
            module.register(app)
            _registered.add(name)


_METAVARS = {"host": "HOST", "target": "HOST", "controller": "NAME", "store": "NAME", "address": "ADDRESS"}
"""Plain metavars by parameter name, where the name alone does not say it (see plain_metavar)."""


def plain_metavar(param: Any) -> str:
    """Given a typer option, return a plain metavar for --help: HOST, NAME, FILE, DIR, SECONDS, N,
    the choices (a|b), else the parameter's name in capitals; typer's own is `<list[str]>`."""
    name = param.name or ""
    desc = param.type_descriptor
    choices = [getattr(c, "value", c) for c in (desc.choices or ())] if desc.is_choice else []
    annotation = desc.annotation
    if desc.is_list:
        annotation = getattr(annotation, "__args__", (annotation,))[0]
    if name in _METAVARS:
        return _METAVARS[name]
    if choices:
        return "|".join(str(c) for c in choices)
    if name.endswith("dir"):
        return "DIR"
    if desc.is_path or desc.is_file:
        return "FILE"
    if annotation is float:
        return "SECONDS" if "timeout" in name or name == "wait" else "NUMBER"
    if annotation is int:
        return "N"
    return name.upper().replace("_", "-")


def plain_help(command: Any) -> Any:
    """Given the app's click command, give every option without a metavar a plain one and drop
    typer's `<type>` after arguments (their metavar says it); return the command."""
    for param in command.params:
        kind = getattr(param, "param_type_name", "")
        if kind == "option" and not getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = plain_metavar(param)
        elif kind == "argument":
            param.display_type_rich = lambda ctx: None
            if param.metavar is None:
                param.metavar = "ID" if param.name == "backup_id" else (param.name or "").upper()
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command


def main(argv: list[str] | None = None, *, make_connector: ConnectorFactory | None = None) -> int:
    """Run the CLI; map typed errors to their exit codes with a one-line message and a hint.

    `make_connector` builds the Connector the verbs connect through from the connection settings
    (default: SSH; tests pass a FakeConnector)."""
    _register_verbs(argv)
    reuse_big_buffers()
    _silence_library_logs()
    ui = UI()
    try:
        command = plain_help(typer.main.get_command(app))
        returned = command(args=argv, standalone_mode=False, obj=make_connector)
    except JujuBackupError as err:
        ui.error(err.message, err.hint)
        return err.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        return EXIT_INTERRUPTED
    except typer.Exit as done:
        return int(done.exit_code or 0)
    except typer.Abort:
        ui.error("aborted")
        return EXIT_INTERRUPTED
    except Exception as err:
        if isinstance(err, OSError) and err.filename is not None:
            # a file on this workstation: no space, no such directory, unreadable - not a bug
            failed = local_os_error(err)
            ui.error(failed.message, failed.hint)
            return failed.exit_code
        # click's usage errors (vendored by typer) carry their own exit code
        show = getattr(err, "show", None)
        code = getattr(err, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        ui.error(f"internal error: {type(err).__name__}: {err}", "re-run with -v and report this as a bug")
        if "-v" in sys.argv or "--verbose" in sys.argv:
            raise
        return EXIT_INTERNAL
    if returned == EXIT_INTERRUPTED:  # typer turns Ctrl-C into a return value when not standalone
        ui.error("interrupted", "nothing was registered unless an ID was printed; re-run to try again")
        return EXIT_INTERRUPTED
    return returned if isinstance(returned, int) else 0


def _silence_library_logs() -> None:
    """Keep paramiko's own log records (e.g. "Exception (client): Error reading SSH protocol
    banner" with a traceback) off stderr: with no handler configured, Python's last-resort handler
    prints them, beside the one-line error the CLI prints for the same failure."""
    log = logging.getLogger("paramiko")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
