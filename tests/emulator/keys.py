"""Key material: the keypair's SSH key (RSA-2048, traditional PEM) and sshd host keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class SshKeypair:
    """The keypair's SSH key as the manager stores it (spec §7.8)."""

    private_pem: str  # "-----BEGIN RSA PRIVATE KEY-----...\n"
    public_line: str  # "ssh-rsa AAAA...\n" (no comment)


def generate_ssh_keypair() -> SshKeypair:
    """RSA 2048, e=65537, private key in traditional OpenSSL PEM, public in OpenSSH form."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return SshKeypair(private_pem=private_pem, public_line=public.decode() + "\n")


def write_private(path: Path, data: bytes) -> None:
    """Write a file with mode 0600 from the first byte, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create_keypair(path: Path) -> SshKeypair:
    """Reuse the keypair cached at `path` (PEM + ".pub"), else generate and cache one."""
    pub = path.with_name(path.name + ".pub")
    if path.is_file() and pub.is_file():
        return SshKeypair(private_pem=path.read_text(), public_line=pub.read_text())
    pair = generate_ssh_keypair()
    write_private(path, pair.private_pem.encode())
    pub.write_text(pair.public_line)
    return pair


def ensure_host_key(path: Path) -> Path:
    """An ed25519 OpenSSH host key at `path` (created once per state dir)."""
    if not path.is_file():
        key = ed25519.Ed25519PrivateKey.generate()
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        write_private(path, data)
    return path
