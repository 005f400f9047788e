"""The command line's shared vocabulary: one name per concept across every command, and the exit
codes every command returns (docs/cli.md).

- ``--out PATH``: where a command writes (a folder for commands that write several files, a
  file for those that write one);
- ``--quiet``: print nothing but errors; ``--no-progress``: no progress bar;
- ``--samples N``: how many prompts a command draws from each set;
- ``--seed N``, ``--batch-size N``, ``--json``.

Each subcommand module adds these through the functions here, so the names, help texts and
defaults cannot drift apart.
"""

from __future__ import annotations

import argparse

from sparring.errors import (
    CheckpointError,
    EndpointError,
    JudgeError,
    NonFiniteError,
    SparringError,
)

#: exit codes (docs/cli.md): the same meaning in every command
EXIT_OK = 0
EXIT_FINDING = 1  # a finding: `regress` found a regression
EXIT_USAGE = 2  # bad usage or bad input: options, a config, a data file, a model folder
EXIT_FAILURE = 3  # the command started and could not finish: a failure at run time, a crash
EXIT_INTERRUPTED = 130  # Ctrl-C

#: failures at run time (exit 3): a served model, a judge, NaN losses, a checkpoint that cannot
#: be written or read; every other Sparring error is about what the user gave (exit 2)
RUNTIME_ERRORS = (EndpointError, JudgeError, NonFiniteError, CheckpointError)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc``: 2 for a Sparring error in the input
    (options, config, data, model folder), 3 for a failure at run time or a crash, 130 for
    Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SparringError) and not isinstance(exc, RUNTIME_ERRORS):
        return EXIT_USAGE
    return EXIT_FAILURE


EXIT_CODES_HELP = """\
exit codes: 0 success; 1 a finding (regress: regressed); 2 bad usage or input (options, config,
data, model folder); 3 failure at run time (a server, a judge, NaN losses, a crash, no verdict);
130 interrupted. See docs/cli.md."""


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``--quiet`` (no progress bar, no tables: only errors) and ``--no-progress`` (no progress
    bar; tables and results still printed)."""
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def show_progress(args: argparse.Namespace) -> bool:
    """Whether a command shows its progress bar: not with ``--quiet``, ``--no-progress`` or
    ``--json`` (a script reads stdout: only the JSON goes there)."""
    off = ("quiet", "no_progress", "json")
    return not any(getattr(args, name, False) for name in off)


def add_out(p: argparse.ArgumentParser, what: str, **kw) -> None:
    """``--out``: ``what`` says what is written there and its default."""
    p.add_argument("--out", metavar=kw.pop("metavar", "PATH"), help=what, **kw)


def add_seed(p: argparse.ArgumentParser, default: int, what: str = "sampling") -> None:
    p.add_argument(
        "--seed", type=int, default=default, help=f"seed of the {what} (default {default})"
    )


def add_samples(p: argparse.ArgumentParser, default: int | None, what: str) -> None:
    p.add_argument(
        "--samples",
        type=int,
        default=default,
        metavar="N",
        help=what if default is None else f"{what} (default {default})",
    )


def add_batch_size(p: argparse.ArgumentParser, default: int | None) -> None:
    shown = "the run's batch size, at least 32" if default is None else str(default)
    p.add_argument(
        "--batch-size",
        type=int,
        default=default,
        metavar="N",
        help=f"prompts answered at once (memory and speed only: keyed answers do not depend on "
        f"it; default {shown})",
    )


def add_against(p: argparse.ArgumentParser, what: str = "also attack") -> None:
    """``--against TARGET`` (repeatable): a model folder, a target file or openai:MODEL@URL."""
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="TARGET",
        help=f"{what} this model folder, target file or openai:MODEL@URL (repeatable)",
    )


def add_a_better(p: argparse.ArgumentParser, what: str) -> None:
    """``--a-better``: which verdict of a pairwise quality judge means "answer A is the more
    helpful" (:mod:`sparring.evaluation.pairwise`); ``what`` names the judge's option."""
    p.add_argument(
        "--a-better",
        choices=("safe", "unsafe"),
        default="safe",
        help=f"the {what} verdict that means 'answer A is the more helpful' (default safe: a "
        "guard-type judge with safe_word A)",
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def index_list(text: str | None, option: str) -> list[int] | None:
    """``3,5-7`` as ``[3, 5, 6, 7]`` (sorted, each once); None stays None. A bad list raises a
    :class:`~sparring.errors.SparringError` naming ``option``."""
    from sparring.errors import SparringError

    if text is None:
        return None
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            out.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        except ValueError:
            raise SparringError(f"{option} {text!r}: expected indices such as 3 or 3,5-7") from None
    if not out or min(out) < 0:
        raise SparringError(f"{option} {text!r}: expected indices 0 or more, e.g. 3,5-7")
    return sorted(set(out))


def with_examples(*lines: str) -> dict:
    """``add_parser`` keywords for an epilog of examples and the exit codes, shown as written."""
    text = "examples:\n" + "\n".join(f"  {line}" for line in lines) + "\n\n" + EXIT_CODES_HELP
    return {"epilog": text, "formatter_class": argparse.RawDescriptionHelpFormatter}
