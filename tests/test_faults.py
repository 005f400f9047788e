"""Fault injection: SIGKILL mid-run and mid-checkpoint, full disks, a flaky or dead remote judge,
NaN in log-probs and losses. The harness lives in benchmarks/faults.py (which runs 100 crashes)."""

from __future__ import annotations

import errno
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from sparring import runs
from sparring.config import load_config
from sparring.errors import CheckpointError, JudgeError
from sparring.game.loop import Game
from sparring.runs import latest_checkpoint, read_jsonl

_spec = importlib.util.spec_from_file_location(
    "faults_harness", Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
)
faults = sys.modules.setdefault("faults_harness", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(faults)


# -- SIGKILL at named points, then resume ---------------------------------------------------------


@pytest.fixture(scope="module")
def crash_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    models, seeds = faults.prepare(root)
    ref_dir = root / "reference"
    cfg = faults.write_config(faults.base_config(models, seeds, ref_dir), root / "reference.yaml")
    return root, models, seeds, faults.reference_run(cfg, ref_dir)


CI_KILL_POINTS = ["after-metrics:3", "after-defender-save:2", "before-rename:2", "after-rename:4"]


@pytest.mark.parametrize("kill_at", CI_KILL_POINTS)
def test_sigkill_then_resume_is_exact(crash_setup, kill_at):
    root, models, seeds, ref = crash_setup
    name = kill_at.replace(":", "-")
    run_dir = root / name
    cfg = faults.write_config(faults.base_config(models, seeds, run_dir), root / f"{name}.yaml")
    trial = faults.crash_trial(cfg, run_dir, ref, kill_at=kill_at)
    assert trial.error is None, trial.error
    assert trial.killed
    step = int(kill_at.split(":")[1])
    # the checkpoint being written when the process died is never the one resumed from
    expected = {
        "after-metrics": step - 1,
        "after-defender-save": step - 1,
        "before-rename": step - 1,
        "after-rename": step,
    }[kill_at.split(":")[0]]
    assert trial.expected_start == trial.start_step == expected
    if kill_at.startswith(("after-defender-save", "before-rename")):
        assert trial.partial_seen  # a partial checkpoint was on disk ...
    assert not trial.partial_left  # ... and resume removed it
    assert trial.metrics_equal and trial.samples_equal


@pytest.fixture(scope="module")
def pool_crash_setup(crash_setup):
    root, models, seeds, _ = crash_setup
    ref_dir = root / "pool-reference"
    data = faults.base_config(models, seeds, ref_dir, pool=faults.POOL)
    cfg = faults.write_config(data, root / "pool-reference.yaml")
    return root, models, seeds, faults.reference_run(cfg, ref_dir)


@pytest.mark.parametrize("kill_at", ["after-metrics:3"])
def test_sigkill_with_an_opponent_pool_then_resume_is_exact(pool_crash_setup, kill_at):
    """The pool's snapshots, payoffs and step counts and the probe's history resume with the run:
    the same opponents are drawn and every metric (the pool's and the probe's included) and
    sample is the uninterrupted run's."""
    root, models, seeds, ref = pool_crash_setup
    assert all("pool/value" in r for r in ref.metrics)  # the pool's game was played throughout
    assert [r["step"] for r in ref.metrics if "probe/reopened" in r] == [2, 4]  # and the probe
    name = "pool-" + kill_at.replace(":", "-")
    run_dir = root / name
    data = faults.base_config(models, seeds, run_dir, pool=faults.POOL)
    trial = faults.crash_trial(
        faults.write_config(data, root / f"{name}.yaml"), run_dir, ref, kill_at=kill_at
    )
    assert trial.killed and trial.exact, trial
    assert (latest_checkpoint(run_dir)[1] / "pool" / "pool.json").is_file()


@pytest.mark.slow
@pytest.mark.exhaustive  # the rest of the kill points; benchmarks/faults.py runs 100 trials
@pytest.mark.parametrize(
    "kill_at",
    [
        f"{n}:{s}"
        for n, steps in faults.KILL_POINTS.items()
        for s in steps
        if f"{n}:{s}" not in CI_KILL_POINTS
    ],
)
def test_sigkill_every_point(crash_setup, kill_at):
    root, models, seeds, ref = crash_setup
    name = kill_at.replace(":", "-")
    cfg = faults.write_config(faults.base_config(models, seeds, root / name), root / f"{name}.yaml")
    trial = faults.crash_trial(cfg, root / name, ref, kill_at=kill_at)
    assert trial.exact, trial


# -- full disk / read-only folder --------------------------------------------------------------------


def _fake_checkpoint(run_dir: Path, step: int) -> Path:
    tmp = runs.begin_checkpoint(run_dir, step)
    (tmp / "state.json").write_text("{}")
    return runs.commit_checkpoint(run_dir, tmp, step, {}, keep_last=5)


def test_disk_full_while_committing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    _fake_checkpoint(tmp_path, 1)
    tmp = runs.begin_checkpoint(tmp_path, 2)

    def full(_root):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "_fsync_tree", full)
    with pytest.raises(CheckpointError, match=rf"step-2 in {tmp_path}: No space left on device"):
        runs.commit_checkpoint(tmp_path, tmp, 2, {}, keep_last=5)
    assert latest_checkpoint(tmp_path)[0] == 1
    assert not tmp.exists()


