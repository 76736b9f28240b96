"""Peak memory of one Hessian-vector product against one training step on the same model and data.

Each measurement runs in a fresh subprocess: set up the model and data, record the peak resident
set size (ru_maxrss), run the operation a few times, record the peak again; the difference is the
operation's own peak working memory. The issue's target: an HVP within about 3x a training step.
Results go to benchmarks/results/curvature_memory.json. Usage:

    .venv/bin/python benchmarks/bench_curvature_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from multilens.data import load_digits_split
from multilens.models import MLPSpec, build_mlp
mode, dtype = sys.argv[1], getattr(torch, sys.argv[2])
d = load_digits_split(0)
x, y = d.x_train.to(dtype), d.y_train
model = build_mlp(MLPSpec(64, (1024, 1024), 10), 0).to(dtype)
loss_fn = torch.nn.functional.cross_entropy
if mode == "hvp":
    from multilens.curvature import curvature_operator
    op = curvature_operator(model, loss_fn, (x, y), dtype=dtype)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=dtype).numpy()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(3):
    if mode == "train":
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 1e-3 * p.grad
    else:
        op.matvec(v) if hasattr(op, "matvec") else op(v)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kb": before, "after_kb": after, "n_params": sum(p.numel() for p in model.parameters())}))
"""


def measure(mode: str, dtype: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, dtype], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["peak_delta_mb"] = (r["after_kb"] - r["before_kb"]) / 1024
    return r


def main() -> None:
    from multilens.io import atomic_write_json

    res = {
        f"{m}_{d}": measure(m, d)
        for m, d in (("train", "float32"), ("train", "float64"), ("hvp", "float64"), ("hvp", "float32"))
    }
    for k, v in res.items():
        print(f"{k:14s} peak working memory {v['peak_delta_mb']:8.1f} MB  ({v['n_params']} parameters)")
    r64 = res["hvp_float64"]["peak_delta_mb"] / max(res["train_float64"]["peak_delta_mb"], 1e-9)
    r32 = res["hvp_float64"]["peak_delta_mb"] / max(res["train_float32"]["peak_delta_mb"], 1e-9)
    r3232 = res["hvp_float32"]["peak_delta_mb"] / max(res["train_float32"]["peak_delta_mb"], 1e-9)
    print(f"HVP (float64) / training step (float64): {r64:.2f}x; / training step (float32): {r32:.2f}x")
    print(f"HVP (float32) / training step (float32): {r3232:.2f}x")
    atomic_write_json(
        Path(__file__).parent / "results" / "curvature_memory.json",
        {
            "benchmark": "curvature_memory",
            "runs": res,
            "hvp_over_train_same_dtype": r64,
            "hvp_float32_over_train_float32": r3232,
            "hvp_float64_over_train_float32": r32,
        },
    )


if __name__ == "__main__":
    main()
