"""medldm: latent-diffusion priors for medical and scientific image reconstruction.

The package reads images with their geometry (:mod:`medldm.io`), describes the
datasets it trains and benchmarks on (:mod:`medldm.data`), and writes results
back in the input's own format.

Example
-------
>>> import medldm
>>> medldm.__version__
'0.1.0'
"""

from medldm.errors import MedLDMError

__version__ = "0.1.0"

__all__ = ["MedLDMError", "__version__"]
