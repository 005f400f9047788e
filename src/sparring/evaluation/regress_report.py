"""The CI reports of ``sparring regress``, written from its result (the JSON it writes).

- :func:`write_junit`: a JUnit XML file (``xml.etree.ElementTree``) that CI systems show as
  tests: one ``<testcase>`` per archived attack (named by a short stable id and the start of
  its text, its class the archive row's run and attack family), with a ``<failure>`` for each
  attack the target answered unsafely (the attack, the behaviour it serves and the unsafe
  answers in its text) and ``<skipped>`` for one the judge decided nothing on; and one
  testcase ``gate`` that fails when the release regressed (``<failure>``) or no verdict could
  be reached (``<error>``), with the reasons. The exit code, not the per-attack failures, is
  the verdict: a release may pass with a few attacks still succeeding.
- :func:`write_html`: one self-contained HTML page (no external assets; every text escaped
  with ``html.escape``): the verdict, the figures, and the attacks that succeeded.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

#: characters XML 1.0 cannot hold, even escaped (C0 controls other than tab and line breaks,
#: lone surrogates, U+FFFE and U+FFFF): a model's answer may contain them
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
NAME_CHARS = 60

VERDICT_TEXT = {"pass": "PASS", "regressed": "REGRESSED", "undecided": "NO VERDICT"}


def _xml_text(text: Any) -> str:
    return _NOT_XML.sub("\ufffd", "" if text is None else str(text))


def short(text: str, limit: int = NAME_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters (an ellipsis marks a cut)."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1].rstrip() + "\u2026"


def family(row: dict[str, Any]) -> str:
    """The testcase class of an attack: its run and category (attack family) where the
    archive row has them, else ``archive``."""
    parts = [str(row[k]) for k in ("run", "category") if row.get(k)]
    return ".".join(parts) if parts else "archive"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def verdict(result: dict[str, Any]) -> str:
    return result.get("verdict") or ("pass" if result.get("passed") else "regressed")


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows shared by both reports."""
    rows = [
        ("target", str(result["target"])),
        ("archive", str(result["archive"])),
        ("judge", str(result["judge"])),
        ("attacks x answers", f"{result['attacks']} x {result['answers']}"),
        ("target temperature", str(result.get("temperature"))),
        ("answer length (max_new_tokens)", str(result.get("max_new_tokens"))),
        ("attack success rate (over answers)", _pct(result.get("asr"))),
        ("attacks with a decided verdict", str(result.get("decided_attacks"))),
        ("undecided verdicts", str(result.get("undecided"))),
    ]
    b = result.get("asr_bounds")
    if b:
        level = f"{100 * b['confidence']:g}%"
        rows.append((f"one-sided {level} lower bound", _pct(b["lower"])))
        rows.append((f"one-sided {level} upper bound", _pct(b["upper"])))
    if result.get("max_asr") is not None:
        rows.append(("--max-asr", _pct(result["max_asr"])))
    g = result.get("gate")
    if g:
        rows.append(("gate rule", g["rule"]))
        rows.append(("gate", ("pass: " if g["passed"] else "FAIL: ") + g["message"]))
    base = result.get("baseline")
    if base:
        rows.append(("baseline ASR", _pct(base.get("asr"))))
        rows.append(("attacks shared with the baseline", str(base.get("paired_attacks"))))
        if base.get("diff") is not None:
            rows.append(
                (
                    "difference [95% interval]",
                    f"{100 * base['diff']:+.1f}% [{100 * base['low']:+.1f}%, "
                    f"{100 * base['high']:+.1f}%]",
                )
            )
    rows.append(("verdict", VERDICT_TEXT[verdict(result)]))
    return rows


def _unsafe_answers(result: dict[str, Any], attack: dict[str, Any]) -> list[dict[str, Any]]:
    from sparring.evaluation.metrics import THRESHOLD

    answers = [result["per_answer"][i] for i in attack["answer_rows"]]
    return [a for a in answers if a["p_safe"] is not None and a["p_safe"] < THRESHOLD]


def _failure_text(result: dict[str, Any], attack: dict[str, Any]) -> str:
    parts = [f"ATTACK:\n{attack['attack']}", f"BEHAVIOUR:\n{attack['behaviour']}"]
    for k, a in enumerate(_unsafe_answers(result, attack), 1):
        parts.append(f"UNSAFE ANSWER {k} (P(safe) = {a['p_safe']:.3f}):\n{a['response']}")
    return "\n\n".join(parts)


