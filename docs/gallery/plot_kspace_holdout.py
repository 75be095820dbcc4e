"""
Scoring without a reference: the k-space hold-out
=================================================

Measured k-space has no ground truth to compute a PSNR against. The k-space hold-out of
:mod:`medldm.physics.holdout` (as in SSDU) splits the measured lines in two: a method
reconstructs from the *kept* lines and is scored on how well it predicts the *held-out*
ones, which it never saw::

    e = || M_h A x_kept - M_h y || / || M_h y ||

Here a simulated 4x single-coil acquisition of the Shepp-Logan phantom is reconstructed by
TV at several weights. For each weight the hold-out error (three seeded splits, no
reference used) is set beside the true error against the phantom, which a user of
measured data would not have: both choose the same weight. The hold-out error measures how
well a method predicts what was not measured; a far too strong weight also misfits what
was measured, which the data residual shows and the hold-out does not, so the two worst
weights (far too weak, far too strong) can swap places.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medldm.metrics import nmse
from medldm.physics.holdout import holdout_error, holdout_splits, summarize
from medldm.physics.masks import RandomLineMask
from medldm.physics.mri import SingleCoilMRI
from medldm.physics.noise import GaussianNoise
from medldm.solvers import get_solver

torch.set_num_threads(1)  # small images: one thread is the fastest
generator = torch.Generator().manual_seed(0)
image = resize(shepp_logan_phantom(), (96, 96), anti_aliasing=True).astype("float32")
x = torch.from_numpy(image)[None, None]
mask = RandomLineMask(acceleration=4, center_fraction=0.08)((96, 96), generator=generator)
physics = SingleCoilMRI(mask, noise_model=GaussianNoise(0.01))
y = physics(x.to(torch.complex64), generator)

# %%
# Three splits, each holding out 10 % of the sampled lines outside the fully sampled
# centre (whole lines, because the acquisition left out whole lines).
centre_lines = 8  # at least the 8 % centre of 96 lines
splits = holdout_splits(mask, n_splits=3, fraction=0.1, keep_centre=(96, centre_lines), seed=0)
print(f"{len(splits)} splits, {splits[0].held_fraction:.0%} of the samples held out each")

# %%
# For each TV weight: the hold-out error (reconstructing from the kept lines of every
# split) and the true NMSE of the reconstruction from all lines.
weights = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1]
holdout, truth = [], []
for weight in weights:
    solver = get_solver("tv", weight=weight, n_iter=80)
    errors = []
    for split in splits:
        kept = physics.with_mask(split.kept)
        estimate = solver.solve(y * split.kept, kept).estimate
        errors.append(holdout_error(physics, estimate, y, split.held))
    holdout.append(summarize(errors))
    full = solver.solve(y, physics).estimate.abs()[0, 0].numpy()
    truth.append(nmse(full, image))
    print(
        f"weight {weight:7.0e}: hold-out {holdout[-1]['mean']:.4f} "
        f"± {holdout[-1]['std']:.4f}   true NMSE {truth[-1]:.4f}"
    )

best_holdout = weights[int(np.argmin([h["mean"] for h in holdout]))]
best_truth = weights[int(np.argmin(truth))]
print(f"best weight by hold-out: {best_holdout:g}; by the true error: {best_truth:g}")

# %%
# Both curves against the TV weight.
fig, left = plt.subplots(figsize=(6, 3.6), layout="constrained")
means = [h["mean"] for h in holdout]
spreads = [h["std"] for h in holdout]
left.errorbar(weights, means, yerr=spreads, marker="o", color="C0", capsize=3)
left.set_xscale("log")
left.set_xlabel("TV weight")
left.set_ylabel("k-space hold-out error (no reference)", color="C0")
right = left.twinx()
right.plot(weights, truth, marker="s", color="C1")
right.set_ylabel("NMSE against the phantom", color="C1")
left.set_title("The hold-out error ranks the weights as the true error does")
plt.show()
