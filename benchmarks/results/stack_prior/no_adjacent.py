"""whole_volume.py with the slab NOT told it is contiguous: a stack-aware prior then sees
each slice alone (its own latent in both neighbour places)."""

import contextlib
import sys

import numpy as np
import torch

import medldm.recon.simulated_stages as stages

sys.path.insert(0, "benchmarks")
import whole_volume


def alone(prior, positions):
    if positions is None:
        return contextlib.nullcontext()
    return prior.at_slice_positions(torch.from_numpy(np.ascontiguousarray(positions)))


stages._at_positions = alone
whole_volume.main()
