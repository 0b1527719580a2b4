"""Make the key pair Restate signs its requests with, or print the public key of one: for the Secret restate-identity.

    python deploy/identity_key.py restate-identity.pem      # writes a new private key (mode 600), prints its public key
    python deploy/identity_key.py --public restate-identity.pem   # prints the public key of an existing private key

The private key is an Ed25519 key in PEM (what `openssl genpkey -algorithm ed25519` writes); the server reads it from
RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE. The public key is what the agents get in
RESTATE_IDENTITY_KEYS: "publickeyv1_" and the base58 of the 32 raw bytes, the `kid` the server logs at start
("Loaded request identity key"). Keep the private key out of the repo and out of every log.

It runs from a checkout (the image does not hold it) and uses the kit's own key code, agent_lib/identity.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's agent_lib, from any directory

from agent_lib.identity import new_private_key, public_key  # noqa: E402

__all__ = ["main", "new_private_key", "public_key"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(prog="deploy/identity_key.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="the private key's file (PEM)")
    parser.add_argument("--public", action="store_true", help="print the public key of an existing private key")
    args = parser.parse_args(argv)
    if args.public:
        if not args.path.is_file():
            print(f"{args.path}: no such file: make a key with `python deploy/identity_key.py FILE`", file=sys.stderr)
            return 1
        try:
            print(public_key(args.path))
        except ValueError:
            print(
                f"{args.path} is not an Ed25519 private key: make one with `python deploy/identity_key.py FILE`",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.path.exists():
        print(f"{args.path} exists: keep it (--public prints its public key), or choose another path", file=sys.stderr)
        return 1
    print(new_private_key(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
