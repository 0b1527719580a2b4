"""Signed requests: the key pair Restate signs its requests to deployments with, kept in the kit's data dir.

Lesson 12 introduces it. The server signs each request it sends to a deployment with an Ed25519 private key
(`request-identity-private-key-pem-file`, here given as RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE),
and an agent process given the matching public key (`restate.app(..., identity_keys=[...])`, here
RESTATE_IDENTITY_KEYS) refuses every request that is not signed by it, with 401.

    pair = key_pair()                                   # made once, in <data dir>/identity/, readable by you only
    server = RestateServer(..., env=server_env(pair))
    agents = AgentProcess([...], env=agent_env(pair))

The lab signs (agent_lib/lab.py, `python -m agent_lib up`): its server gets the kit's private key, and the kit
writes down that it signs (`lab_signs`), so that an `AgentProcess` registered with that server trusts its public key
(`signing_key`); an agent process behind any other server trusts every request, as before.

The private key never leaves its file: nothing here prints or returns it. The public key is not a secret.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ._paths import data_dir
from ._process import kit_process_alive, pid_path

__all__ = [
    "IDENTITY_KEYS_ENV",
    "PRIVATE_KEY_ENV",
    "SIGNING_ENV",
    "KeyPair",
    "agent_env",
    "key_pair",
    "lab_signs",
    "new_private_key",
    "public_key",
    "server_env",
    "signing_key",
]

IDENTITY_KEYS_ENV = "RESTATE_IDENTITY_KEYS"
"""Public keys (`publickeyv1_...`, comma-separated) whose signed requests an agent process accepts; unset: any request.

The server signs with the matching private key (RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE);
deploy/k8s wires both from one Secret.
"""

PRIVATE_KEY_ENV = "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"
"""The server's setting: the PEM file of the private key it signs its requests to deployments with."""

SIGNING_ENV = "RESTATE_LAB_SIGNS"
"""Set by a running lab whose server signs: "<its admin URL> <the public key>" (see `lab_signs`)."""

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(raw: bytes) -> str:
    number, text = int.from_bytes(raw, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = _BASE58[digit] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


def _public_key(pem: bytes, what: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{what} is not an Ed25519 private key: delete it, and key_pair() makes a new one")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "publickeyv1_" + _base58(raw)


def public_key(private_key_file: Path) -> str:
    """Return the `publickeyv1_...` of the Ed25519 private key in a PEM file (the `kid` the server logs at start)."""
    return _public_key(private_key_file.read_bytes(), str(private_key_file))


def new_private_key(path: Path) -> str:
    """Write a new Ed25519 private key (PEM) to `path`, readable by its owner only, and return its public key.

    Raises FileExistsError if `path` exists: a key in use is never overwritten.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return _public_key(pem, str(path))


@dataclass(frozen=True)
class KeyPair:
    """A request-identity key pair: the private key's file (the server's) and the public key (the agents')."""

    private_key_file: Path
    public_key: str

    def __repr__(self) -> str:
        return f"KeyPair(private key in {self.private_key_file}, public key {self.public_key[:20]}...)"


def key_pair(folder: Path | None = None, name: str = "restate-identity", *, rotate: bool = False) -> KeyPair:
    """Return the kit's key pair in `folder` (default `<data dir>/identity`), making it the first time.

    The private key is written with mode 600 (its owner only), in the git-ignored data dir, never in the repo.
    With `rotate=True` the old private key is deleted and a new one made: a server started with the old one signs
    with it until it restarts.
    """
    folder = folder if folder is not None else data_dir() / "identity"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pem"
    if rotate:
        path.unlink(missing_ok=True)
    if not path.exists():
        try:
            new_private_key(path)
        except FileExistsError:
            pass  # another process made it a moment ago: use theirs
    return KeyPair(path, public_key(path))


def server_env(pair: KeyPair) -> dict[str, str]:
    """Return the environment that makes a restate-server sign its requests to deployments with `pair`."""
    return {PRIVATE_KEY_ENV: str(pair.private_key_file)}


def agent_env(*pairs: KeyPair) -> dict[str, str]:
    """Return the environment that makes an agent process accept only requests signed by one of `pairs`."""
    return {IDENTITY_KEYS_ENV: ",".join(p.public_key for p in pairs)}


def _where(url: str) -> tuple[str, int] | None:
    """Return (host, port) of a local admin URL, with localhost read as 127.0.0.1 (None: not a URL with a port)."""
    parts = urlparse(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return ("127.0.0.1" if parts.hostname == "localhost" else parts.hostname), port


def _record(port: int) -> Path:
    return data_dir() / "identity" / f"server-{port}.json"


def lab_signs(admin_url: str, pid: int, public_key: str) -> dict[str, str]:
    """Write down that the kit's server at `admin_url` (pid `pid`) signs with `public_key`; return SIGNING_ENV for it.

    The record (`<data dir>/identity/server-<admin port>.json`) holds the server's pid, so it counts only while
    that very process runs; the variable tells the processes a lab starts, whatever their data dir.
    """
    where = _where(admin_url)
    if where is not None:
        record = _record(where[1])
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"admin_url": admin_url, "pid": pid, "public_key": public_key}))
    return {SIGNING_ENV: f"{admin_url} {public_key}"}


def signing_key(admin_url: str) -> str | None:
    """Return the public key the kit's lab server at `admin_url` signs with; None if the kit does not know it signs.

    Known from SIGNING_ENV (set while a lab runs, and in what it starts), else from the record `lab_signs` wrote,
    while the server it names still runs. A server the kit did not start signing (a lesson's own, Docker's) has
    neither: its agents must trust every request, or they would refuse the server's own (401).
    """
    where = _where(admin_url)
    if where is None:
        return None
    url, _, key = os.environ.get(SIGNING_ENV, "").partition(" ")
    if key and _where(url) == where:
        return key
    try:
        record = json.loads(_record(where[1]).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or _where(str(record.get("admin_url", ""))) != where:
        return None
    if record.get("pid") != kit_process_alive(pid_path("restate-server", where[1])):
        return None
    recorded = record.get("public_key")
    return recorded if isinstance(recorded, str) and recorded.startswith("publickeyv1_") else None
