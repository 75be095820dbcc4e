"""Benchmark cases: ground-truth images in the prior's space, from a named dataset or any
folder of images (:class:`CaseSource`), one :class:`Case` each (or a :class:`CaseFailure`
for an input that cannot be read, so a batch goes on).

Modules: :mod:`~medldm.bench.cases.case` (the records), :mod:`~medldm.bench.cases.source`
(what a ``configs/data`` preset instantiates), :mod:`~medldm.bench.cases.cards` (the data
cards), :mod:`~medldm.bench.cases.folders` (a user's folder) and
:mod:`~medldm.bench.cases.from_images` (image -> cases through the model view).
"""

from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.cases.source import CaseSource

__all__ = ["Case", "CaseFailure", "CaseSource"]
