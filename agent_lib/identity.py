"""Signed requests: the key pair Restate signs its requests to deployments with, kept in the kit's data dir.

Lesson 12 introduces it. The server signs each request it sends to a deployment with an Ed25519 private key
(`request-identity-private-key-pem-file`, here given as RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE),
and an agent process given the matching public key (`restate.app(..., identity_keys=[...])`, here
RESTATE_IDENTITY_KEYS) refuses every request that is not signed by it, with 401.

    pair = key_pair()                                   # made once, in <data dir>/identity/, readable by you only
    server = RestateServer(..., env=server_env(pair))
    agents = AgentProcess([...], env=agent_env(pair))

The private key never leaves its file: nothing here prints or returns it. The public key is not a secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._paths import data_dir
from .hosting import IDENTITY_KEYS_ENV

__all__ = ["IDENTITY_KEYS_ENV", "PRIVATE_KEY_ENV", "KeyPair", "agent_env", "key_pair", "public_key", "server_env"]

PRIVATE_KEY_ENV = "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"
"""The server's setting: the PEM file of the private key it signs its requests to deployments with."""

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(raw: bytes) -> str:
    number, text = int.from_bytes(raw, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = _BASE58[digit] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


def public_key(private_key_file: Path) -> str:
    """Return the `publickeyv1_...` of the Ed25519 private key in a PEM file (the `kid` the server logs at start)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{private_key_file} is not an Ed25519 private key: delete it, and key_pair() makes a new one")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "publickeyv1_" + _base58(raw)


@dataclass(frozen=True)
class KeyPair:
    """A request-identity key pair: the private key's file (the server's) and the public key (the agents')."""

    private_key_file: Path
    public_key: str

    def __repr__(self) -> str:
        return f"KeyPair(private key in {self.private_key_file}, public key {self.public_key[:20]}...)"


def key_pair(folder: Path | None = None, name: str = "restate-identity") -> KeyPair:
    """Return the kit's key pair in `folder` (default `<data dir>/identity`), making it the first time.

    The private key is written with mode 600 (its owner only), in the git-ignored data dir, never in the repo.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = folder if folder is not None else data_dir() / "identity"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pem"
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it a moment ago: use theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    return KeyPair(path, public_key(path))


def server_env(pair: KeyPair) -> dict[str, str]:
    """Return the environment that makes a restate-server sign its requests to deployments with `pair`."""
    return {PRIVATE_KEY_ENV: str(pair.private_key_file)}


def agent_env(*pairs: KeyPair) -> dict[str, str]:
    """Return the environment that makes an agent process accept only requests signed by one of `pairs`."""
    return {IDENTITY_KEYS_ENV: ",".join(p.public_key for p in pairs)}
