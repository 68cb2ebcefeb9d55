"""The docs cite tests by name (docs/architecture.md's traps, docs/bad-input.md's rows): every cited name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _missing(docs: list[Path]) -> list[str]:
    source = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    defined = set(re.findall(r"^(?:async )?def (test_\w+)", source, re.M))
    return [f"{doc.relative_to(ROOT)}: {m.group(1)}" for doc in docs
            for m in re.finditer(r"\b(test_\w+)\b(?!\.py)", doc.read_text())
            # a name cut short in a table (`test_corrupt_or_foreign_checkpoints…`) cites the test it begins
            if not any(name.startswith(m.group(1)) for name in defined)]


def test_every_test_a_doc_cites_by_name_exists() -> None:
    missing = _missing([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    assert not missing, missing


@pytest.mark.studies
def test_every_test_a_study_readme_cites_by_name_exists() -> None:
    missing = _missing(sorted((ROOT / "studies").rglob("*.md")))
    assert not missing, missing
