"""medldm: latent-diffusion priors for medical and scientific image reconstruction.

The package reads images with their geometry (:mod:`medldm.io`), simulates measurements
(:mod:`medldm.physics`), reconstructs them with classical and latent-diffusion solvers
(:mod:`medldm.solvers`, priors in :mod:`medldm.models`), benchmarks them
(:mod:`medldm.bench`), and writes results back in the input's own format.
:func:`reconstruct` runs a whole reconstruction preset (what ``medldm-recon`` does).

Example
-------
>>> import medldm
>>> medldm.__version__
'0.1.0'
>>> callable(medldm.reconstruct)
True
"""

from typing import Any

from medldm._version import __version__
from medldm.errors import MedLDMError

__all__ = ["MedLDMError", "__version__", "reconstruct"]


def reconstruct(image_or_path: Any = None, preset: Any = "mri_brain_4x", **options: Any) -> Any:
    """Reconstruct an image with a preset: see :func:`medldm.recon.pipeline.reconstruct`.

    Returns a :class:`~medldm.recon.result.ReconResult` (reconstruction, std, baseline,
    metrics, geometry); write it with :func:`medldm.recon.outputs.write_run_folder`.
    """
    from medldm.recon.pipeline import reconstruct as _reconstruct

    return _reconstruct(image_or_path, preset, **options)
