"""latent_dds per-sample cost on the ldm_speed case (IXI603 central slice, MRI 4x, seed 0):
one and four posterior samples, same measurement as benchmarks/ldm_speed.sh.

    .venv/bin/python benchmarks/ldm_speed_per_sample.py
"""

import time

import torch

from medldm.bench.cases.cards import card_cases
from medldm.bench.measurement_view import to_image_array
from medldm.metrics.scoring import score
from medldm.models import load_prior
from medldm.problems.configs import load_physics, solver_for_operator
from medldm.problems.simulate import simulate

case = next(iter(card_cases("ixi_t1", "test", slices=1, size=128)))
phys, y = simulate(torch.from_numpy(case.image)[None, None], load_physics("mri_4x"), seed=0)
prior = load_prior("brain_t1_2d", device="cpu")
for n in (1, 4):
    s, _ = solver_for_operator("latent_dds", "mri_4x")
    s.n_samples = n
    t = time.perf_counter()
    r = s.solve(y, phys, prior, generator=torch.Generator().manual_seed(0))
    dt = time.perf_counter() - t
    sc = score(to_image_array(r.estimate, case.shape), case.image)
    print(
        case.case_id,
        f"latent_dds n_samples={n}: {sc['psnr']:.2f} dB / {sc['ssim']:.4f},",
        f"{dt:.2f} s, NFE {r.nfe}",
    )
