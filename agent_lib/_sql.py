"""Quote text for the SQL that the admin API's `/query` runs (DataFusion): the one place the kit does it."""

from __future__ import annotations

__all__ = ["sql_literal"]


def sql_literal(value: str) -> str:
    """Return `value` as an SQL string literal: in single quotes, each quote inside doubled.

    `sql_literal("o'brien")` is `'o''brien'`, so a key or a name from a learner never ends the literal early.
    """
    return "'" + value.replace("'", "''") + "'"
