"""Register the agents' deployment with a Restate server once both answer: what compose's and Kubernetes' one-shot runs.

    python deploy/register.py --admin http://restate:9070 --uri http://agents:9080 [--force] [--timeout 300]

It waits for the agents' `GET /health` and the admin API's `GET /health`, then sends `POST /deployments
{"uri": ..., "force": ...}`, and says which services the server now knows. A server or agent still starting is
asked again until the deadline; an answer that will not change (a 4xx) ends it at once, with what to do.
Standard library only: it runs in the agents' image, before anything else is up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

CONFLICT_HINT = (
    "the server already has a deployment at {uri} with other services or handlers. Register the new version "
    "under a new URI (a new Service, as lesson 07 does with versions), so the invocations in flight finish on the "
    "old one; or pass --force to replace it, which breaks those invocations."
)

UNSIGNED_HINT = (
    "the agents refused the server's discovery request (401): they accept only requests signed by the keys in "
    "RESTATE_IDENTITY_KEYS, and the server signs with another key, or none. Give both the same Secret "
    "(deploy/README.md, 'The signing key')"
)


def _get(url: str, timeout: float) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return int(answer.status)


def _wait_for(url: str, what: str, deadline: float) -> None:
    """Ask `url` until it answers 200, or exit with what did not answer."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            if _get(url, timeout=5) == 200:
                return
        except (urllib.error.URLError, OSError) as err:
            last = str(getattr(err, "reason", err))
        time.sleep(1)
    sys.exit(f"register: {what} did not answer at {url} before the deadline ({last}): is it running and reachable?")


def register(admin: str, uri: str, *, force: bool = False, timeout: float = 300.0) -> dict[str, object]:
    """Wait for the agents and the admin API, register `uri`, and return the server's answer."""
    deadline = time.monotonic() + timeout
    _wait_for(f"{uri.rstrip('/')}/health", "the agents", deadline)
    _wait_for(f"{admin.rstrip('/')}/health", "the Restate admin API", deadline)
    body = json.dumps({"uri": uri, "force": force}).encode()
    while True:
        request = urllib.request.Request(
            f"{admin.rstrip('/')}/deployments", data=body, method="POST", headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return dict(json.loads(answer.read() or b"{}"))
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace").strip()
            if err.code == 409:
                sys.exit(f"register: 409 from the admin API: {CONFLICT_HINT.format(uri=uri)} ({text})")
            if "got status code '401" in text:
                sys.exit(f"register: the admin API refused {uri}: {UNSIGNED_HINT} ({text})")
            if "got status code '4" in text:
                sys.exit(f"register: the admin API refused {uri}: the agents answered its discovery with {text}")
            if 400 <= err.code < 500 or time.monotonic() > deadline:
                sys.exit(f"register: the admin API refused {uri} with {err.code}: {text}")
            last = f"{err.code}: {text}"
        except (urllib.error.URLError, OSError) as err:
            if time.monotonic() > deadline:
                sys.exit(f"register: the admin API at {admin} did not answer: {getattr(err, 'reason', err)}")
            last = str(err)
        print(f"register: not yet ({last}); asking again", file=sys.stderr, flush=True)
        time.sleep(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(prog="deploy/register.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin", required=True, help="the Restate admin API, e.g. http://restate:9070")
    parser.add_argument("--uri", required=True, help="where the server reaches the agents, e.g. http://agents:9080")
    parser.add_argument(
        "--force", action="store_true", help="replace a deployment already at --uri (breaks its invocations in flight)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for everything (default 300)")
    args = parser.parse_args(argv)
    answer = register(args.admin, args.uri, force=args.force, timeout=args.timeout)
    listed = answer.get("services")
    services = sorted(str(s.get("name")) for s in listed if isinstance(s, dict)) if isinstance(listed, list) else []
    print(f"registered {args.uri} as deployment {answer.get('id')}: {', '.join(services)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
