"""The command line's conventions (sparring.cli_args, docs/cli.md): every command has help for
every option and examples, the shared names mean one thing, and the exit codes are pinned."""

from __future__ import annotations

import argparse
import json

import pytest

from sparring import cli_args
from sparring.cli import build_parser, main
from sparring.errors import (
    ConfigError,
    DataError,
    EndpointError,
    ModelError,
    NonFiniteError,
    SparringError,
)


def _leaves(parser: argparse.ArgumentParser, path=()):
    """(command path, parser) of every command that runs something."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*path, name))


LEAVES = list(_leaves(build_parser()))


@pytest.mark.parametrize("path, parser", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_explains_every_option_and_shows_examples(path, parser):
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if a.dest != "help" and a.help is None
    ]
    assert missing == [], f"sparring {' '.join(path)}: options without help"
    assert parser.epilog and "examples:" in parser.epilog and "exit codes" in parser.epilog
    example = parser.epilog.split("examples:\n", 1)[1].splitlines()[0].split()
    assert example[: 1 + len(path)] == ["sparring", *path] or "=" in example[0]


def test_one_name_per_concept():
    """Progress, output and sample counts have one name each wherever they exist."""
    names = {" ".join(p): {s for a in q._actions for s in a.option_strings} for p, q in LEAVES}
    for cmd, opts in names.items():
        assert "--n" not in opts or "--samples" in opts, cmd
        assert "--output-dir" not in opts or "--out" in opts, cmd
        assert ("--no-progress" in opts) == ("--quiet" in opts), cmd
    for cmd in ("train", "eval", "crossplay", "exploit", "experiment", "scan", "regress", "report"):
        assert "--quiet" in names[cmd], cmd
    for cmd in ("eval", "crossplay", "scan", "regress"):
        assert "--json" in names[cmd], cmd


@pytest.mark.parametrize(
    "error, code",
    [
        (ConfigError("bad key"), 2),
        (DataError("bad line"), 2),
        (ModelError("no model"), 2),
        (SparringError("--no-templates needs --answers"), 2),
        (EndpointError("server down"), 3),
        (NonFiniteError("NaN"), 3),
        (RuntimeError("a bug"), 3),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes_are_pinned(monkeypatch, error, code, capsys):
    """0 success, 1 a finding, 2 bad usage or input, 3 a failure at run time, 130 Ctrl-C."""
    import sparring.cli as cli

    def fail(args):
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["report"].set_defaults(func=fail)
    assert main(["report", "anywhere"]) == code
    assert cli_args.exit_code_for(error) == code
    with pytest.raises(SystemExit) as usage:
        main(["report", "--no-such-option"])
    assert usage.value.code == 2


def test_eval_never_overwrites_an_evaluation_and_takes_the_runs_sample_count(
    run_data, tiny_models, tmp_path, capsys
):
    """`sparring eval` without --name writes final-2 beside training's final; --samples
    defaults to the run's evaluation.samples; --json prints the result."""
    from sparring.config import load_config
    from sparring.game.loop import Game

    data = run_data(rounds=1)
    data["evaluation"].update({"at_start": False, "at_end": True, "samples": 3})
    cfg = load_config(data=data)
    Game(cfg, progress=False).run()
    run = cfg.run_dir()
    training = (run / "eval" / "final.json").read_text()
    capsys.readouterr()
    assert main(["eval", str(run), "--quiet"]) == 0
    assert capsys.readouterr().out == ""  # --quiet: nothing but errors
    assert (run / "eval" / "final.json").read_text() == training
    again = json.loads((run / "eval" / "final-2.json").read_text())
    assert again["samples"] == 3 and again["name"] == "final-2"
    assert main(["eval", str(run), "--quiet", "--json", "--name", "scripted"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "scripted"


def test_progress_written_to_a_log_file_prints_lines(capsys):
    """Under nohup or a batch scheduler rich draws nothing until a display stops; Sparring's
    display prints a line per task as it goes (throttled), and once when the task completes."""
    from rich.progress import TextColumn

    from sparring.runtime import logged_progress, progress_bar

    with progress_bar(True) as bar:  # capsys: stdout is not a terminal
        task = bar.add_task("generate", total=3)
        bar.advance(task)
        first = capsys.readouterr().out
        bar.advance(task, 2)
        done = capsys.readouterr().out
    assert "generate: 1/3" in first  # a line while the task runs, not only at the end
    assert "generate: 3/3" in done

    with logged_progress(TextColumn("{task.description}"), every=3600.0) as bar:
        task = bar.add_task("train", total=10, info="")
        for _ in range(9):
            bar.update(task, advance=1, info="loss 0.5")
        bar.update(task, advance=1, info="loss 0.4")
        bar.update(task, advance=0)  # a finished task is not printed again
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("train:")]
    assert lines[0].startswith("train: 1/10") and "loss 0.5" in lines[0]
    assert lines[1].startswith("train: 10/10") and "loss 0.4" in lines[1]
    assert len(lines) == 2  # throttled: one line in the hour, one at completion
