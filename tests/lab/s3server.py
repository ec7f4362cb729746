"""A standalone S3-compatible server for tests: moto's `moto_server` (pip `moto[server]`) started as its
own process on 127.0.0.1, speaking the real S3 HTTP API (SigV4, multipart, checksums), with
authentication enforced: INITIAL_NO_AUTH_ACTION_COUNT lets only the bootstrap calls below (an IAM
user, its policy and access key, the bucket) through unauthenticated; every later request must be
signed with that key (a wrong secret is SignatureDoesNotMatch, an unknown key InvalidAccessKeyId:
moto/core/authentication / moto/iam/access_control.py, moto 5.x).

Never an in-process mock: jujubackup talks to it over HTTP like to any S3 endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BOOTSTRAP_CALLS = 4  # create_user, put_user_policy, create_access_key, create_bucket


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    credentials_file: Path

    def client(self, secret: str | None = None):  # type: ignore[no-untyped-def]
        """A boto3 client of the test itself (to look at what the server holds)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret or self.secret_key)

    def store_yaml(self, name: str = "offsite", prefix: str = "prod/", encrypt_to: list[str] | None = None,
                   credentials_file: Path | None = None) -> str:
        """A `stores:` entry for this server (YAML text, indented under `stores:`)."""
        lines = [f"  {name}:", "    kind: s3", f"    bucket: {self.bucket}", f"    prefix: {prefix}",
                 f"    endpoint-url: {self.endpoint}",
                 f"    credentials-file: {credentials_file or self.credentials_file}", "    part-size-mib: 5"]
        if encrypt_to:
            lines.append("    encrypt-to:")
            lines += [f"      - {json.dumps(r.strip())}" for r in encrypt_to]
        return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _moto_server() -> str:
    found = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not installed: pip install 'moto[server]' (in the dev extra)")
    return found


@contextmanager
def s3_server(workdir: Path, bucket: str = "juju-backups") -> Iterator[S3Server]:
    """Start moto_server on a free loopback port, bootstrap a user, key and bucket; yield the
    server; stop it (by its pid) at the end. The credentials file is 0600."""
    import boto3

    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_CALLS)}
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError as err:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / "moto.log").read_text()[-2000:]
                    raise RuntimeError(f"moto_server did not start: {tail}") from err
                time.sleep(0.2)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="jujubackup")
        iam.put_user_policy(UserName="jujubackup", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="jujubackup")["AccessKey"]
        creds = workdir / "s3.credentials"
        creds.touch(mode=0o600)
        creds.chmod(0o600)
        creds.write_text(f"[default]\naws_access_key_id = {key['AccessKeyId']}\n"
                         f"aws_secret_access_key = {key['SecretAccessKey']}\n")
        server = S3Server(endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"], creds)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
