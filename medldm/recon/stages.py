"""The stages every reconstruction goes through, in one order, whatever the input.

1. ``read``: the input, checked. Images: loaded, one image, RAS+ voxel order; measured
   k-space: the raw data, its sampling mask and reference; sinograms: the Data Exchange
   file, flat/dark corrected, ``-log``.
2. ``model_view``: the input as the solvers see it. Images: the slab, intensities scaled to
   the prior's range, the grid plan; k-space: intensities fitted to the zero-filled image,
   the grid plan; sinograms: the rotation centre and the axis-centred window.
3. ``measure``: the measurement ``y`` and its operator. Images: simulated (seeded);
   k-space: the coil maps, the measured operator and the scaled k-space; sinograms: the
   parallel-beam operator of the window.
4. ``solve``: every method on the same ``y``. Images: the LDM solver and the baseline;
   k-space: the LDM solver (on the prior's grid) and the classical solvers; sinograms:
   FBP and TV.
5. ``to_input_grid``: the reconstructions on the input's grid (and, for measured data, in
   its units).
6. ``score``: ``metrics.json``. Images: PSNR/SSIM against the input, uncertainty;
   k-space: data residuals, scores against a reference, the k-space hold-out; sinograms:
   data residuals and the CT prior's verdict.
7. ``result``: a :class:`~medldm.recon.result.ReconResult` (images, k-space) or a
   :class:`~medldm.recon.result.SinogramResult`, in the input's units.

The stages of one kind are the methods of one object (:class:`Stages`, e.g.
:class:`~medldm.recon.simulated_stages.SimulatedImage`). :func:`run_stages` makes that
object from the entry point's options (the object sets itself up: the preset, the device,
the prior), calls the stages in this order, each with what all earlier stages made, and
adds the run's ``total_seconds`` to the metrics. The last stage, **write**, is the
caller's: ``medldm-recon`` writes every run
(:func:`medldm.recon.outputs.write_run_folder`,
:func:`medldm.recon.sinogram_outputs.write_sinogram_run`); the Python API returns the
result in memory.

Calls go one way: the entry points (:mod:`~medldm.recon.pipeline`,
:mod:`~medldm.recon.measured`, :mod:`~medldm.recon.sinogram`) pass a kind and its options
to :func:`run_stages`, which makes the kind and calls its stages, which call the helpers
below them; each module is entered from one caller and nothing calls back up.

Example
-------
>>> class Echo:  # a toy kind: each stage records its name
...     def read(self): return ["read"]
...     def model_view(self, read): return [*read, "model_view"]
...     def measure(self, read, view): return [*view, "measure"]
...     def solve(self, read, view, measurement): return [*measurement, "solve"]
...     def to_input_grid(self, read, view, measurement, solved):
...         return [*solved, "to_input_grid"]
...     def score(self, read, view, measurement, solved, images):
...         return {"stages": [*images, "score"]}
...     def result(self, read, view, measurement, solved, images, metrics): return metrics
>>> result = run_stages(Echo, started=time.perf_counter())
>>> result["stages"] == list(STAGES[:-1]), sorted(result)
(True, ['stages', 'total_seconds'])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

#: The stages, in the order :func:`run_stages` runs them (``write`` is the caller's).
STAGES = ("read", "model_view", "measure", "solve", "to_input_grid", "score", "result")


class Stages(Protocol):
    """One kind of input's stages. Each stage takes what every earlier stage made, in
    stage order, and returns what it makes."""

    def read(self) -> Any:
        """The input as read (and checked)."""

    def model_view(self, read: Any) -> Any:
        """The input laid out, scaled and gridded the way the solvers see it."""

    def measure(self, read: Any, view: Any) -> Any:
        """The measurement ``y`` and its operator: simulated, or the measured data."""

    def solve(self, read: Any, view: Any, measurement: Any) -> Any:
        """Every method's reconstruction of the same measurement."""

    def to_input_grid(self, read: Any, view: Any, measurement: Any, solved: Any) -> Any:
        """The reconstructions on the input's grid."""

    def score(
        self, read: Any, view: Any, measurement: Any, solved: Any, images: Any
    ) -> dict[str, Any]:
        """``metrics.json`` (but ``total_seconds``)."""

    def result(
        self,
        read: Any,
        view: Any,
        measurement: Any,
        solved: Any,
        images: Any,
        metrics: dict[str, Any],
    ) -> Any:
        """What the caller gets (and may write)."""


def run_stages(kind: Callable[..., Stages], started: float, **options: Any) -> Any:
    """Make one kind's stages, ``kind(**options)``, and run them in the order of
    :data:`STAGES`; ``started`` (``time.perf_counter()`` when the call began) times the
    whole run, the kind's setup included."""
    stages = kind(**options)
    read = stages.read()
    view = stages.model_view(read)
    measurement = stages.measure(read, view)
    solved = stages.solve(read, view, measurement)
    images = stages.to_input_grid(read, view, measurement, solved)
    metrics = stages.score(read, view, measurement, solved, images)
    metrics["total_seconds"] = round(time.perf_counter() - started, 3)
    return stages.result(read, view, measurement, solved, images, metrics)
