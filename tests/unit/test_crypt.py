"""age v1 encryption (issue 17): our output opens with the standard `age` CLI and theirs with ours,
for age X25519, ssh-ed25519 and ssh-rsa recipients; a wrong identity, a truncated or tampered copy
fail with DecryptError (exit 8)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from jujubackup import crypt
from jujubackup.errors import EXIT_USAGE, EXIT_VERIFY, JujuBackupError

PLAIN = os.urandom(3 * crypt.CHUNK + 17)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """recipient text and identity file of each kind, made by age-keygen / ssh-keygen."""
    d = tmp_path_factory.mktemp("keys")
    subprocess.run(["age-keygen", "-o", str(d / "age.key")], check=True, capture_output=True)
    age_pub = subprocess.run(["age-keygen", "-y", str(d / "age.key")], check=True, capture_output=True,
                             text=True).stdout.strip()
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"])):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(d / kind)], check=True)
    return {"age": (age_pub, d / "age.key"), "ed25519": ((d / "ed25519.pub").read_text(), d / "ed25519"),
            "rsa": ((d / "rsa.pub").read_text(), d / "rsa")}


def encrypt(data: bytes, *recipients: str, piece: int = 10_000) -> bytes:
    out = io.BytesIO()
    writer = crypt.EncryptingWriter(out, [crypt.parse_recipient(r) for r in recipients])
    for i in range(0, len(data), piece):
        writer.write(data[i:i + piece])
    writer.close()
    assert writer.plain_size == len(data)
    return out.getvalue()


def decrypt(blob: bytes, identity: Path, size: int = 5000) -> bytes:
    reader = crypt.DecryptingReader(io.BytesIO(blob), crypt.load_identities(identity))
    parts = []
    while data := reader.read(size):
        parts.append(data)
    return b"".join(parts)


@pytest.mark.parametrize("kind", ["age", "ed25519", "rsa"])
@pytest.mark.parametrize("length", [0, 1, crypt.CHUNK, crypt.CHUNK + 1, 2 * crypt.CHUNK, len(PLAIN)])
def test_age_cli_decrypts_ours(keys: dict[str, tuple[str, Path]], kind: str, length: int,
                               tmp_path: Path) -> None:
    recipient, identity = keys[kind]
    (tmp_path / "c.age").write_bytes(encrypt(PLAIN[:length], recipient))
    out = subprocess.run(["age", "-d", "-i", str(identity), str(tmp_path / "c.age")], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == PLAIN[:length]


@pytest.mark.parametrize("kind", ["age", "ed25519", "rsa"])
def test_we_decrypt_age_cli_output(keys: dict[str, tuple[str, Path]], kind: str, tmp_path: Path) -> None:
    recipient, identity = keys[kind]
    (tmp_path / "r").write_text(recipient + "\n")
    blob = subprocess.run(["age", "-e", "-R", str(tmp_path / "r")], input=PLAIN, capture_output=True,
                          check=True).stdout
    assert decrypt(blob, identity) == PLAIN


def test_several_recipients_each_open_it(keys: dict[str, tuple[str, Path]]) -> None:
    blob = encrypt(PLAIN, *(keys[k][0] for k in ("age", "ed25519", "rsa")))
    for kind in ("age", "ed25519", "rsa"):
        assert decrypt(blob, keys[kind][1]) == PLAIN


def test_a_wrong_identity_is_a_clear_error(keys: dict[str, tuple[str, Path]]) -> None:
    blob = encrypt(PLAIN, keys["age"][0])
    with pytest.raises(crypt.DecryptError) as err:
        decrypt(blob, keys["ed25519"][1])
    assert err.value.exit_code == EXIT_VERIFY and "no identity given opens" in err.value.message


@pytest.mark.parametrize("cut", [1, crypt.CHUNK + 16, 100])
def test_a_truncated_copy_never_yields_all_its_bytes(keys: dict[str, tuple[str, Path]], cut: int) -> None:
    blob = encrypt(PLAIN, keys["age"][0])
    with pytest.raises(crypt.DecryptError) as err:
        decrypt(blob[:-cut], keys["age"][1])
    assert "truncated or corrupt" in err.value.message


def test_a_flipped_payload_byte_fails_authentication(keys: dict[str, tuple[str, Path]]) -> None:
    blob = bytearray(encrypt(PLAIN, keys["age"][0]))
    blob[-70_000] ^= 1
    with pytest.raises(crypt.DecryptError):
        decrypt(bytes(blob), keys["age"][1])


def test_a_tampered_header_fails_its_mac(keys: dict[str, tuple[str, Path]]) -> None:
    blob = encrypt(PLAIN, keys["age"][0], keys["ed25519"][0])
    lines = blob.split(b"\n")
    lines[1] = lines[1] + b" "  # an argument changed: the stanza no longer parses or the MAC differs
    with pytest.raises(crypt.DecryptError):
        decrypt(b"\n".join(lines), keys["age"][1])


def test_bad_recipients_and_identities_are_usage_errors(tmp_path: Path) -> None:
    for text in ("age1qqq", "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "hello"):
        with pytest.raises(JujuBackupError) as err:
            crypt.parse_recipient(text)
        assert err.value.exit_code == EXIT_USAGE
    (tmp_path / "id").write_text("# nothing\nnot-a-key\n")
    (tmp_path / "id").chmod(0o600)
    with pytest.raises(JujuBackupError) as err:
        crypt.load_identities(tmp_path / "id")
    assert err.value.exit_code == EXIT_USAGE and "not-a-key" not in err.value.message


def test_a_passphrase_protected_ssh_key_is_refused_clearly(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass", "-f", str(tmp_path / "k")], check=True)
    with pytest.raises(JujuBackupError) as err:
        crypt.load_identities(tmp_path / "k")
    assert "passphrase" in err.value.message


def test_bech32_round_trip() -> None:
    data = os.urandom(32)
    assert crypt.bech32_decode(crypt.bech32_encode("age", data)) == ("age", data)
