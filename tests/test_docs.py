"""The repository's own documents: every ``docs/...`` file the code, the tests and the README cite exists,
and every section of ``docs/design.md`` they cite (``docs/design.md §5.1``) is a heading of it."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"\bdocs/([\w./-]+\.md)(?:'s)?(?:\s+§(\d+(?:\.\d+)*))?")
EXTRA = re.compile(r"§(\d+(?:\.\d+)*)")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / p for p in out.splitlines() if p.endswith((".py", ".md", ".cfg", ".toml", ".sh"))
            and not p.startswith("docs/")]


def _citations() -> list[tuple[Path, str, str | None]]:
    found = []
    for path in _tracked_text_files():
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in CITED.finditer(text):
            found.append((path, match.group(1), match.group(2)))
            # "docs/design.md §5 and §5.1": the sections listed right after the first one
            tail = text[match.end():match.end() + 20]
            for extra in re.finditer(r"^\s*(?:and|,)\s*§(\d+(?:\.\d+)*)", tail):
                found.append((path, match.group(1), extra.group(1)))
    return found


def _sections(doc: Path) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", doc.read_text(), re.MULTILINE)}


def test_design_document_has_numbered_sections():
    sections = _sections(ROOT / "docs" / "design.md")
    assert {"2", "5", "5.1", "7"} <= sections


def test_every_cited_document_and_section_exists():
    citations = _citations()
    assert len(citations) >= 10, "the code cites docs/design.md in many places; the scan found too few"
    missing = []
    for path, doc, section in citations:
        target = ROOT / "docs" / doc
        if not target.is_file():
            missing.append(f"{path.relative_to(ROOT)} cites docs/{doc}, which does not exist")
        elif section is not None and section not in _sections(target):
            missing.append(f"{path.relative_to(ROOT)} cites docs/{doc} §{section}, which has no such section")
    assert not missing, "\n".join(missing)


#: the name of the design notes elk's code once cited, which live outside the repository (spelt in two
#: parts so that this file does not cite them itself)
OUTSIDE = "DESIGN" + ".md"


def test_no_citation_of_a_file_outside_the_repository():
    stale = [str(p.relative_to(ROOT)) for p in _tracked_text_files()
             if p.exists() and OUTSIDE in p.read_text(errors="replace")]
    assert not stale, f"cite docs/design.md instead of {OUTSIDE} in: {stale}"
