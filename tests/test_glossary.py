"""The glossary in lesson 00 defines the course's words, and every lesson links to it where it first uses one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LINK = "00_setup.ipynb#Glossary"

TERMS = {
    "seed": r"\bseed\b",
    "invocation": r"\binvocations?\b",
    "handler": r"\bhandlers?\b",
    "journal": r"\bjournal(s|ed)?\b",
    "step": r"\bsteps?\b",
    "replay": r"\breplay(s|ed|ing)?\b",
    "suspension": r"\bsuspen(ds|ded|sion)\b",
    "awakeable": r"\bawakeables?\b",
    "virtual object": r"\bvirtual objects?\b",
    "key": r"\bkeys?\b",
    "session": r"\bsessions?\b",
    "deployment": r"\bdeployments?\b",
    "idempotency key": r"\bidempotency[- ]keys?\b",
    "turnstile": r"\bturnstile\b",
    "ingress": r"\bingress\b",
    "admin API": r"\badmin API\b",
}
"""The words the glossary defines, and how a lesson's prose says them."""

JARGON = [
    "invocation",
    "journal",
    "replay",
    "suspension",
    "awakeable",
    "virtual object",
    "deployment",
    "idempotency key",
    "turnstile",
    "ingress",
    "admin API",
]
"""The words no learner knows from elsewhere: each lesson links the glossary where it first uses one."""


def _markdown(path: Path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text())["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"]


def _prose(text: str) -> str:
    """The text a learner reads as prose: without code blocks and inline code (a `sys_journal` is not the word)."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return re.sub(r"`[^`]*`", " ", text)


def _glossary() -> str:
    found = [text for _, text in _markdown(REPO / "notebooks" / "00_setup.ipynb") if text.startswith("## Glossary")]
    assert len(found) == 1, "lesson 00 has one '## Glossary' section"
    return found[0]


def test_the_glossary_defines_every_word() -> None:
    rows = {m.group(1) for m in re.finditer(r"\*\*([^*]+)\*\*", _glossary())}
    missing = [term for term in TERMS if term not in rows]
    assert not missing, f"the glossary does not define {missing}"


def test_the_course_links_the_glossary_where_it_first_uses_a_word() -> None:
    cells = [(path, i, text) for path in LESSONS for i, text in _markdown(path)]
    unlinked = []
    for term, pattern in TERMS.items():
        path, i, text = next(c for c in cells if re.search(pattern, _prose(c[2]), re.I))
        if "#Glossary)" not in text and not text.startswith("## Glossary"):
            unlinked.append(f"'{term}' ({path.name}, cell {i})")
    assert not unlinked, f"the course first uses {', '.join(unlinked)} with no link to the glossary"


@pytest.mark.parametrize("path", LESSONS[1:], ids=[p.stem for p in LESSONS[1:]])
def test_each_lesson_links_the_glossary_where_it_first_uses_a_word(path: Path) -> None:
    unlinked = []
    for term in JARGON:
        pattern = TERMS[term]
        first = next(((i, t) for i, t in _markdown(path) if re.search(pattern, _prose(t), re.I)), None)
        if first is not None and LINK not in first[1]:
            unlinked.append(f"'{term}' (cell {first[0]})")
    assert not unlinked, (
        f"{path.name} first uses {', '.join(unlinked)} in a cell with no link to the glossary: define the word "
        f"there in a clause, and link it: [word]({LINK})"
    )
