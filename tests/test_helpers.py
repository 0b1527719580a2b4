"""The shared test helpers refuse what they should: a pass, a missing word, a refusal without a hint, a slow wait."""

from __future__ import annotations

import pytest

from agent_lib.check import CheckResult
from tests.helpers import failed, wait_for

REFUSED = CheckResult("Lesson 01 · exercise 1", False, "the tool is not durable", "wrap it in ctx.run_typed")


def test_failed_accepts_a_refusal_with_its_words_and_a_hint() -> None:
    assert failed(REFUSED, "not durable") is REFUSED


@pytest.mark.parametrize(
    ("result", "words", "says"),
    [
        (CheckResult("Lesson 01 · exercise 1", True, "fine"), (), "should refuse"),
        (REFUSED, ("journal",), "does not say"),
        (CheckResult("Lesson 01 · exercise 1", False, "not durable"), (), "no hint"),
    ],
)
def test_failed_fails_on_a_pass_a_missing_word_or_no_hint(
    result: CheckResult, words: tuple[str, ...], says: str
) -> None:
    with pytest.raises(AssertionError, match=says):
        failed(result, *words)


def test_wait_for_returns_the_first_true_value_and_names_what_it_waited_for() -> None:
    values = iter([None, 0, "yes"])
    assert wait_for("a value", lambda: next(values), timeout=5, every=0) == "yes"
    with pytest.raises(AssertionError, match="the moon: still not the case"):
        wait_for("the moon", lambda: None, timeout=0.05, every=0.01)
