"""Metrics reach Accelerate's trackers: TensorBoard by default, any other by name in
``logging.report_to`` (a custom tracker registered with Accelerate stands in for W&B or MLflow,
which are not installed here)."""

from __future__ import annotations

import pytest
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, register_tracker_class

from sparring.config import load_config
from sparring.errors import ConfigError
from sparring.game.loop import Game
from sparring.runs import build_trackers, read_jsonl


class MemoryTracker(GeneralTracker):
    """Keeps what it is given, like a tracker's server would."""

    name = "sparring-memory"
    requires_logging_directory = False
    runs: list[MemoryTracker] = []

    def __init__(self, run_name: str, **kwargs):
        super().__init__()
        self.run_name, self.kwargs = run_name, kwargs
        self.logged: list[tuple[int, dict]] = []
        self.config: dict | None = None
        self.finished = False
        MemoryTracker.runs.append(self)

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values: dict) -> None:
        self.config = values

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self.logged.append((step, dict(values)))

    def finish(self) -> None:
        self.finished = True


@pytest.fixture()
def memory_tracker():
    register_tracker_class(MemoryTracker)
    MemoryTracker.runs.clear()
    yield MemoryTracker
    LOGGER_TYPE_TO_CLASS.pop(MemoryTracker.name, None)


def test_report_to_sends_every_metric_row_to_the_tracker(run_data, memory_tracker):
    data = run_data(rounds=1)
    data["name"] = "tracked"
    data["logging"].update(
        {"report_to": [memory_tracker.name], "tracker_kwargs": {memory_tracker.name: {"mode": "x"}}}
    )
    game = Game(load_config(data=data))
    game.run()
    (tracker,) = memory_tracker.runs
    assert tracker.run_name == "tracked" and tracker.kwargs == {"mode": "x"} and tracker.finished
    rows = read_jsonl(game.run_dir / "metrics.jsonl")
    assert [step for step, _ in tracker.logged] == [r["step"] for r in rows]
    step, values = tracker.logged[0]
    assert values[f"{rows[0]['stage']}/reward"] == pytest.approx(rows[0]["reward"])
    assert tracker.config["game.rounds"] == 1 and tracker.config["name"] == "tracked"


def test_tensorboard_gets_the_same_scalars_under_stage_tags(run_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = run_data(rounds=1)
    game = Game(load_config(data=data))
    game.run()
    rows = read_jsonl(game.run_dir / "metrics.jsonl")
    events = EventAccumulator(str(game.run_dir / "tb")).Reload()
    defend = [r for r in rows if r["stage"] == "defend"]
    scalars = events.Scalars("defend/reward")
    assert [s.step for s in scalars] == [r["step"] for r in defend]
    assert [s.value for s in scalars] == pytest.approx([r["reward"] for r in defend])


def test_an_unknown_or_missing_tracker_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown tracker 'wandbb'.*known: .*wandb"):
        build_trackers(
            tmp_path, tensorboard=False, report_to=["wandbb"], tracker_kwargs={}, project="p"
        )
    from accelerate.tracking import get_available_trackers

    if "aim" not in {str(t) for t in get_available_trackers()}:
        with pytest.raises(ConfigError, match=r"'aim' needs its package \(pip install aim\)"):
            build_trackers(
                tmp_path, tensorboard=False, report_to=["aim"], tracker_kwargs={}, project="p"
            )
