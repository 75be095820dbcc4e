"""Calls go one way: a walk of a preset from each reconstruction entry point enters each
room (module of :mod:`medldm.recon`) from one caller module only, and never climbs back up
(a lower import-linter layer calling a higher one, or two rooms calling each other); see
``tests/call_walk.py`` and ``docs/architecture.md``. Small synthetic inputs and the tiny
untrained prior: the call flow, not the quality."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

import medldm
import medldm.recon.measured
import medldm.recon.sinogram
from medldm.models.testing import tiny_prior
from tests.call_walk import Tracer, Walk

FAST = {"n_steps": 2, "n_samples": 1}
GRID = {"size": [32, 32], "spacing_mm": 2.0}


def _image(folder: Path) -> Callable[[], object]:
    """``medldm.reconstruct`` on a small NIfTI (a bright box in a dimmer one), one slice."""
    data = np.zeros((24, 20, 3), np.float32)
    data[4:20, 3:17] = 0.4
    data[8:14, 6:12] = 1.0
    path = folder / "box.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    prior = tiny_prior()
    return lambda: medldm.reconstruct(
        path, "mri_brain_4x", prior=prior, device="cpu", slices=1, grid=GRID,
        solver_options=FAST,
    )  # fmt: skip


def _full_kspace(folder: Path) -> Path:
    """Fully sampled 4-coil k-space of a box, ``(coils, rows, cols)``, saved as ``.npy``."""
    from medldm.physics.coils import birdcage_sensitivities
    from medldm.physics.mri import fft2c

    shape = (32, 64)
    image = torch.zeros(shape)
    image[8:24, 12:52] = 1.0
    kspace = fft2c(birdcage_sensitivities(4, shape) * image).numpy().astype(np.complex64)
    np.save(folder / "full.npy", kspace)
    return folder / "full.npy"


def _kspace(folder: Path) -> Callable[[], object]:
    """``reconstruct_kspace`` on fully sampled k-space, undersampled 4x by it: the LDM and
    every default classical solver (the preset's TV, CG-SENSE, l1-wavelet), one hold-out."""
    path = _full_kspace(folder)
    prior = tiny_prior()
    return lambda: medldm.recon.measured.reconstruct_kspace(
        path, "mri_brain_4x", acceleration=4, prior=prior, grid=GRID, solver_options=FAST,
        holdout_splits=1, device="cpu",
    )  # fmt: skip


def _kspace_api(folder: Path) -> Callable[[], object]:
    """``medldm.reconstruct(kspace=, mask=)`` on measured (zero-filled) k-space. Its own part
    is the hop ``pipeline -> measured``; the stages are those of ``reconstruct_kspace``,
    whose classical solvers the ``kspace`` walk covers, so no baseline here (its default
    five hold-out splits of every method would take seconds more)."""
    full = np.load(_full_kspace(folder))
    mask = np.zeros(full.shape[-1], bool)
    mask[::3] = True
    mask[29:35] = True
    np.save(folder / "k.npy", full * mask)  # measured: unsampled lines stored as zeros
    np.save(folder / "mask.npy", mask)
    prior = tiny_prior()
    return lambda: medldm.reconstruct(
        kspace=folder / "k.npy", mask=folder / "mask.npy", preset="mri_brain_4x",
        prior=prior, grid=GRID, solver_options=FAST, device="cpu", baseline=False,
    )  # fmt: skip


def _sinogram(folder: Path) -> Callable[[], object]:
    """``reconstruct_sinogram`` on a Data Exchange file of a box (60 views, 40 pixels)."""
    from medldm.physics.ct import ParallelBeamCT, sparse_view_angles

    angles = sparse_view_angles(60)
    box = torch.zeros(1, 1, 24, 24)
    box[..., 8:15, 9:17] = 0.05
    lines = ParallelBeamCT(24, angles, n_detectors=40, centre_offset=-3.0).A(box)[0, 0]
    counts = 1000.0 * np.exp(-lines.numpy().T)[:, None, :]
    path = folder / "scan.h5"
    with h5py.File(path, "w") as handle:
        handle["exchange/data"] = counts.astype(np.float32)
        handle["exchange/data_white"] = np.full((2, 1, 40), 1000.0, np.float32)
        handle["exchange/data_dark"] = np.zeros((2, 1, 40), np.float32)
        handle["exchange/theta"] = angles
    return lambda: medldm.recon.sinogram.reconstruct_sinogram(
        path, tv_weight=None, tv_iterations=30
    )


# each path: how to set it up, and rooms it must enter (so a walk that saw nothing fails)
PATHS = {
    "image": (_image, {"stages", "simulated_stages", "image_input", "presets", "result"}),
    "kspace": (_kspace, {"stages", "kspace_stages", "kspace_methods", "kspace_prior_grid"}),
    "kspace_api": (
        _kspace_api,
        {"measured", "stages", "kspace_stages", "kspace_methods", "kspace_prior_grid"},
    ),
    "sinogram": (_sinogram, {"stages", "sinogram_stages", "sinogram_geometry"}),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_walk_enters_each_room_once_without_climbing_back(path: str, tmp_path: Path) -> None:
    """Each room entered from one caller module; no climb-back (dispatch excepted)."""
    setup, expected = PATHS[path]
    walk = Tracer().run(setup(tmp_path))
    entered = {room.rsplit(".", 1)[1] for room in walk.rooms()}
    if not expected <= entered:
        pytest.fail(f"{path}: the walk missed rooms {sorted(expected - entered)}", pytrace=False)
    if walk.faults():  # the message lists each offending pair and its functions
        pytest.fail(f"{path}: {walk.describe()}", pytrace=False)


def _module_functions(module: str, source: str) -> dict[str, object]:
    """Run ``source`` as if it were the body of medldm module ``module`` (not imported)."""
    namespace: dict[str, object] = {"__name__": module}
    exec(compile(textwrap.dedent(source), f"<{module}>", "exec"), namespace)
    return namespace


def test_walk_reports_second_callers_climb_backs_and_excuses_dispatch() -> None:
    """The checker itself, on made-up modules: a room with two callers, a lower layer
    calling a function of a higher one, two rooms calling each other; a lower layer
    calling a method of an object handed down to it is dispatch, not a fault."""
    operator, physics = "medldm.recon.fake_operator", "medldm.physics.fake_solver"
    room_a, room_b = "medldm.recon.fake_a", "medldm.recon.fake_b"
    high = _module_functions(
        operator,
        """
        class Operator:
            def A(self, x):
                return x

        def helper(x):
            return x
        """,
    )
    low = _module_functions(
        physics,
        """
        def solve(operator, x):
            return operator.A(x)

        def climb(x):
            return helper(x)
        """,
    )
    source = """
        def use(x):
            return helper(x)

        def {0}(x):
            return {1}(x - 1) if x else x
        """
    a = _module_functions(room_a, source.format("a", "b"))
    b = _module_functions(room_b, source.format("b", "a"))
    low["helper"] = a["helper"] = b["helper"] = high["helper"]
    a["b"], b["a"] = b["b"], a["a"]

    def calls() -> None:
        low["solve"](high["Operator"](), 1.0)  # physics -> recon, a method: dispatch
        a["use"](1.0)  # fake_a -> fake_operator
        b["use"](1.0)  # fake_b -> fake_operator: a second caller module
        low["climb"](1.0)  # physics -> recon, a function: a climb-back
        a["a"](2)  # fake_a -> fake_b -> fake_a: calls back its caller

    walk = Tracer().run(calls)
    # physics -> fake_operator is not dispatch alone: climb -> helper is a plain function
    assert walk.dispatch == set()
    assert walk.multi_caller() == {operator: [physics, room_a, room_b]}
    assert set(walk.climb_backs()) == {
        (physics, operator, "layer"),
        (room_a, room_b, "calls back its caller"),
        (room_b, room_a, "calls back its caller"),
    }
    message = walk.describe()
    assert f"climb-back [layer]: {physics} -> {operator} (climb -> helper, solve -> A)" in message
    assert f"{room_a} (use -> helper)" in message and f"{room_b} -> {room_a} (b -> a)" in message


def test_dispatch_alone_is_not_a_fault() -> None:
    """A lower layer only calling methods of a higher layer's object: no fault."""
    high = _module_functions(
        "medldm.recon.fake_grid",
        """
        class Grid:
            def A(self, x):
                return x
        """,
    )
    low = _module_functions(
        "medldm.physics.fake_phase",
        """
        def phase(operator, x):
            return operator.A(x)
        """,
    )
    walk = Tracer().run(low["phase"], high["Grid"](), 1.0)
    assert walk.dispatch == {("medldm.physics.fake_phase", "medldm.recon.fake_grid")}
    assert walk.faults() == [], walk.describe()


def test_walk_message_names_the_functions() -> None:
    """The assertion message says which functions make each fault."""
    walk = Walk(
        calls={
            ("medldm.recon.pipeline", "medldm.recon.presets"): {("reconstruct", "load"): 1},
            ("medldm.recon.stages", "medldm.recon.presets"): {("run_stages", "resolve"): 2},
        }
    )
    assert walk.describe().splitlines()[1:] == [
        "room medldm.recon.presets entered from 2 caller modules:",
        "    medldm.recon.pipeline (reconstruct -> load)",
        "    medldm.recon.stages (run_stages -> resolve)",
    ]
