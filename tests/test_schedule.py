"""Per-epoch LR schedules must equal PyTorch's own schedulers stepped once per epoch."""

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, CosineAnnealingWarmRestarts, LambdaLR, StepLR

from foldertune.trainer import _step_factor

LR, STEPS_PER_EPOCH, EPOCHS = 0.01, 7, 25


def torch_lrs(make):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched, lrs = make(opt), []
    for _ in range(EPOCHS):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def our_lrs(**kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched = LambdaLR(opt, lambda s: _step_factor(s, steps_per_epoch=STEPS_PER_EPOCH, **kw))
    lrs = []
    for _ in range(EPOCHS * STEPS_PER_EPOCH):  # stepped per optimizer step, as the Trainer does
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


COMMON = dict(warmup_steps=0, t_max=10, t_mult=1, min_lr_ratio=0.0, step_size=30, gamma=0.1)


@pytest.mark.parametrize("kw,make", [
    (dict(schedule="cosine"), lambda o: CosineAnnealingLR(o, T_max=10)),  # 25 epochs > T_max: rises again
    (dict(schedule="cosine", min_lr_ratio=0.1), lambda o: CosineAnnealingLR(o, T_max=10, eta_min=LR * 0.1)),
    (dict(schedule="cosine_restarts", t_max=4), lambda o: CosineAnnealingWarmRestarts(o, T_0=4)),
    (dict(schedule="cosine_restarts", t_max=3, t_mult=2), lambda o: CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
    (dict(schedule="step", step_size=6, gamma=0.5), lambda o: StepLR(o, step_size=6, gamma=0.5)),
])
def test_schedule_matches_pytorch_per_epoch(kw, make):
    expected = torch_lrs(make)
    ours = our_lrs(**{**COMMON, **kw})
    for step, lr in enumerate(ours):
        assert lr == pytest.approx(expected[step // STEPS_PER_EPOCH], rel=1e-6, abs=1e-12), step
    if kw["schedule"] == "cosine" and "min_lr_ratio" not in kw:
        assert expected[20] > expected[10]  # the seed's curve: LR climbs back after T_max


def test_warmup_multiplies_per_step():
    lrs = our_lrs(**{**COMMON, "schedule": "constant", "warmup_steps": 10})
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(LR * 0.5) and lrs[10] == pytest.approx(LR)
