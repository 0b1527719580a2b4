"""Make the key pair Restate signs its requests with, or print the public key of one: for the Secret restate-identity.

    python deploy/identity_key.py restate-identity.pem      # writes a new private key (mode 600), prints its public key
    python deploy/identity_key.py --public restate-identity.pem   # prints the public key of an existing private key

The private key is an Ed25519 key in PEM (what `openssl genpkey -algorithm ed25519` writes); the server reads it from
RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE. The public key is what the agents get in
RESTATE_IDENTITY_KEYS: "publickeyv1_" and the base58 of the 32 raw bytes, the `kid` the server logs at start
("Loaded request identity key"). Keep the private key out of the repo and out of every log.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(raw: bytes) -> str:
    number, text = int.from_bytes(raw, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = _BASE58[digit] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


def public_key(pem: bytes) -> str:
    """Return the `publickeyv1_...` of an Ed25519 private key in PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key: make one with `python deploy/identity_key.py FILE`")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "publickeyv1_" + _base58(raw)


def new_private_key(path: Path) -> str:
    """Write a new Ed25519 private key to `path` (readable by its owner only); return its public key."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_key(pem)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(prog="deploy/identity_key.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="the private key's file (PEM)")
    parser.add_argument("--public", action="store_true", help="print the public key of an existing private key")
    args = parser.parse_args(argv)
    if args.public:
        print(public_key(args.path.read_bytes()))
        return 0
    if args.path.exists():
        print(f"{args.path} exists: keep it (--public prints its public key), or choose another path", file=sys.stderr)
        return 1
    print(new_private_key(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
