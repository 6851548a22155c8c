"""The documentation in docs/ is in sync with what it describes, and every citation resolves.

- The generated parts of docs/*.md (claims, learner defaults, attacks, ε, budgets, committed runs)
  equal what ``python -m advmeta.reference`` makes from the code and data files now.
- Every citation of a document in the code, the grids and claims, the report's templates and the
  README (``docs/methods.md#maml``, or an old-style ``METHODS.md §2``) names a file in the
  repository, and the section (``#anchor``) a heading of it.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((REPO / "advmeta").rglob("*.py")), *sorted((REPO / "tune").rglob("*.py")),
           *sorted((REPO / "advmeta").rglob("*.toml")), *sorted((REPO / "cli").rglob("*.py")), REPO / "README.md",
           *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "results").glob("*/README.md"))]
# "docs/x.md#anchor" (anchor optional), and any "NAME.md §n" (a section of a document that must exist).
DOC_CITATION = re.compile(r"\bdocs/([\w./-]+\.md)(?:#([\w\-\u0080-\uffff]+))?")
SECTION_CITATION = re.compile(r"\b([A-Za-z_][\w-]*\.md)\s*§\s*\d")
BARE_UPPER = re.compile(r"\b(METHODS|PERFORMANCE|RAY|STYLE)\.md\b|\bMETHODS §")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFC", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    out = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6}\s+(.*)", line)):
            out.add(slug(m.group(1)))
    return out


def test_the_generated_parts_of_the_docs_are_up_to_date() -> None:
    from advmeta.reference import sync

    stale = sync(REPO, check=True)
    assert not stale, f"out of date: {stale}; regenerate with: python -m advmeta.reference"


def test_every_citation_names_a_page_and_a_heading_in_the_repository() -> None:
    bad = []
    seen = 0
    for path in SOURCES:
        text = path.read_text(errors="replace")
        where = path.relative_to(REPO)
        for m in SECTION_CITATION.finditer(text):
            bad.append(f"{where}: {m.group(0)!r} cites a section of {m.group(1)}, which is not a page here "
                       "(cite docs/<page>.md#<heading>)")
        for m in BARE_UPPER.finditer(text):
            if not (REPO / f"{m.group(1)}.md").is_file() and not (REPO / "docs" / f"{m.group(1)}.md").is_file():
                bad.append(f"{where}: {m.group(0)!r} names a document that is not in the repository")
        for m in DOC_CITATION.finditer(text):
            seen += 1
            page = REPO / "docs" / m.group(1)
            if not page.is_file():
                bad.append(f"{where}: docs/{m.group(1)} does not exist")
            elif m.group(2) and m.group(2) not in anchors(page):
                bad.append(f"{where}: docs/{m.group(1)} has no heading #{m.group(2)}")
    assert not bad, "\n".join(bad)
    assert seen >= 20  # the code does cite the docs


def test_links_between_the_docs_resolve() -> None:
    bad = []
    for page in sorted((REPO / "docs").glob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            dest = (page.parent / target).resolve() if target else page
            if not dest.exists():
                bad.append(f"{page.name}: link to {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{page.name}: link to {target}#{anchor} (no such heading)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("heading, anchor", [("MAML", "maml"), ("R-MAML SA and RA", "r-maml-sa-and-ra"),
                                             ("Epsilon per dataset", "epsilon-per-dataset"),
                                             ("Ray: a quiet start", "ray-a-quiet-start")])
def test_slug_follows_githubs_rule(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_every_module_the_readme_and_docs_name_exists() -> None:
    """A road or a layout that names a module names one that is there (a moved module is renamed in the prose)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for path in re.findall(r"`((?:advmeta|tune|cli|tests)/[\w/]+\.(?:py|toml))`", page.read_text()):
            if not (REPO / path).exists():
                missing.append(f"{page.name}: {path}")
    assert missing == [], missing
