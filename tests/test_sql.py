"""The one SQL-literal helper, against the real server's SQL: quotes inside a value stay inside the literal."""

from __future__ import annotations

import pytest

from agent_lib._sql import sql_literal
from agent_lib.clients import Admin


@pytest.mark.parametrize(
    ("value", "literal"),
    [("", "''"), ("plain", "'plain'"), ("o'brien", "'o''brien'"), ("'; DROP x; --", "'''; DROP x; --'")],
)
def test_sql_literal_quotes_and_doubles_inner_quotes(value: str, literal: str) -> None:
    assert sql_literal(value) == literal


@pytest.mark.parametrize("value", ["o'brien", "' OR '1'='1", "back\\slash", "ünïcode ☃", "two '' quotes"])
def test_the_server_reads_a_literal_back_as_the_same_text(admin: Admin, value: str) -> None:
    rows = admin.query(f"SELECT {sql_literal(value)} AS v")
    assert rows == [{"v": value}]
