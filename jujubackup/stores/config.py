"""The stores' configuration schema (pydantic v2): the one place it is defined.

In a YAML file (the fleet config of `run`, or any file given to `--store-config`), stores are a
mapping under the top-level key `stores`, keyed by the store's name:

    stores:
      laptop:
        kind: local
        path: /srv/juju-backups          # created 0700 when missing
        encrypt-to:                      # optional: age recipients (age1…, ssh-ed25519 …, ssh-rsa …)
          - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
      offsite:
        kind: s3
        bucket: juju-backups
        prefix: prod/                    # optional; keys are <prefix><ID>.tar.gz[.age] and <prefix><ID>.json
        endpoint-url: https://s3.example.internal:9000   # optional (default: AWS)
        region: us-east-1                # optional
        credentials-file: ~/.config/jujubackup/s3.credentials   # optional, 0600, AWS INI format
        profile: default                 # optional: the section of credentials-file (or of ~/.aws)
        ca-bundle: /etc/ssl/my-ca.pem    # optional
        addressing-style: path           # path | virtual | auto (default: path)
        part-size-mib: 8                 # multipart part size (5..5120; memory: one part at a time)
        encrypt-to: [...]

Secrets never go in this file: S3 keys come from `credentials-file` (refused unless 0600 and owned
by the user) or boto3's own chain (AWS_* environment, ~/.aws). Unknown keys are errors
(`extra="forbid"`), so a typo never silently drops a setting. Keys are kebab-case in YAML, snake_case
in Python (`model_validate(data)` accepts the YAML form).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jujubackup.errors import UsageError
from jujubackup.yamldoc import line_of, load_roundtrip

STORE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # = fleet_config.NAME
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^(?:[A-Za-z0-9._-]+/)*$")
_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(?::\d{1,5})?/?$")
_RECIPIENT = re.compile(r"^(?:age1[0-9a-z]{58}|ssh-ed25519 [A-Za-z0-9+/=]+|ssh-rsa [A-Za-z0-9+/=]+)(?: .*)?$")


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True)


def check_recipients(value: list[str]) -> list[str]:
    """Validate age recipients: age1… X25519 keys, `ssh-ed25519 …` or `ssh-rsa …` public keys (a
    trailing comment is kept); crypt.parse_recipient decodes them fully when used."""
    from jujubackup import crypt  # the full decoding (bech32 checksum, key blobs)
    from jujubackup.errors import JujuBackupError

    for item in value:
        if not _RECIPIENT.match(item.strip()):
            raise ValueError(f"not an age recipient (age1…, ssh-ed25519 …, ssh-rsa …): {item[:40]!r}")
        try:
            crypt.parse_recipient(item)
        except JujuBackupError as err:  # a schema error (pydantic reports ValueErrors with their key)
            raise ValueError(err.message) from err
    return [item.strip() for item in value]


def cli_recipients(value: list[str]) -> list[str]:
    """check_recipients for `--encrypt-to` values: raise UsageError (exit 2) instead of ValueError."""
    try:
        return check_recipients(value)
    except ValueError as err:
        raise UsageError(f"--encrypt-to: {err}",
                         hint="give an age1… key, or an ssh-ed25519 / ssh-rsa public key line") from err


class LocalStoreConfig(_Model):
    """A directory on this machine (or a mounted filesystem): today's `download --dir`."""

    kind: Literal["local"]
    path: Path
    encrypt_to: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("encrypt_to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return check_recipients(value)


class S3StoreConfig(_Model):
    """A bucket (and key prefix) of S3-compatible object storage, through boto3."""

    kind: Literal["s3"]
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    credentials_file: Path | None = None
    profile: str | None = None
    ca_bundle: Path | None = None
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    part_size_mib: Annotated[int, Field(ge=5, le=5120)] = 8
    encrypt_to: list[str] = Field(default_factory=list)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET.match(value) or ".." in value:
            raise ValueError("not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not value.endswith("/"):
            value += "/"
        if not _PREFIX.match(value) or any(part in (".", "..") for part in value.split("/")):
            raise ValueError("a prefix is path segments of A-Z a-z 0-9 . _ - separated by '/'")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise ValueError("an endpoint is http(s)://host[:port]")
        return value

    @field_validator("credentials_file", "ca_bundle")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("encrypt_to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return check_recipients(value)


StoreConfig = Annotated[LocalStoreConfig | S3StoreConfig, Field(discriminator="kind")]
StoreName = Annotated[str, Field(pattern=STORE_NAME)]


class StoresSection(_Model):
    """The `stores:` mapping (name -> config); the fleet config embeds the same type."""

    stores: dict[StoreName, StoreConfig] = Field(default_factory=dict)


def parse_stores(data: Any) -> dict[str, LocalStoreConfig | S3StoreConfig]:
    """Given the decoded `stores` mapping, return name -> validated config.
    Raise pydantic's ValidationError (the caller maps its `loc` to the file's lines)."""
    return dict(StoresSection.model_validate({"stores": data}).stores)


def load_stores(path: Path) -> dict[str, LocalStoreConfig | S3StoreConfig]:
    """Given a YAML file with a top-level `stores:` mapping (other top-level keys are left to their
    own schema), return its validated stores. Raise UsageError (exit 2) naming FILE:LINE and the key
    path of the first problem, NotFoundError (5) for a missing file."""
    doc = load_roundtrip(path, "store config")
    if not isinstance(doc, dict) or "stores" not in doc:
        raise UsageError(f"{path}: no top-level `stores:` mapping",
                         hint="see `jujubackup list --help` for the stores section")
    try:
        return parse_stores(doc["stores"])
    except ValidationError as err:
        first = err.errors()[0]
        keys = _yaml_loc(("stores", *first["loc"][1:]))
        raise UsageError(f"{path}:{line_of(doc, keys)}: {'.'.join(map(str, keys))}: {first['msg']}",
                         hint="fix that key; unknown keys are errors") from err


def _yaml_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's discriminator tags ("local"/"s3") from a loc, keep the YAML's keys."""
    return tuple(part for i, part in enumerate(loc) if not (i == 2 and part in ("local", "s3")))
