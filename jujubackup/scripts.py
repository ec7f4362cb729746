"""Render the remote bash scripts in `remote_scripts/*.sh.j2` and the host files in `templates/`.

Both directories sit at the repository's top level and are mapped into the package at build time
(setup.py: `jujubackup.remote_scripts`, `jujubackup.templates`) for the wheel, the sdist and an editable
install alike.

The only module that imports jinja2. Templates are loaded with importlib.resources, StrictUndefined
(a missing value is an error, never an empty string) and a `q` filter that shell-quotes a value
(`{{ path | q }}`). Every value a template interpolates goes through `q` (or is an int/bool).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import jinja2

from jujubackup import profiles, remote_codes

PACKAGE = "jujubackup.remote_scripts"
SUFFIX = ".sh.j2"

LIB_PARTS: dict[str, tuple[str, ...]] = {
    "json": (),
    "log": (),
    "hash": (),
    "agentconf": (),
    "lock": ("json",),
    "manifest": ("json", "hash"),
    "mongo-tls": (),
    "agentlog": (),
    "services": (),
    "restore": ("json", "log", "hash", "lock", "agentconf", "mongo-tls", "services"),
    "replay-role": ("restore",),
}
"""The one bash library, remote_scripts/lib/NAME.bash.j2, in the order a script gets its parts, each
with the parts it needs. A script says what it uses (`{{ bash_lib("lock", "manifest") }}`) and gets
those parts and what they need, each once: every helper has one definition (tests/unit/test_scripts)."""


def shell_quote(value: Any) -> str:
    """Given any value, return it as one shell word (ints and strings alike)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return shlex.quote(str(value))


def _package_files(package: str) -> Traversable:
    """Given a data package name (`jujubackup.remote_scripts`), return its files.

    Raise ModuleNotFoundError saying the fix when it is not installed: an editable install made before
    the directories moved to the repository's top level maps no such package until it is redone.
    """
    try:
        return resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{package} is not installed (an editable install made before remote_scripts/ and templates/"
            " moved to the repository's top level?): run `pip install -e .` again", name=package) from exc


class _ResourceLoader(jinja2.BaseLoader):
    """Load templates from the package data of jujubackup.remote_scripts (or another package)."""

    def __init__(self, package: str = PACKAGE) -> None:
        self.package = package

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Any]:
        path = _package_files(self.package).joinpath(template)
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        return path.read_text(encoding="utf-8"), None, lambda: True


@dataclass(frozen=True)
class BashValue:
    """A value of a JSON document that a script only knows at run time, held in bash variable `var`:
    JSON text (a number, an object, an array) when `string` is false, a plain string (put through
    lib/json's json_str) when true. See bash_json."""

    var: str
    string: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.var):
            raise ValueError(f"not a bash variable name: {self.var!r}")


def _json_segments(value: Any, out: list[str | BashValue]) -> None:
    """Append the compact JSON text of `value` to `out`: str pieces, BashValue where one stands."""
    if isinstance(value, BashValue):
        out.append(value)
    elif isinstance(value, dict):
        out.append("{")
        for n, (key, item) in enumerate(value.items()):
            out.append(("," if n else "") + json.dumps(str(key)) + ":")
            _json_segments(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for n, item in enumerate(value):
            if n:
                out.append(",")
            _json_segments(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value))


def bash_json(value: Any) -> str:
    """Template filter: given JSON data in which BashValue marks what the script fills in at run time,
    return one bash word that expands to its compact JSON text (`rec={{ record | bash_json }}`): the
    known parts shell-quoted, each BashValue as "$var" or "$(json_str "$var")". One templating layer:
    the script substitutes nothing into a text of placeholders."""
    segments: list[str | BashValue] = []
    _json_segments(value, segments)
    words: list[str] = []
    static = ""
    for seg in segments:
        if isinstance(seg, str):
            static += seg
            continue
        if static:
            words.append(shlex.quote(static))
            static = ""
        words.append(f'"$(json_str "${seg.var}")"' if seg.string else f'"${seg.var}"')
    if static:
        words.append(shlex.quote(static))
    return "".join(words)


def lib_closure(names: tuple[str, ...]) -> list[str]:
    """Given library part names, return them plus the parts they need, each once, in LIB_PARTS order.
    Raise KeyError for a name that is no part."""
    want: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in want:
            want.add(name)
            todo.extend(LIB_PARTS[name])
    return [name for name in LIB_PARTS if name in want]


@jinja2.pass_context
def bash_lib(context: jinja2.runtime.Context, *names: str) -> str:
    """Template global: return the text of the library parts `names` need (lib_closure), rendered with
    the calling script's values (lib/restore reads the step's values; the others only globals)."""
    values = context.get_all()
    return "".join(context.environment.get_template(f"lib/{name}.bash.j2").render(values)
                   for name in lib_closure(names))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Return the (cached) jinja2 Environment for the remote scripts."""
    env = jinja2.Environment(
        loader=_ResourceLoader(),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = shell_quote
    env.globals["bash_lib"] = bash_lib
    env.filters["bash_json"] = bash_json
    # the exit codes the Python side reads (`exit {{ rc.LOCKED }}`), one source of truth: remote_codes.py
    env.globals["rc"] = remote_codes.template_codes()
    # the backup dir's rules (lib/lock.bash.j2), one source of truth for every script that uses it
    env.globals["backup_dir_marker"] = profiles.BACKUP_DIR_MARKER
    env.globals["system_dirs"] = list(profiles.SYSTEM_DIRS)
    env.globals["pseudo_fs_dirs"] = list(profiles.PSEUDO_FS_DIRS)
    # the TLS table of the mongo tools (lib/mongo-tls.bash.j2), one source of truth: profiles.py
    env.globals.update(profiles.tls_template_values())
    env.globals["snap_common"] = profiles.SNAP_COMMON
    return env


def template_names() -> list[str]:
    """Return the names (without `.sh.j2`) of every remote script template, sorted."""
    root = _package_files(PACKAGE)
    return sorted(p.name[: -len(SUFFIX)] for p in root.iterdir() if p.name.endswith(SUFFIX))


def render(name: str, **values: Any) -> str:
    """Given a template name (`probe` for `probe.sh.j2`) and its values, return the bash script text.

    Raise jinja2.UndefinedError if the template uses a value not given, TemplateNotFound if no such
    template exists.
    """
    return environment().get_template(name + SUFFIX).render(**values)


FILES_PACKAGE = "jujubackup.templates"


@lru_cache(maxsize=1)
def files_environment() -> jinja2.Environment:
    """Return the (cached) jinja2 Environment for `templates/` (files installed on hosts)."""
    env = jinja2.Environment(
        loader=_ResourceLoader(FILES_PACKAGE),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = shell_quote
    return env


def render_file(name: str, **values: Any) -> str:
    """Given a template file name in templates/ (`jujud-machine.service.j2`) and its values,
    return the rendered text. Raise jinja2.UndefinedError for a missing value."""
    return files_environment().get_template(name).render(**values)
