"""An on-disk record of external side effects, to prove "this happened once".

Lesson 02 introduces it. Every "real world" effect an agent causes (an email sent,
a payment booked, a model call paid for) is appended here by the tool that causes it.
The ledger lives in SQLite, so it survives a SIGKILL of the process that wrote it,
and several processes (the notebook kernel, an agent process) can share it.

An effect recorded with an ``idempotency_key`` is stored at most once per key: that is
how a tool turns an at-least-once step into a once-only effect.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._paths import data_dir

__all__ = ["Effect", "Ledger", "default_ledger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    invocation_id TEXT,
    detail TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Effect:
    """One recorded effect."""

    seq: int
    kind: str
    idempotency_key: str | None
    invocation_id: str | None
    detail: dict[str, Any]
    pid: int
    at: float


_open = threading.local()


class Ledger:
    """An append-only SQLite table of effects, shared by every process that opens the same path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        """Return this thread's open connection to the ledger (reopened if the file was deleted)."""
        pool: dict[tuple[int, Path], sqlite3.Connection] = _open.__dict__.setdefault("dbs", {})
        key = (os.getpid(), self.path)
        db = pool.get(key)
        if db is None or not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            pool[key] = db
        return db

    def record(
        self,
        kind: str,
        detail: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        invocation_id: str | None = None,
    ) -> bool:
        """Record an effect; return False if one with this idempotency key was already recorded."""
        if not kind:
            raise ValueError("an effect needs a kind, e.g. 'email' or 'payment'")
        row = (
            kind,
            idempotency_key,
            invocation_id,
            json.dumps(detail or {}, sort_keys=True, default=str),
            os.getpid(),
            time.time(),
        )
        with self._connect() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO effects (kind, idempotency_key, invocation_id, detail, pid, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
            return cur.rowcount == 1

    def effects(self, kind: str | None = None, *, invocation_id: str | None = None) -> list[Effect]:
        """Return the recorded effects, oldest first, optionally of one kind or one invocation."""
        sql = "SELECT seq, kind, idempotency_key, invocation_id, detail, pid, at FROM effects WHERE 1=1"
        args: list[Any] = []
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if invocation_id is not None:
            sql += " AND invocation_id = ?"
            args.append(invocation_id)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY seq", args).fetchall()
        return [Effect(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def count(self, kind: str | None = None, *, invocation_id: str | None = None) -> int:
        """Count the recorded effects, optionally of one kind or one invocation."""
        return len(self.effects(kind, invocation_id=invocation_id))

    def clear(self) -> None:
        """Forget every recorded effect."""
        with self._connect() as db:
            db.execute("DELETE FROM effects")

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"


def default_ledger() -> Ledger:
    """Return the ledger at `AGENT_LEDGER`, else `.restate/ledger.sqlite` in the repo."""
    return _ledger_at(str(os.environ.get("AGENT_LEDGER") or data_dir() / "ledger.sqlite"))


@functools.lru_cache(maxsize=16)
def _ledger_at(path: str) -> Ledger:
    return Ledger(path)
