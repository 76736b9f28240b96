"""Your own training loop with the multilens Monitor: curvature measured every few steps.

python examples/monitor_plain_pytorch.py            # writes runs/example-monitor/report.html
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multilens as ml  # noqa: E402
from convnet import ConvNet, digits_loaders  # noqa: E402


def main(
    steps: int = 300, every: int = 100, out: str = "runs/example-monitor", profile: str = "smoke"
) -> ml.DiagnoseReport:
    torch.manual_seed(0)  # the example's own training seed (multilens never sets global seeds)
    train, holdout = digits_loaders()
    model = ConvNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, steps // 2), gamma=0.3)
    mon = ml.Monitor(
        ml.Subject(model, F.cross_entropy, train=train, holdout=holdout),
        lenses=("curvature",),
        every=every,
        out=out,
        profile=profile,
    )
    step = 0
    while step < steps:
        for x, y in train:
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
            if step == steps // 2:
                mon.event("lr_decay", step)
            mon.step(step)
            step += 1
            if step >= steps:
                break
    return mon.close()


if __name__ == "__main__":
    rep = main()
    print(rep.summary["monitor"]["overhead"], rep.paths["report"])