@pytest.mark.parametrize("where", ["rng", "player", "folder"])
def test_game_checkpoint_failure_is_clear_and_previous_stays_usable(
    run_data, tmp_path, monkeypatch, where
):
    import sparring.game.checkpoint as checkpoint
    from sparring.players.player import Player

    game = Game(load_config(data=run_data(rounds=1)))
    game.step = 1
    game.save_checkpoint()
    game.step = 2
    if where == "rng":  # a full disk under torch.save shows up as RuntimeError

        def boom(path):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

        monkeypatch.setattr(checkpoint, "save_rng", boom)
    elif where == "player":

        def boom(self, directory):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Player, "save", boom)
    else:  # read-only output folder (chmod does not stop root, so the refusal is simulated)

        def boom(run_dir, step):
            raise OSError(errno.EROFS, "Read-only file system", str(run_dir / "checkpoints"))

        monkeypatch.setattr(runs, "begin_checkpoint", boom)
    with pytest.raises(
        CheckpointError, match=rf"cannot write checkpoint step-2 in {tmp_path / 'run'}"
    ):
        game.save_checkpoint()
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path / "run")[0] == 1
    assert not [
        p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".tmp")
    ]
    resumed = Game(load_config(tmp_path / "run" / "config.yaml"), resume=True)
    assert resumed.step == 1


# -- NaN in log-probs and losses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "poison, message",
    [
        ("logprobs", "non-finite log-probs in the defend stage \\(defender\\)"),
        ("values", "non-finite loss or gradient in the defend stage \\(defender\\)"),
    ],
)
def test_nonfinite_logprobs_or_loss_skip_the_update(run_data, monkeypatch, poison, message):
    import sparring.game.loop as loop
    import sparring.rl.trainer as trainer

    data = run_data(mode="rlhf", rounds=1)
    data["defender"]["rl"] = {"algorithm": "ppo"}
    data["max_nonfinite_in_a_row"] = 1
    game = Game(load_config(data=data))
    real = trainer.make_experience

    def poisoned(*args, **kwargs):
        exp = real(*args, **kwargs)
        setattr(exp, poison, torch.full_like(getattr(exp, poison), float("nan")))
        return exp

    monkeypatch.setattr(trainer, "make_experience", poisoned)
    before = {k: v.clone() for k, v in game.defender.unwrapped.state_dict().items()}
    with pytest.raises(loop.NonFiniteError, match=message):
        game.play_step(game.plan[0])
    after = game.defender.unwrapped.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the update was skipped


# -- a remote judge that fails -------------------------------------------------------------------


def _p_safe(prompt: str, response: str) -> float:
    return round(0.05 + 0.9 * ((sum(map(ord, prompt + "|" + response)) % 97) / 96), 6)


