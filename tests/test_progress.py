"""Progress lines of the training engines: newline-terminated, each naming step, loss, speed and time left."""

from __future__ import annotations

import pytest

from longdna.train import progress as progress_module
from longdna.train.progress import ProgressLog


def test_progress_lines_are_plain_rate_limited_and_measure_from_the_phase_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([100.0, 100.0, 110.0, 130.0, 140.0, 160.0])
    monkeypatch.setattr(progress_module.time, "time", lambda: next(clock))
    log = ProgressLog("pretrain hyenadna", interval=30.0)  # t = 100
    log.begin(100, first_step=40)  # a resumed run: steps 41.. are this process's (t = 100)
    log.step("length 1024", 45, 1.9876)  # t = 110: within the interval, silent
    log.step("length 1024", 50, 1.95, " (5,000 tokens/s)")  # t = 130: 10 steps in 30 s
    log.step("length 1024", 55, 1.94)  # t = 140: silent again
    log.line("step 60/100: validation 1.9100 bits/base")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "[pretrain hyenadna] length 1024, step 50/100: loss 1.9500, 0.33 steps/s (5,000 tokens/s),"
        " 2.5 min left in this phase",
        "[pretrain hyenadna] step 60/100: validation 1.9100 bits/base",
    ]


def test_disabled_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    log = ProgressLog("finetune b", enabled=False, interval=0.0)
    log.begin(10)
    log.step("epoch 1/1", 1, 0.5)
    log.line("done")
    assert capsys.readouterr().err == ""
