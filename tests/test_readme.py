"""The README and the docs it leads to: short enough to read, and no link leads nowhere.

Relative links are checked against the files in the repository, and a link's ``#anchor``
against the headings of the file it points to, by GitHub's rule (lowercase, punctuation other
than ``-`` and ``_`` dropped, spaces turned into ``-``, a repeated heading suffixed ``-1``,
``-2``, ...). Nothing is fetched: web links are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: The README's hard limit: everything longer belongs in docs/.
MAX_README_LINES = 200

#: Markdown files whose relative links are checked: the README and the pages it leads to.
CHECKED = [
    "README.md",
    "CHANGELOG.md",
    "docs/architecture.md",
    "docs/arena.md",
    "docs/cli.md",
    "docs/configuration.md",
    "docs/deployed-models.md",
    "docs/judges.md",
    "docs/performance.md",
    "docs/pools.md",
    "docs/real-models.md",
    "docs/reliability.md",
    "docs/scale-out.md",
    "docs/results/arena-default.md",
    "docs/results/arena-paper.md",
    "docs/results/smollm2.md",
    "docs/results/experiment-arena.md",
    "docs/results/experiment-pools-hard.md",
]

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"`[^`]*`")


def _prose_lines(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (link targets and emphasis markers dropped)
    lowercased, every character that is not a letter, digit, space, ``-`` or ``_`` removed,
    spaces turned into ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        base = github_anchor(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    """The link targets of a markdown file that are not web or mail addresses."""
    targets = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        line = _INLINE_CODE.sub("", line)
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:, ...
                continue
            targets.append(target)
    return targets


def _cases() -> list[tuple[str, str]]:
    return [(doc, target) for doc in CHECKED for target in relative_links(ROOT / doc)]


def test_github_anchor_rule():
    assert github_anchor("The evidence protocol") == "the-evidence-protocol"
    assert github_anchor("Results in the arena's hard world") == "results-in-the-arenas-hard-world"
    assert (
        github_anchor("`with-helpfulness`: safety and helpfulness together")
        == "with-helpfulness-safety-and-helpfulness-together"
    )
    assert github_anchor("The judges (CPU)") == "the-judges-cpu"
    assert (
        github_anchor("Gating a release: `sparring regress`") == "gating-a-release-sparring-regress"
    )
    assert github_anchor("snake_case kept") == "snake_case-kept"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/"
    )


def test_every_checked_file_exists_and_has_links():
    for doc in CHECKED:
        assert (ROOT / doc).is_file(), doc
    assert relative_links(ROOT / "README.md"), "the link extractor found no links in README.md"


@pytest.mark.parametrize(("doc", "target"), _cases())
def test_relative_link_resolves(doc: str, target: str):
    source = ROOT / doc
    path_part, _, anchor = target.partition("#")
    dest = (source.parent / path_part).resolve() if path_part else source
    assert dest.exists(), f"{doc}: link {target!r} points to {dest}, which does not exist"
    assert dest == ROOT or ROOT in dest.parents, f"{doc}: link {target!r} leaves the repository"
    if anchor:
        assert dest.is_file() and dest.suffix == ".md", (
            f"{doc}: link {target!r} has an anchor but does not point to a markdown file"
        )
        found = anchors(dest)
        assert anchor in found, (
            f"{doc}: link {target!r}: no heading with anchor #{anchor} in "
            f"{dest.relative_to(ROOT)} (anchors there: {sorted(found)})"
        )


def test_license_is_apache_2():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_citation_cff_parses():
    data = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert data["cff-version"] == "1.2.0"
    assert data["title"] == "Sparring"
    assert data["type"] == "software"
    assert data["license"] == "Apache-2.0"
    assert data["authors"] and all("name" in a or "family-names" in a for a in data["authors"])
    titles = [ref.get("title", "") for ref in data.get("references", [])]
    assert "Toward Optimal LLM Alignments Using Two-Player Games" in titles


# -- the README's commands --------------------------------------------------------------------


def _readme_commands() -> list[str]:
    """Every ``sparring ...`` line of the README's bash blocks (the quick start's ``make``
    lines are what CI itself runs; the ``pip install`` line is what ``make setup`` runs)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            cmd = line.split("#", 1)[0].strip()
            if cmd.startswith("sparring "):
                lines.append(cmd)
    return lines


def test_the_readme_commands_run_as_written(run_data, tmp_path, monkeypatch):
    """After `make train` the README says to activate the venv and run `sparring report
    runs/arena`: each such line runs as written, here against a tiny run in runs/arena."""
    import shlex

    from sparring.cli import main
    from sparring.config import load_config
    from sparring.game.loop import Game

    commands = _readme_commands()
    assert commands == ["sparring report runs/arena"]  # a new command here needs a stand-in
    monkeypatch.chdir(tmp_path)
    data = run_data(rounds=1)
    data["output_dir"] = "runs/arena"
    Game(load_config(data=data), progress=False).run()
    for cmd in commands:
        assert main(shlex.split(cmd)[1:]) == 0, cmd
    assert (tmp_path / "runs" / "arena" / "report" / "index.html").is_file()
