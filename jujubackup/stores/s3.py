"""The S3 store: S3-compatible object storage through boto3 (the only module that imports it).

Keys under the configured prefix (stores.object_name / sidecar_name: built from the validated ID):
    <prefix><ID>.tar.gz | <prefix><ID>.tar.gz.age   the copy, uploaded as a multipart upload
    <prefix><ID>.json                               the sidecar, written after the copy completed

A put streams: parts of `part-size-mib` are buffered in memory (one at a time) and sent as they fill,
each with its SHA-256 (S3's ChecksumSHA256: the server checks every part on receipt and keeps the
checksums with the object); the object carries the plaintext archive's SHA-256 and size in its user
metadata (x-amz-meta-jujubackup-sha256 / -size) and the sidecar has everything else. Nothing is
published before the whole stream verified: the multipart upload is completed only when the stored
bytes' SHA-256 (plain) or the plaintext's (encrypted) is the catalog's; else it is aborted.

Resuming (stores/s3put.py): an interrupted put leaves its multipart upload; the next put of the same
backup finds it and does not send again a part whose number, size and SHA-256 (else MD5 ETag) match
a part already uploaded (the stream itself is read again from its start, so the whole-stream SHA-256
is still computed). An encrypted put can resume only because the same key material gives the same
ciphertext: its file key, nonce and header wait in a 0600 state file on this workstation
($XDG_STATE_HOME/jujubackup/s3-puts, dir 0700) while the upload is incomplete, used again only for
the same plaintext SHA-256 and recipients, and removed when the put completes or is aborted without
`keep`. Without that file an encrypted put starts a new upload (the old ones are aborted).
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from jujubackup.errors import (
    ConnectError,
    JujuBackupError,
    NotFoundError,
    RefusedError,
    UsageError,
)
from jujubackup.localfiles import read_private_file
from jujubackup.stores import (
    STORED_KEY,
    NotStoredError,
    StoredBackup,
    check_id,
    id_of_name,
    object_name,
    parse_time,
    sidecar_name,
    stored_problem,
)
from jujubackup.stores.config import S3StoreConfig
from jujubackup.stores.s3put import MAX_PARTS, S3Put

MAX_SIDECAR = 1 << 20
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "403",
}
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def read_credentials(path: Path, profile: str | None) -> dict[str, str]:
    """Given an AWS-format credentials file (INI: [profile] aws_access_key_id, aws_secret_access_key,
    aws_session_token), return boto3 Session keyword arguments. Raise as
    localfiles.read_private_file does (5 missing; 6 a link, not a regular file of this user, mode
    wider than 0600); UsageError (2) if the profile or a key is missing. The secret is never shown."""
    what = "credentials file"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(read_private_file(path, what).decode("utf-8"))
    except (configparser.Error, UnicodeError) as err:
        raise UsageError(f"{what} {path} is not an INI file") from err
    section = profile or "default"
    if not parser.has_section(section):
        raise UsageError(f"credentials file {path} has no [{section}] section")
    values = parser[section]
    if not values.get("aws_access_key_id") or not values.get("aws_secret_access_key"):
        raise UsageError(
            f"credentials file {path} [{section}] needs aws_access_key_id and aws_secret_access_key"
        )
    creds = {
        "aws_access_key_id": values["aws_access_key_id"].strip(),
        "aws_secret_access_key": values["aws_secret_access_key"].strip(),
    }
    if values.get("aws_session_token"):
        creds["aws_session_token"] = values["aws_session_token"].strip()
    return creds


class _Body:
    """A read/close stream over an S3 object's body (botocore StreamingBody)."""

    def __init__(self, store: S3Store, body: Any) -> None:
        self.store = store
        self.body = body

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self.body.read(None if size is None or size < 0 else size))
        except Exception as err:  # botocore's read errors (timeouts, resets) are not one class
            raise ConnectError(f"reading from store {self.store.name} failed: {err}") from err

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            byte = self.read(1)
            if not byte:
                break
            out += byte
            if byte == b"\n":
                break
        return bytes(out)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Store:
    """A Store in an S3 bucket under a prefix (see the module docstring)."""

    kind = "s3"

    def __init__(self, name: str, config: S3StoreConfig) -> None:
        self.name = name
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.recipients = tuple(config.encrypt_to)
        self._client: Any = None

    def describe(self) -> str:
        where = f" at {self.config.endpoint_url}" if self.config.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (credentials from credentials-file or boto3's chain)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            cfg = self.config
            creds = read_credentials(cfg.credentials_file, cfg.profile) if cfg.credentials_file else {}
            session = boto3.session.Session(profile_name=None if creds else cfg.profile, **creds)
            self._client = session.client(
                "s3",
                endpoint_url=cfg.endpoint_url,
                region_name=cfg.region,
                verify=str(cfg.ca_bundle) if cfg.ca_bundle else None,
                config=Config(
                    s3={"addressing_style": cfg.addressing_style},
                    connect_timeout=10,
                    read_timeout=120,
                    retries={"max_attempts": 4, "mode": "standard"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    def call(self, method: str, **kwargs: Any) -> Any:
        """Call a boto3 client method; return its response. Map failures to typed errors: refused
        credentials ConnectError (3), a missing bucket or key NotFoundError (5), an endpoint that does
        not answer ConnectError (3), anything else the S3 error code in a RefusedError (6)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return getattr(self.client, method)(**kwargs)
        except NoCredentialsError as err:
            raise ConnectError(
                f"store {self.name}: no S3 credentials",
                hint="set credentials-file (0600) in the store's config, or AWS_* variables",
            ) from err
        except ClientError as err:
            raise self._client_error(err) from err
        except BotoCoreError as err:
            raise ConnectError(
                f"store {self.name} ({self.describe()}): {err}",
                hint="check endpoint-url and that the server answers",
            ) from err

    def _client_error(self, err: Any) -> JujuBackupError:
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _AUTH_CODES or status == 403:
            return ConnectError(
                f"store {self.name} ({self.describe()}) refused the credentials ({code or status})",
                hint="check the access key and secret in the store's credentials-file",
            )
        if code == "NoSuchBucket":
            return NotFoundError(
                f"store {self.name}: bucket {self.bucket} does not exist",
                hint="create the bucket, or fix `bucket` in the store's config",
            )
        if code in _MISSING or status == 404:
            return NotStoredError(f"store {self.name}: {code or 'not found'} ({self.describe()})")
        return RefusedError(
            f"store {self.name} ({self.describe()}): {code}: {error.get('Message', '')}".strip()
        )

    def begin_put(
        self, backup_id: str, *, encrypted: bool, size: int | None = None, plain_sha256: str | None = None
    ) -> S3Put:
        key = self.prefix + object_name(backup_id, encrypted=encrypted)
        for other in (True, False):
            if self._head(self.prefix + object_name(backup_id, encrypted=other)) is not None:
                raise RefusedError(
                    f"store {self.name} already holds {backup_id}",
                    hint="remove it from the store to copy it again",
                )
        part = self.config.part_size_mib << 20
        if size:  # at most MAX_PARTS parts: a bigger archive gets bigger parts (age adds 16 B / 64 KiB)
            stored = size + size // 4096 + (1 << 16) if encrypted else size
            part = max(part, -(-stored // MAX_PARTS))
        return S3Put(
            self,
            backup_id,
            key,
            encrypted=encrypted,
            part_size=part,
            plain_sha256=plain_sha256,
            plain_size=size,
        )

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.call("head_object", Bucket=self.bucket, Key=key))
        except NotStoredError:  # a HEAD of a missing bucket is a 404 too: list_backups/put say which
            return None

    def get(self, backup_id: str) -> StoredBackup:
        check_id(backup_id)
        for encrypted in (True, False):
            name = object_name(backup_id, encrypted=encrypted)
            head = self._head(self.prefix + name)
            if head is not None:
                return self._describe(
                    backup_id, name, encrypted, int(head["ContentLength"]), head.get("LastModified")
                )
        raise NotStoredError(f"backup {backup_id} is not in store {self.name} ({self.describe()})")

    def _describe(
        self, backup_id: str, name: str, encrypted: bool, size: int, modified: datetime | None
    ) -> StoredBackup:
        try:
            obj = self.call("get_object", Bucket=self.bucket, Key=self.prefix + sidecar_name(backup_id))
            if int(obj.get("ContentLength", 0)) > MAX_SIDECAR:
                raise ValueError("sidecar larger than 1 MiB")
            record = json.loads(obj["Body"].read(MAX_SIDECAR + 1))
        except NotStoredError:
            return StoredBackup(
                self.name, backup_id, name, size, modified, encrypted, problems=("no sidecar",)
            )
        except (ValueError, RecursionError) as err:
            return StoredBackup(
                self.name,
                backup_id,
                name,
                size,
                modified,
                encrypted,
                problems=(f"sidecar unreadable: {err}",),
            )
        problem = stored_problem(record, backup_id, name)
        if problem is None and record[STORED_KEY]["size"] != size:
            problem = "the object's size is not the sidecar's"
        if problem:
            return StoredBackup(self.name, backup_id, name, size, modified, encrypted, problems=(problem,))
        block = record[STORED_KEY]
        return StoredBackup(
            self.name,
            backup_id,
            name,
            size,
            parse_time(block.get("stored_at")) or modified,
            encrypted,
            sha256=record["sha256"],
            plain_size=block["plain_size"],
            stored_sha256=block["sha256"],
            recipients=tuple(block["recipients"]),
            record=record,
        )

    def _objects(self) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call("list_objects_v2", **kwargs)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def list_backups(self) -> list[StoredBackup]:
        found = []
        for obj in self._objects():
            name = str(obj["Key"])[len(self.prefix) :]
            parsed = id_of_name(name)
            if parsed is not None:
                found.append(
                    self._describe(parsed[0], name, parsed[1], int(obj["Size"]), obj.get("LastModified"))
                )
        return sorted(found, key=lambda b: b.id)

    def open(self, backup_id: str) -> BinaryIO:
        stored = self.get(backup_id)
        obj = self.call("get_object", Bucket=self.bucket, Key=self.prefix + stored.name)
        return _Body(self, obj["Body"])  # type: ignore[return-value]

    def remove(self, backup_id: str) -> None:
        check_id(backup_id)
        keys = [self.prefix + sidecar_name(backup_id)] + [
            self.prefix + object_name(backup_id, encrypted=e) for e in (True, False)
        ]
        present = [k for k in keys if self._head(k) is not None]
        for key in keys:
            uploads = self.call("list_multipart_uploads", Bucket=self.bucket, Prefix=key).get("Uploads", [])
            for upload in uploads:
                if upload.get("Key") == key:
                    self.call(
                        "abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                    )
                    present.append(key)
        if not present:
            raise NotStoredError(f"backup {backup_id} is not in store {self.name} ({self.describe()})")
        for key in keys:
            if key in present:
                self.call("delete_object", Bucket=self.bucket, Key=key)