class FlakyJudgeServer:
    """A judge over loopback. ``mode``: 'ok', 'flaky' (first try of each request id fails with 503,
    a timeout or a reset; the retry is answered) or 'down' (503 forever after ``ok_requests``)."""

    def __init__(self, mode: str = "ok", ok_requests: int = 0):
        self.mode, self.ok_requests = mode, ok_requests
        self.attempts: dict[str, int] = {}
        self.answered: dict[str, list[tuple[str, str]]] = {}  # request id -> pairs answered 200
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rid = body["id"]
                with owner.lock:
                    n = owner.attempts[rid] = owner.attempts.get(rid, 0) + 1
                    served = len(owner.answered)
                fail = None
                if owner.mode == "flaky" and n == 1:
                    fail = ("503", "timeout", "reset")[len(owner.attempts) % 3]
                elif owner.mode == "down" and served >= owner.ok_requests:
                    fail = "503"
                if fail == "timeout":
                    threading.Event().wait(1.0)  # the client gives up after timeout_s=0.3
                    return
                if fail == "reset":
                    self.close_connection = True
                    self.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"p_sa')
                    return
                if fail == "503":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                pairs = [(p["prompt"], p["response"]) for p in body["pairs"]]
                with owner.lock:
                    owner.answered.setdefault(rid, []).extend(pairs)
                out = json.dumps({"id": rid, "p_safe": [_p_safe(p, r) for p, r in pairs]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _remote(url: str) -> dict:
    return {
        "type": "remote",
        "url": url,
        "timeout_s": 0.3,
        "max_retries": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "retry_budget_s": 10,
        "max_batch": 3,
    }


def test_flaky_remote_judge_scores_every_pair_exactly_once(run_data, tmp_path):
    server = FlakyJudgeServer("flaky")
    try:
        data = run_data(rounds=1)
        data["judge"] = _remote(server.url)
        Game(load_config(data=data)).run()
    finally:
        server.close()
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert len(samples) == 2 * 4
    # each chunk failed once, then exactly one well-formed answer was used
    assert all(n >= 2 for n in server.attempts.values())
    assert all(len(v) <= 3 for v in server.answered.values())
    used = [(s["attack"], s["response"]) for s in samples]
    answered = [pair for pairs in server.answered.values() for pair in pairs]
    assert sorted(answered[2:]) == sorted(
        used
    )  # after the 2 preflight pairs: no pair lost or doubled
    for s in samples:
        assert s["p_safe"] == _p_safe(s["attack"], s["response"])


def test_dead_remote_judge_stops_after_saving_and_resumes_exactly(run_data, tmp_path):
    ok = FlakyJudgeServer("ok")
    try:
        ref = run_data()
        ref["output_dir"] = str(tmp_path / "reference")
        ref["judge"] = _remote(ok.url)
        Game(load_config(data=ref)).run()
    finally:
        ok.close()
    expected = faults.strip_times(read_jsonl(tmp_path / "reference" / "metrics.jsonl"))

    # preflight (1 request) + steps 1-2 (2 requests each at max_batch 3 for 4 pairs) succeed
    server = FlakyJudgeServer("down", ok_requests=5)
    try:
        data = run_data()
        data["judge"] = _remote(server.url)
        data["checkpoint"] = {"every": 3}
        with pytest.raises(
            JudgeError, match=rf"{server.url}/v1/score failed after 4 attempts.*resume"
        ):
            Game(load_config(data=data)).run()
        run = tmp_path / "run"
        assert latest_checkpoint(run)[0] == 2  # saved on the way out; step 3 left no trace
        assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")] == [1, 2]
        server.mode = "ok"
        Game(load_config(run / "config.yaml"), resume=True).run()
    finally:
        server.close()
    assert faults.strip_times(read_jsonl(run / "metrics.jsonl")) == expected
    assert read_jsonl(run / "samples.jsonl") == read_jsonl(tmp_path / "reference" / "samples.jsonl")


# -- Ctrl-C and SIGTERM: stop after the step in progress, with a checkpoint -----------------------


def _signal_during(step: int, *signals: int):
    """A play_step that sends this process ``signals`` while it plays ``step``."""
    import os

    play = Game.play_step

    def play_step(self, planned):
        if planned.step == step:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return play(self, planned)

    return play_step


def test_sigterm_stops_after_the_step_with_its_checkpoint_and_resumes_exactly(
    run_data, tmp_path, monkeypatch, capsys
):
    """A scheduler's SIGTERM (or Ctrl-C) mid-step: the step finishes and is checkpointed, the
    command exits 130 with the --resume line, and resuming ends where an uninterrupted run
    does; the signal handlers in force before the run are back after it."""
    import signal

    import yaml

    from sparring.cli import main

    ref = run_data()
    ref["output_dir"] = str(tmp_path / "reference")
    Game(load_config(data=ref)).run()
    data = run_data()
    data["checkpoint"] = {"every": 3}  # no periodic checkpoint at step 2: the stop writes it
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data))
    before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as m:
        m.setattr(Game, "play_step", _signal_during(2, signal.SIGTERM))
        assert main(["train", str(config)]) == 130
    err = capsys.readouterr().err
    assert "SIGTERM: stopping after the step in progress" in err
    assert "stopped before step 3" in err and f"--resume {tmp_path / 'run'}" in err
    assert signal.getsignal(signal.SIGTERM) is before
    run = tmp_path / "run"
    assert latest_checkpoint(run)[0] == 2
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")] == [1, 2]
    assert main(["train", "--resume", str(run)]) == 0
    expected = faults.strip_times(read_jsonl(tmp_path / "reference" / "metrics.jsonl"))
    assert faults.strip_times(read_jsonl(run / "metrics.jsonl")) == expected
    assert read_jsonl(run / "samples.jsonl") == read_jsonl(tmp_path / "reference" / "samples.jsonl")


def test_a_second_signal_stops_at_once(run_data, monkeypatch):
    """Twice Ctrl-C: the step in progress is abandoned (nothing of it written)."""
    import signal

    data = run_data()
    data["checkpoint"] = {"every": 3}
    monkeypatch.setattr(Game, "play_step", _signal_during(2, signal.SIGINT, signal.SIGINT))
    game = Game(load_config(data=data))
    with pytest.raises(KeyboardInterrupt) as stopped:
        game.run()
    assert str(stopped.value) == ""  # raised by the second signal, not by a clean stop
    assert latest_checkpoint(game.run_dir) is None
    assert [m["step"] for m in read_jsonl(game.run_dir / "metrics.jsonl")] == [1]