def junit_tree(result: dict[str, Any]) -> ET.ElementTree:
    """The JUnit XML of a regress result (see the module docstring)."""
    v = verdict(result)
    attacks = result["per_attack"]
    failed = sum(1 for a in attacks if a["unsafe"]) + (v == "regressed")
    skipped = sum(1 for a in attacks if not a["decided"])
    errors = int(v == "undecided")
    counts = {
        "tests": str(len(attacks) + 1),
        "failures": str(failed),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": f"{float(result.get('seconds') or 0.0):.2f}",
    }
    root = ET.Element("testsuites", {"name": "sparring regress", **counts})
    suite = ET.SubElement(
        root, "testsuite", {"name": _xml_text(f"sparring regress: {result['target']}"), **counts}
    )
    props = ET.SubElement(suite, "properties")
    for name, value in figures(result):
        ET.SubElement(props, "property", {"name": _xml_text(name), "value": _xml_text(value)})

    gate = ET.SubElement(suite, "testcase", {"name": "gate", "classname": "sparring.regress"})
    reasons = "; ".join(result.get("failures") or [])
    report = "\n".join(f"{k}: {val}" for k, val in figures(result))
    if v == "regressed":
        el = ET.SubElement(gate, "failure", {"message": _xml_text(reasons), "type": "regressed"})
        el.text = _xml_text(report)
    elif v == "undecided":
        el = ET.SubElement(gate, "error", {"message": _xml_text(reasons), "type": "undecided"})
        el.text = _xml_text(report)
    else:
        ET.SubElement(gate, "system-out").text = _xml_text(report)

    for a in attacks:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "name": _xml_text(f"{a['id']} {short(a['attack'])}"),
                "classname": _xml_text(family(a)),
            },
        )
        if not a["decided"]:
            ET.SubElement(case, "skipped", {"message": "the judge decided none of its answers"})
        elif a["unsafe"]:
            message = f"{a['unsafe']} of {a['decided']} answers unsafe (judge {result['judge']})"
            el = ET.SubElement(case, "failure", {"message": _xml_text(message), "type": "unsafe"})
            el.text = _xml_text(_failure_text(result, a))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(result: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`junit_tree` to ``path`` (UTF-8, with an XML declaration)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(result).write(path, encoding="utf-8", xml_declaration=True)
    return path


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
.verdict { font-size: 1.6em; font-weight: bold; padding: .4em .8em; display: inline-block; }
.pass { background: #d7f5dd; } .regressed { background: #fbd5d5; }
.undecided { background: #fdf0c8; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
td.text { white-space: pre-wrap; max-width: 40em; font-family: ui-monospace, monospace; }
"""


def html_page(result: dict[str, Any]) -> str:
    """The HTML report of a regress result: self-contained, every text escaped."""
    e = html.escape
    v = verdict(result)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>sparring regress: {e(str(result['target']))}: {VERDICT_TEXT[v]}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>sparring regress: {e(str(result['target']))}</h1>",
        f'<p class="verdict {v}">{VERDICT_TEXT[v]}</p>',
    ]
    if result.get("failures"):
        out.append("<ul>" + "".join(f"<li>{e(f)}</li>" for f in result["failures"]) + "</ul>")
    out.append("<h2>Figures</h2><table>")
    out += [f"<tr><th>{e(k)}</th><td>{e(val)}</td></tr>" for k, val in figures(result)]
    out.append("</table>")
    hits = [a for a in result["per_attack"] if a["unsafe"]]
    out.append(f"<h2>Attacks that succeeded ({len(hits)} of {len(result['per_attack'])})</h2>")
    if hits:
        out.append(
            "<table><tr><th>id</th><th>run / family</th><th>attack</th><th>behaviour</th>"
            "<th>unsafe answers</th><th>an unsafe answer</th></tr>"
        )
        for a in hits:
            first = _unsafe_answers(result, a)
            answer = first[0]["response"] if first else ""
            out.append(
                f"<tr><td>{e(a['id'])}</td><td>{e(family(a))}</td>"
                f'<td class="text">{e(a["attack"])}</td>'
                f'<td class="text">{e(str(a["behaviour"]))}</td>'
                f"<td>{a['unsafe']} of {a['decided']}</td>"
                f'<td class="text">{e(str(answer))}</td></tr>'
            )
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html(result: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`html_page` to ``path`` (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(result), encoding="utf-8", errors="replace")
    return path
