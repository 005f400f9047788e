"""The refusal detector for harmful prompts: garak's MitigationBypass strings, garak's matching."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from sparring.errors import DataError
from sparring.judges.refusal import RefusalDetector, garak_refusal_strings

needs_garak = pytest.mark.skipif(
    importlib.util.find_spec("garak") is None, reason="needs garak (pip install --no-deps garak)"
)


@pytest.fixture()
def fake_garak(tmp_path, monkeypatch):
    """A garak package folder of our own whose mitigation.py holds ``source``."""

    def make(source: str | None) -> Path:
        pkg = tmp_path / "garak"
        (pkg / "detectors").mkdir(parents=True, exist_ok=True)
        path = pkg / "detectors" / "mitigation.py"
        if source is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(textwrap.dedent(source))
        spec = SimpleNamespace(submodule_search_locations=[str(pkg)])
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: spec if name == "garak" else None
        )
        garak_refusal_strings.cache_clear()
        return pkg

    yield make
    garak_refusal_strings.cache_clear()


def _literal_lines(path: Path) -> list[str]:
    """The string lines between ``substrings = [`` and ``]`` in MitigationBypass, read by text
    (a second way of reading the list, to check the AST reader against)."""
    text = path.read_text(encoding="utf-8")
    body = text[text.index("class MitigationBypass") :]
    body = body[body.index("substrings = [") : body.index("]", body.index("substrings = ["))]
    return re.findall(r'^\s*"((?:[^"\\]|\\.)*)",?\s*$', body, flags=re.MULTILINE)


@needs_garak
def test_strings_are_garaks_maintained_list():
    garak_refusal_strings.cache_clear()
    loaded = sys.modules.get("garak")
    strings = garak_refusal_strings()
    path = Path(importlib.util.find_spec("garak").submodule_search_locations[0])
    assert list(strings) == _literal_lines(path / "detectors" / "mitigation.py")
    assert len(strings) > 100 and "I cannot provide" in strings and "As an AI" in strings
    assert sys.modules.get("garak") is loaded  # read, never imported
    d = RefusalDetector()
    assert d.source == f"garak MitigationBypass substrings, {len(strings)} strings"


@needs_garak
def test_matching_is_garaks_case_insensitive_substring_rule():
    d = RefusalDetector()
    assert d.refuses("I'M SORRY, BUT I CAN'T help with that.")
    assert d.refuses("Here is the plan. As an AI, I must add a caveat.")  # anywhere in the text
    assert d.refuses("well... sorry, i am unable to")
    assert not d.refuses("Sure! Step 1: take the lock. Step 2: turn the pick.")
    assert not d.refuses("")  # garak: a blank answer contains no mitigation string
    assert not d.refuses("I\u2019m unable to")  # no normalisation: a curly apostrophe differs
    assert d.refuses_batch(["As an AI", "Sure.", "I cannot assist"]) == [True, False, True]
    with pytest.raises(TypeError, match="response string"):
        d.refuses(None)


def test_given_strings_match_case_insensitively_anywhere():
    d = RefusalDetector(["Cannot Help", "as an AI"])
    assert d.refuses("Well, I cannot help you") and d.refuses("AS AN AI model")
    assert not d.refuses("I can help you") and d.source.endswith(", 2 strings")


def test_reads_the_list_literal_from_the_package_file(fake_garak):
    fake_garak(
        """
        from garak.detectors.base import StringDetector
        class Other:
            def __init__(self):
                substrings = ["not this one"]
        class MitigationBypass(StringDetector):
            def __init__(self, config_root=None):
                substrings = ["I refuse", "As an AI"]
                super().__init__(substrings, config_root=config_root)
        """
    )
    assert garak_refusal_strings() == ("I refuse", "As an AI")
    assert RefusalDetector().refuses("ok, i REFUSE")


def test_missing_or_changed_garak_gives_a_clear_error(fake_garak, monkeypatch):
    fake_garak("class MitigationBypass:\n    def __init__(self):\n        substrings = make()\n")
    with pytest.raises(DataError, match="expected a list of non-empty strings"):
        RefusalDetector()
    fake_garak(None)  # the file is gone
    with pytest.raises(DataError, match="pip install --no-deps garak"):
        garak_refusal_strings()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    garak_refusal_strings.cache_clear()
    with pytest.raises(DataError, match="pip install --no-deps garak"):
        RefusalDetector()
