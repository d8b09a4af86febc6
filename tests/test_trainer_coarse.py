"""coarse (gates only): the gate threshold is calibrated so the relaxed phase starts at the budget."""

import torch

from trainer._loop import TrainConfig, Trainer, train
from trainer._masks import calibrate_gate_threshold, gate_threshold


def _trainer(rate=0.95, epochs=40):
    return Trainer(TrainConfig(method="coarse", rate=rate, epochs=epochs, progress=False))


def test_calibrated_threshold_starts_the_crisp_mask_at_the_budget():
    tr = _trainer()
    psi = tr.soft_masks(tr.crispness())
    crisp = sum(int((p >= 0.5).sum()) for p in psi.values())
    assert crisp <= tr.c
    assert crisp >= 0.7 * tr.c  # a group jump, not an empty or a full mask
    assert tr.gate_theta != gate_threshold(0.95, 0.5)


def test_relaxed_mass_starts_near_the_budget_not_at_n():
    tr = _trainer()
    with torch.no_grad():
        soft = float(sum(p.sum() for p in tr.soft_masks(tr.crispness()).values()))
    # with θ = ρ·d every gate was open: Σψ ≈ 17.6·c on this preset, and coarse stayed at chance
    assert soft < 4 * tr.c


def test_calibrate_gate_threshold_bisects_a_step_count():
    th = calibrate_gate_threshold(lambda t: 100 if t < 0.3 else (40 if t < 0.6 else 0), 50)
    assert 0.3 <= th < 0.3 * 1.001
    assert calibrate_gate_threshold(lambda t: 0, 5) == 1e-6
    assert calibrate_gate_threshold(lambda t: 10, 5) == 1.0


def test_coarse_learns_on_sbu_at_95_percent_with_the_exact_budget():
    r = train(TrainConfig(method="coarse", rate=0.95, epochs=40, progress=False))
    assert r.kept == round(0.05 * r.prunable)
    assert r.accuracy > 0.5  # chance is 1/8; before the calibration it was 0.12
