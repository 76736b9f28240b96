"""The model-facing lenses measure the saved main model (``allocation.model_path``) when it is handed on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _main_model import FAMILY, tiny_main_model

from multilens.data.family import FamilySpec
from multilens.lenses.allocation import load_main_model
from multilens.lenses.contract import Runtime


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_main_model(tmp_path_factory.mktemp("main") / "mm")


def _rt(path: str, **more: object) -> Runtime:
    return Runtime(inputs={"allocation.model_path": path, **more})


def test_curvature_lambda_max_is_the_dense_top_eigenvalue(path: str) -> None:
    from multilens.lenses import curvature as C

    s = C.Settings.for_profile("smoke")
    subj = C.default_subject(s, seed=0, runtime=_rt(path))
    assert subj.info["main_model"]["path"] == path
    r = C.measure(subj, s, seed=0)
    assert any("allocation.model_path" in n for n in r.notes)
    # Independent reference: the dense Hessian of the mean CE over the first 128 training examples (float64).
    model, spec = load_main_model(path)
    x, y = FamilySpec.from_dict(FAMILY).train(s.hessian_examples, spec["seed"])
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().double().reshape(-1) for _, p in model.named_parameters()])
    m64 = model.double()

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, sh in zip(names, shapes):
            k = int(np.prod(sh))
            params[n] = flat[i : i + k].reshape(sh)
            i += k
        return torch.nn.functional.cross_entropy(torch.func.functional_call(m64, params, (x.double(),)), y)

    h = torch.autograd.functional.hessian(loss, flat0)
    top = float(torch.linalg.eigvalsh(h)[-1])
    assert r.metrics["curvature.lambda_max"] == pytest.approx(top, rel=1e-8)
    assert r.outputs["curvature.lambda_max"] == pytest.approx(top, rel=1e-8)
    assert r.outputs["curvature.lr_max"] == pytest.approx(2.0 / r.metrics["curvature.lambda_max_ci_high"], rel=1e-15)
    assert r.check("lanczos_eigenvalue_1_vs_dense").passed is True


def test_representation_is_the_last_hidden_layer(path: str) -> None:
    from multilens.lenses import representation as R

    s = R.Settings.for_profile("smoke")
    subj = R.default_subject(s, seed=0, runtime=_rt(path))
    model, spec = load_main_model(path)
    x, y = FamilySpec.from_dict(FAMILY).train(spec["d"], spec["seed"])
    with torch.no_grad():
        z = torch.relu(model[0](x)).double().numpy()
    assert np.array_equal(subj.z_train, z) and np.array_equal(subj.y_train, y.numpy())
    assert subj.z_test.shape == (FAMILY["n_test"], 8) and not subj.ssl and not subj.checkpoints
    r = R.measure(subj, s, seed=0)
    assert r.notes[0].startswith("subject: main model") and path in r.notes[0]
    assert "collapse_bound" not in r.parts and "spectrum" in r.parts  # the adapter's switches for a user model
    assert "representation.probe_accuracy" in r.metrics or any(k.startswith("representation.") for k in r.metrics)


def test_calibration_uses_the_family_val_and_test_splits(path: str) -> None:
    from multilens.lenses import calibration as K

    s = K.Settings.for_profile("smoke")
    subj = K.default_subject(s, seed=0, runtime=_rt(path))
    model, _ = load_main_model(path)
    fam = FamilySpec.from_dict(FAMILY)
    for pred, (x, y) in ((subj.val, fam.val()), (subj.test, fam.test())):
        with torch.no_grad():
            z = model(x).double().numpy()
        assert np.array_equal(np.asarray(pred.labels), y.numpy())
        assert np.array_equal(np.asarray(pred.logits), z)
    r = K.measure(subj, s, seed=0)
    assert r.data["subject"]["path"] == path and any("allocation.model_path" in n for n in r.notes)
    assert any(k.startswith("calibration.") for k in r.metrics)


def test_calibration_trajectory_of_the_main_model_is_the_digits_reference(path: str) -> None:
    """The main model has no trajectory: the trajectory part measures the lens's digits reference (the same
    checkpoints as the lens run alone) and says so; with reference_trajectory off it measures nothing."""
    from dataclasses import replace

    from multilens.lenses import calibration as K

    s = K.Settings.for_profile("smoke")
    subj = K.default_subject(s, seed=0, runtime=_rt(path))
    alone = K.default_subject(s, seed=0)
    assert len(subj.trajectory) == len(alone.trajectory) >= 2
    assert [c.step for c in subj.trajectory] == [c.step for c in alone.trajectory]
    assert np.array_equal(np.asarray(subj.trajectory[-1].test.logits), np.asarray(alone.trajectory[-1].test.logits))
    r = K.measure(subj, s, seed=0)
    assert (
        r.metrics["calibration.curvature_drift_spearman"]
        == K.measure(alone, s, seed=0).metrics["calibration.curvature_drift_spearman"]
    )
    assert any(n.startswith("trajectory subject: the digits MLP") for n in r.notes)
    off = K.default_subject(replace(s, reference_trajectory=False), seed=0, runtime=_rt(path))
    assert off.trajectory == () and "calibration.curvature_drift_spearman" not in K.measure(off, s, seed=0).metrics


def test_robustness_in_the_box(path: str) -> None:
    from multilens.lenses import robustness as B

    s = B.Settings.for_profile("smoke")
    subj = B.default_subject(s, seed=0, runtime=_rt(path))
    xt, yt = FamilySpec.from_dict(FAMILY).test()
    n = s.n_holdout or xt.shape[0]
    assert subj.input_range == (-1.0, 1.0)
    assert torch.equal(subj.x, xt[:n]) and torch.equal(subj.y, yt[:n])
    assert subj.checkpoints == () and subj.source is None and subj.linear is not None
    r = B.measure(subj, s, seed=0)
    assert "main model" in r.notes[0] and r.data["subject"]["main_model"]["path"] == path
    assert r.check("lipschitz_lower_le_upper_end_to_end").passed is True
    # The 2-class family has no class 3 (the digits' critical class): the certificate is for class 1.
    assert s.certificate.critical_class == 3 and "robustness.fnr_upper" in r.outputs
    assert any("certificate is for class 1" in n for n in r.notes)


def test_compression_and_the_retraining_lr_ratio(path: str) -> None:
    from multilens.lenses import compression as P

    s = P.Settings.for_profile("smoke")
    subj = P.default_subject(s, seed=0, runtime=_rt(path))
    assert len(subj.models) == 1 and subj.train[0].shape[0] == 512
    other = FamilySpec.from_dict(FAMILY | {"teacher_seed": FAMILY["teacher_seed"] + 1})
    assert torch.equal(subj.shifted[1][1], other.test()[1])
    r = P.measure(subj, s, seed=0, runtime=_rt(path, **{"curvature.lr_max": 2.5}))
    assert r.metrics["compression.retrain_lr_ratio"] == s.pruning.lr / 2.5
    assert any("2 / lambda_max" in n for n in r.notes) and r.data["subject"]["main_model"]["path"] == path
    r0 = P.measure(subj, s, seed=0, runtime=_rt(path))
    assert "compression.retrain_lr_ratio" not in r0.metrics
    same = {k: v for k, v in r.metrics.items() if k != "compression.retrain_lr_ratio"}
    assert same == r0.metrics  # the hand-off adds the ratio and changes nothing else


def test_without_the_hand_off_the_bundled_subjects_are_built(path: str) -> None:
    from multilens.lenses import compression as P

    subj = P.default_subject(P.Settings.for_profile("smoke"), seed=0, runtime=Runtime())
    assert subj.info.get("data") == "digits" and "main_model" not in subj.info
    assert Path(path).is_dir()
