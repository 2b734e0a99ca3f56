"""Every relative link in README.md and docs/*.md leads somewhere: the file exists, and a `#anchor`
names a heading of the target as GitHub slugs it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and [text](target "title"), not images' or code spans' brackets; the target has no spaces
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text: str, *, inline_code: bool = False) -> str:
    """The page without fenced code blocks, and without inline code unless asked: brackets there are
    not links, and a `#` line there is not a heading."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line if inline_code else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (but '-' and '_'),
    each space a '-'."""
    text = re.sub(r"`|\*\*|\*|~~", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, with GitHub's -1, -2 ... for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(page.read_text(), inline_code=True).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def is_relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def test_the_pages_are_there():
    assert (ROOT / "README.md").exists() and (ROOT / "docs" / "README.md").exists()
    assert len(PAGES) > 10, [p.name for p in PAGES]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in filter(is_relative, links(page)):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and (dest.is_dir() or dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
        elif not dest.resolve().is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md") if is_relative(t)}
    index = {(ROOT / "docs" / t.partition("#")[0]).resolve() for t in links(ROOT / "docs" / "README.md")
             if is_relative(t)}
    pages = {p.resolve() for p in PAGES if p.parent.name == "docs" and p.name != "README.md"}
    assert not pages - index, f"docs/README.md does not list {sorted(p.name for p in pages - index)}"
    assert (ROOT / "docs" / "README.md").resolve() in linked, "README.md does not link docs/README.md"


def test_the_checker_finds_a_broken_link_and_a_missing_anchor(tmp_path, monkeypatch):
    """The checks above can fail: a page with a missing file, a missing anchor and a good anchor."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page: with `code`, punctuation & more\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#a-page-with-code-punctuation--more) [ok2](docs/a.md#twice-1) "
                    "[gone](docs/b.md) [no anchor](docs/a.md#nowhere) `[code](not/a/link.md)`\n"
                    "```\n[fenced](not/a/link.md)\n```\n[web](https://example.com/x)\n")
    assert links(page) == ["docs/a.md#a-page-with-code-punctuation--more", "docs/a.md#twice-1", "docs/b.md",
                           "docs/a.md#nowhere", "https://example.com/x"]
    assert anchors(tmp_path / "docs" / "a.md") == {"a-page-with-code-punctuation--more", "twice", "twice-1"}
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError) as failed:
        test_every_relative_link_resolves(page)
    assert "docs/b.md: no docs/b.md" in str(failed.value)
    assert "docs/a.md#nowhere: no heading #nowhere in docs/a.md" in str(failed.value)
    assert "twice-1" not in str(failed.value) and "punctuation" not in str(failed.value)
