"""Progress a piped log can show: dated lines with done/total, rate and ETA, neither silent nor flooding."""

from __future__ import annotations

import pytest

from sclcoder import progress
from sclcoder.progress import Lines, duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    return c


def test_slow_work_prints_every_tenth_with_rate_and_eta(clock: Clock, capsys) -> None:
    lines = Lines("predict", 50, "notes")
    for _ in range(50):
        clock.now += 2.0  # 0.5 notes/s
        lines.advance()
    out = capsys.readouterr().err.splitlines()
    assert len(out) == 10  # one per 5 notes (10 s apart), the last at 50/50
    assert out[0].startswith("predict: 5/50 notes") and "0.50 notes/s" in out[0] and "ETA 1m30s" in out[0]
    assert out[-1].startswith("predict: 50/50 notes") and "ETA" not in out[-1] and "elapsed 1m40s" in out[-1]


def test_fast_work_prints_nothing_and_long_gaps_still_print(clock: Clock, capsys) -> None:
    quick = Lines("building examples", 45, "items")
    for _ in range(45):
        clock.now += 0.01
        quick.advance()
    assert capsys.readouterr().err == ""
    slow = Lines("train", 1000, "steps")
    clock.now += 31  # one unit after 31 s: far from a tenth, but a log must not stay silent that long
    slow.advance()
    assert "train: 1/1,000 steps" in capsys.readouterr().err


def test_a_rate_field_replaces_the_default_rate(clock: Clock, capsys) -> None:
    lines = Lines("predict", 2, "notes")
    lines.update(rate="0.42 notes/s, 88 tok/s")
    clock.now += 6
    lines.advance()
    assert "| 0.42 notes/s, 88 tok/s |" in capsys.readouterr().err


def test_duration() -> None:
    assert [duration(s) for s in (0.4, 59, 61, 3599, 3661)] == ["0s", "59s", "1m01s", "59m59s", "1h01m"]


def test_training_tok_per_s_counts_the_optimizer_steps_not_validation_between_them(clock: Clock, capsys) -> None:
    from types import SimpleNamespace

    from sclcoder.train.callbacks import TrainingProgress

    counted = SimpleNamespace(real=0, pad_share=0.0)  # the batch counter's totals
    bar = TrainingProgress(counted)  # type: ignore[arg-type]
    state = SimpleNamespace(global_step=0, max_steps=4, is_world_process_zero=True)
    bar.on_train_begin(None, state, None)
    for _ in range(2):
        bar.on_step_begin(None, state, None)
        clock.now += 2.0  # a step of 200 tokens
        counted.real += 200
        state.global_step += 1
        bar.on_step_end(None, state, None)
        clock.now += 30.0  # scoring validation notes and saving: not training
    bar.on_log(None, state, None, logs={"loss": 1.0})
    line = capsys.readouterr().err
    assert "| 100 tok/s |" in line  # 400 tokens in 4 s of steps, not in the 64 s of wall clock
    assert "elapsed 1m04s" in line and "ETA 1m04s" in line  # the clock a user waits on includes everything
