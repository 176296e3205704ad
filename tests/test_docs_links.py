"""The README and docs/ lead somewhere: every relative Markdown link points to an existing file (and, into
a Markdown file, to an existing heading), and every project file they name in backticks exists.

The README is the front door and the long sections live in docs/; a page moved or renamed without its
links fails here rather than in a newcomer's browser.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
# Project files named in backticks (docs/bibliography.md is left out: it names files of cited repositories).
NAMED_FILE = re.compile(r"`((?:ksm|hwsim|tests|benchmarks|scripts|docs)/[\w./-]+\.(?:py|sh|md|yaml|json))`")


def _outside_fences(text: str) -> str:
    """The text outside fenced code blocks, where a line starting with # is a heading."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The text outside code blocks and inline code, where a bracket pair is a link."""
    return re.sub(r"`[^`\n]*`", "", _outside_fences(text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks too) dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives ``page``'s headings (a repeated heading gets -1, -2, ...)."""
    seen: Counter[str] = Counter()
    anchors = set()
    for line in _outside_fences(page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            base = _slug(match.group(1))
            anchors.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return anchors


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: ... are not checked here


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file() or ROOT not in file.parents:
            broken.append(f"{target}: no such file in the repository")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "bibliography.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_named_project_files_exist(page: Path) -> None:
    named = set(NAMED_FILE.findall(page.read_text(encoding="utf-8")))
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {', '.join(missing)}"


def test_the_link_reader_sees_links_anchors_and_skips_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A `b` c's\n## A b cs\n[x](other.md#a-b-cs-1) ![y](img.png) `[z](code.md)`\n"
                    "```\n[w](block.md)\n```\n[u](https://example.org)\n", encoding="utf-8")
    assert _links(page) == ["other.md#a-b-cs-1", "img.png"]
    assert _anchors(page) == {"a-b-cs", "a-b-cs-1"}
