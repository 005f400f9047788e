"""What produced an experiment's tables: the protocol, the code, the machine, and the compute
each arm and seed took, so that every regenerated table says how it was made.

Compute is read back from the run folders (``seconds`` in the ``summary.json`` of the arm's run
and of each exploitability probe, and in its evaluation), so an experiment resumed over several
sessions still reports the whole cost, not the last invocation's.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from sparring._files import read_json_object

#: what ``sparring experiment`` measures under, in words (docs/evaluation.md, "The evidence
#: protocol")
PROTOCOL = (
    "evidence protocol sparring.eval/1: keyed sampling (the same weights give the same figures), "
    "full-length evaluation answers, the evaluation judge shown the behaviour an attack served, "
    "arms paired by prompt within each seed and compared by a Student-t interval over seeds "
    "(Holm across arms), exploitability from {probes} trained against the frozen final defender "
    "(Table 1: the strongest of them; Table 4: their fresh attacks together, paired by probe)"
)


def probes_used(results: dict[str, list[dict[str, Any]]]) -> str:
    """The exploitability probes the entries hold, in words ("1 fresh attacker of 100 attack
    steps per defender"); several budgets are each named, and none is said as such."""
    kinds = sorted(
        {
            (e["exploit"].get("n_probes"), e["exploit"].get("steps"))
            for entries in results.values()
            for e in entries
            if isinstance(e.get("exploit"), dict)
        },
        key=str,
    )
    if not kinds:
        return "no fresh attackers (not measured)"
    said = [
        f"{n} fresh attacker{'s' if n != 1 else ''} of {steps} attack steps" for n, steps in kinds
    ]
    return " or ".join(said) + " per defender"


def _seconds(path: Path) -> float:
    value = (read_json_object(path) or {}).get("seconds")
    return float(value) if isinstance(value, int | float) else 0.0


def run_seconds(run_dir: Path) -> float:
    """Step time of an arm's run, its evaluations and its exploitability probes."""
    total = _seconds(run_dir / "summary.json")
    total += sum(_seconds(p) for p in sorted((run_dir / "eval").glob("*.json")))
    for probe in sorted((run_dir / "exploit").glob("probe-*")):
        total += _seconds(probe / "summary.json")
        total += sum(_seconds(p) for p in sorted((probe / "eval").glob("*.json")))
    return total


def machine() -> dict[str, Any]:
    """The machine in words: CPU, cores, accelerator, and the versions that decide the figures."""
    import torch

    from sparring import __version__

    out: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sparring": __version__,
    }
    return out


def provenance(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The protocol, the machine, and each arm's compute per seed (seconds). A row that reads
    another arm's runs (``ARM@latest``: ARM's last iterate) is named in ``shared`` and its runs
    count once in ``total``."""
    seconds, shared, first = {}, {}, {}
    for arm, entries in results.items():
        dirs = tuple(str(e["run_dir"]) for e in entries)
        if dirs in first:
            shared[arm] = first[dirs]
            continue
        first[dirs] = arm
        seconds[arm] = [round(run_seconds(Path(d)), 1) for d in dirs]
    total = sum(sum(v) for v in seconds.values())
    return {
        "protocol": PROTOCOL.format(probes=probes_used(results)),
        "machine": machine(), "seconds": seconds, "shared": shared,
        "total": total,
    }  # fmt: skip


def provenance_lines(prov: dict[str, Any] | None) -> list[str]:
    """The provenance as sentences (Markdown and HTML alike)."""
    if not prov:
        return []
    m = prov["machine"]
    where = f"{m['cores']} CPU cores ({m['cpu']})" + (f" and {m['gpu']}" if m["gpu"] else "")
    timed = [
        f"{arm} {sum(v) / max(len(v), 1) / 60:.1f} min per seed"
        for arm, v in prov["seconds"].items()
    ]
    reused = [f"{arm}: {other}'s runs" for arm, other in (prov.get("shared") or {}).items()]
    per_arm = ", ".join(timed + reused)
    return [
        f"Made under the {prov['protocol']}.",
        f"Compute: {prov['total'] / 60:.0f} minutes of step time in all ({per_arm}) on {where}; "
        f"Python {m['python']}, torch {m['torch']}, sparring {m['sparring']}.",
    ]
