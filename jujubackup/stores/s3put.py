"""The S3 store's multipart put (stores/s3.py has the store): parts buffered one at a time and sent
with their SHA-256, resumed by not sending held parts again, an encrypted put's key material kept
for a resume (see stores/s3.py's docstring for the whole contract)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from jujubackup import crypt
from jujubackup.errors import JujuBackupError, RefusedError, VerifyError
from jujubackup.localfiles import read_private_file
from jujubackup.stores import STORED_KEY, NotStoredError, PutResult, StoredBackup, checked_block, sidecar_name
from jujubackup.stores.config import S3StoreConfig


class S3Bucket(Protocol):
    """What a put needs of its store (stores/s3.py S3Store; a Protocol, so that s3put needs no
    import of s3, which imports it): the store's name, bucket, key prefix, config, the recipients it
    encrypts to, boto3 calls with the store's error mapping and reading a stored copy back."""

    name: str
    bucket: str
    prefix: str
    config: S3StoreConfig
    recipients: tuple[str, ...]

    def call(self, method: str, **kwargs: Any) -> Any: ...

    def get(self, backup_id: str) -> StoredBackup: ...


MAX_PARTS = 10_000


def _b64_sha256(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _same_part(held_checksum: str, etag: str, data: bytes | bytearray, checksum: str) -> bool:
    """True when an uploaded part holds `data`: its SHA-256 checksum when S3 listed one, else its
    ETag, which is the MD5 of the part for a part stored without SSE-KMS/SSE-C."""
    if held_checksum:
        return held_checksum == checksum
    return etag.strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()


def _load_state(path: Path) -> dict[str, Any] | None:
    """Return a put's state file (a JSON object), None when absent, unreadable or not private."""
    try:
        data = json.loads(read_private_file(path, "S3 put state").decode("utf-8"))
    except (JujuBackupError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _save_state(path: Path, data: dict[str, Any]) -> None:
    """Write a put's state (it holds a file key: 0600, dir 0700, atomically, never through a link)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class S3Put:
    """A PutSession writing a multipart upload (see the module docstring)."""

    def __init__(
        self,
        store: S3Bucket,
        backup_id: str,
        key: str,
        *,
        encrypted: bool,
        part_size: int,
        plain_sha256: str | None,
        plain_size: int | None,
    ) -> None:
        self.store = store
        self.backup_id = backup_id
        self.key = key
        self.encrypted = encrypted
        self.part_size = part_size
        self.offset = 0
        self.prefix_sha256 = ""
        self.hasher = hashlib.sha256()
        self.written = 0
        self.buffer = bytearray()
        self.parts: list[dict[str, Any]] = []
        self.reused = 0
        self.existing: dict[int, tuple[int, str, str]] = {}
        self.material: crypt.KeyMaterial | None = None
        self.plain_sha256 = plain_sha256
        self.upload_id = self._start(plain_sha256, plain_size)

    def _resumable(self, uploads: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Return the upload to resume: the latest (plain); for an encrypted put, the one whose key
        material this workstation kept for the same plaintext SHA-256 and recipients (else None)."""
        if not uploads:
            return None
        if not self.encrypted:
            return max(uploads, key=lambda u: u.get("Initiated") or datetime.min.replace(tzinfo=timezone.utc))
        state = _load_state(self._state_path())
        if state is None or not self.plain_sha256 or state.get("plain_sha256") != self.plain_sha256 \
                or state.get("recipients") != list(self.store.recipients):
            return None
        try:
            material = crypt.KeyMaterial.from_json(state.get("material"))
        except (ValueError, TypeError, KeyError):
            return None
        for upload in uploads:
            if upload.get("UploadId") == state.get("upload_id"):
                self.material = material
                return upload
        return None

    def _start(self, plain_sha256: str | None, plain_size: int | None) -> str:
        """Find the multipart upload to resume (_resumable) and abort the others; else create one
        (an encrypted one with new key material, kept in the state file until the put ends)."""
        s3 = self.store
        uploads = s3.call("list_multipart_uploads", Bucket=s3.bucket, Prefix=self.key).get("Uploads", [])
        uploads = [u for u in uploads if u.get("Key") == self.key]
        latest = self._resumable(uploads)
        if latest is not None:
            for part in s3.call(
                "list_parts", Bucket=s3.bucket, Key=self.key, UploadId=latest["UploadId"]
            ).get("Parts", []):
                if part.get("ETag"):  # ListParts may omit the checksum: then the ETag (MD5) decides
                    self.existing[int(part["PartNumber"])] = (
                        int(part["Size"]),
                        part.get("ChecksumSHA256", ""),
                        part["ETag"],
                    )
            for other in uploads:
                if other is not latest:
                    s3.call(
                        "abort_multipart_upload", Bucket=s3.bucket, Key=self.key, UploadId=other["UploadId"]
                    )
            return str(latest["UploadId"])
        for old in uploads:
            s3.call("abort_multipart_upload", Bucket=s3.bucket, Key=self.key, UploadId=old["UploadId"])
        metadata = {
            "jujubackup-id": self.backup_id,
            "jujubackup-format": "age-v1" if self.encrypted else "plain",
        }
        if plain_sha256:
            metadata["jujubackup-sha256"] = plain_sha256
        if plain_size is not None:
            metadata["jujubackup-size"] = str(plain_size)
        self._state_path().unlink(missing_ok=True)
        created = s3.call(
            "create_multipart_upload",
            Bucket=s3.bucket,
            Key=self.key,
            Metadata=metadata,
            ChecksumAlgorithm="SHA256",
            ContentType="application/age" if self.encrypted else "application/gzip",
        )
        if self.encrypted:
            self.material = crypt.KeyMaterial.new([crypt.parse_recipient(r) for r in s3.recipients])
            _save_state(self._state_path(), {
                "upload_id": created["UploadId"], "plain_sha256": plain_sha256 or "",
                "recipients": list(s3.recipients), "material": self.material.to_json()})
        return str(created["UploadId"])

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.written += len(data)
        view = memoryview(data)
        while view:  # fill the part buffer; a full one is sent as it is (no copy) and replaced
            room = self.part_size - len(self.buffer)
            self.buffer += view[:room]
            view = view[room:]
            if len(self.buffer) == self.part_size:
                self._send(self.buffer)
                self.buffer = bytearray()
        return len(data)

    def _send(self, data: bytes | bytearray) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise RefusedError(f"{self.key}: more than {MAX_PARTS} parts", hint="raise part-size-mib")
        checksum = _b64_sha256(data)
        held = self.existing.get(number)
        if held is not None and held[0] == len(data) and _same_part(held[1], held[2], data, checksum):
            self.parts.append({"PartNumber": number, "ETag": held[2], "ChecksumSHA256": checksum})
            self.reused += len(data)
            return
        s3 = self.store
        sent = s3.call(
            "upload_part",
            Bucket=s3.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        self.parts.append({"PartNumber": number, "ETag": sent["ETag"], "ChecksumSHA256": checksum})

    def commit(
        self, record: dict[str, Any], *, plain_sha256: str, plain_size: int, recipients: tuple[str, ...] = ()
    ) -> StoredBackup:
        if self.buffer or not self.parts:
            self._send(bytes(self.buffer))
            self.buffer.clear()
        s3 = self.store
        put = PutResult(self.backup_id, self.encrypted, self.written, self.hasher.hexdigest(),
                        plain_sha256, plain_size, recipients)
        try:
            block = checked_block(
                put, record, name=self.key[len(s3.prefix) :], where=f"for store {s3.name}",
                hint=f"nothing was stored; run `jujubackup verify {self.backup_id}` on the controller")
        except VerifyError:
            self.abort(keep=False)
            raise
        self._state_path().unlink(missing_ok=True)  # the key material's job is done either way
        s3.call(
            "complete_multipart_upload",
            Bucket=s3.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        side = {k: v for k, v in record.items() if k not in ("path", "archive_present", "local", "stamp")}
        side[STORED_KEY] = block
        body = (json.dumps(side, indent=2) + "\n").encode()
        s3.call(
            "put_object",
            Bucket=s3.bucket,
            Key=s3.prefix + sidecar_name(self.backup_id),
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
        )
        return s3.get(self.backup_id)

    def restart(self) -> None:
        """Nothing to drop: an S3 put always reads its stream from byte 0 (parts held are skipped)."""

    def _state_path(self) -> Path:
        """Where an encrypted put's key material waits for a resume: 0600 in a 0700 dir under
        $XDG_STATE_HOME/jujubackup/s3-puts, named by a hash of endpoint, bucket and key."""
        xdg = os.environ.get("XDG_STATE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".local/state") / "jujubackup" / "s3-puts"
        where = f"{self.store.config.endpoint_url or 'aws'}|{self.store.bucket}|{self.key}"
        return base / (hashlib.sha256(where.encode()).hexdigest()[:32] + ".json")

    def abort(self, *, keep: bool = True) -> None:
        """`keep`: leave the multipart upload (and an encrypted put's key material) for a resume;
        else abort the upload and remove the key material."""
        if keep:
            return
        self._state_path().unlink(missing_ok=True)
        with contextlib.suppress(NotStoredError):
            self.store.call(
                "abort_multipart_upload", Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )
