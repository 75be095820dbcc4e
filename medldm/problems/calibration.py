"""Calibrating a latent solver's posterior std on validation cases, conformal style.

Diffusion posteriors tend to be over-confident: ``estimate +- 1.645 std`` holds the truth
far less often than 90 % of the time. A per-preset scale fixes the half-width instead. For
each nominal level ``p`` (0.5, 0.9) the **std scale** ``s_p`` is the ``p``-quantile of
``|truth - estimate| / std`` over the foreground pixels of *validation* cases (split
conformal prediction on pixels; where the measurement observes pixels directly, as in
inpainting, only the foreground it leaves unobserved: :func:`uncertainty_roi`), so that
``estimate +- s_p std`` covers a fraction ``p`` of them. Every case weighs the same (each of
its pixels has weight ``1 / (n_cases * n_pixels)``, and ``s_p`` is the smallest score whose
cumulative weight reaches ``p``), so the *mean over cases* of the per-case coverage is ``p``
on the fitting cases (up to ties and the weight of one pixel), the way the benchmark
averages coverage. The central interval of the K samples is widened the same way around its
centre (``sample_scale``). With Gaussian errors ``s_p / z_p`` is one factor for every level;
a difference between levels says the error tails are not Gaussian.

A calibration holds for one solver preset on one operator, with one prior and one number
of samples K (its exact solver config is stored and must match), and only ever sees
validation cases: :func:`fit_calibration` refuses any case whose recorded split is not
``"validation"`` (the split comes from the data card, :func:`split_of_case`, not from
what the caller asked for). The fits of a ``(solver, operator)`` live in
``configs/calibration/<solver>_<operator>.yaml`` (:func:`save_calibration`,
:func:`load_calibrations`, :func:`find_calibration`), written by
``benchmarks/calibrate_uncertainty.py``, with the scales, the cases and their split, K,
the prior and the uncalibrated coverages beside the calibrated ones.

Example
-------
>>> import numpy as np, tempfile
>>> rng = np.random.default_rng(0)
>>> def case(name, split):  # a std that is half the true error spread: over-confident
...     truth = np.pad(rng.uniform(0.5, 1.0, (30, 30)), 1)
...     std = np.full(truth.shape, 0.05)
...     estimate = truth + 2 * std * rng.normal(size=truth.shape)
...     return CalibrationCase(name, split, truth, estimate, std)
>>> fit = fit_calibration([case("a", "validation"), case("b", "validation")],
...                       solver="latent_dds", operator="mri_4x")
>>> round(fit.levels[0.9].uncalibrated["std"], 2), round(fit.levels[0.9].calibrated["std"], 2)
(0.59, 0.9)
>>> round(fit.levels[0.9].std_scale / fit.levels[0.9].gaussian_scale, 1)  # std x about 2
2.0
>>> fit_calibration([case("c", "test")], solver="latent_dds", operator="mri_4x")
Traceback (most recent call last):
...
medldm.errors.InvalidInputError: calibration must be fitted on validation cases only, ...
>>> folder = tempfile.mkdtemp()
>>> path = save_calibration(fit, folder)
>>> find_calibration("latent_dds", "mri_4x", {}, directory=folder).levels[0.5].std_scale > 0
True
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medldm.errors import InvalidInputError
from medldm.metrics.uncertainty import (
    LEVELS,
    check_level,
    coverage,
    gaussian_quantile,
    level_name,
    sample_interval,
    uncertainty_scores,
)
from medldm.utils.files import atomic_write_text

#: The only split a calibration may be fitted on.
VALIDATION_SPLIT = "validation"
#: Config group (folder under configs/) of the calibration files.
CALIBRATION_GROUP = "calibration"
#: Solver options that do not change the samples (ignored when matching a config).
IGNORED_OPTIONS = ("progress",)


# --- the cases -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationCase:
    """One solved case: its ground truth, the solver's estimate, std and samples, and the
    split the case belongs to.

    Attributes
    ----------
    name:
        The case id (e.g. ``"IXI527/slice059"``).
    split:
        The split of the case's subject as the data card says (:func:`split_of_case`).
    ground_truth, estimate, std:
        Magnitude images of one shape (in the same units, e.g. the model range [0, 1]).
    samples:
        Optional ``(K, *shape)`` posterior samples (for the sample-quantile interval).
    dataset:
        The dataset label (e.g. ``"ixi_t1_validation"``).
    mask:
        The ROI; None: the ground truth's foreground (:func:`~medldm.metrics.foreground_mask`).
    """

    name: str
    split: str
    ground_truth: np.ndarray
    estimate: np.ndarray
    std: np.ndarray
    samples: np.ndarray | None = None
    dataset: str = ""
    mask: np.ndarray | None = None

    def roi(self) -> np.ndarray:
        from medldm.metrics.foreground import foreground_mask

        if self.mask is not None:
            return np.asarray(self.mask, bool)
        return foreground_mask(self.ground_truth)

    def label(self) -> dict[str, str]:
        return {"dataset": self.dataset, "case": self.name, "split": self.split}


def split_of_case(card_id: str, case_id: str) -> str:
    """The split (``"train"``, ``"validation"``, ``"test"``) that a case of a data card
    belongs to, from the card's split lists (IXI subjects, MedNIST index blocks, microscopy
    files); ``"unknown"`` when the card does not list it.

    >>> split_of_case("ixi_t1", "IXI527/slice059"), split_of_case("ixi_t1", "IXI603/slice059")
    ('validation', 'test')
    >>> split_of_case("mednist", "HeadCT/007200"), split_of_case("mednist", "HeadCT/008100")
    ('validation', 'test')
    """
    from medldm.data.cards import SPLITS, load_card
    from medldm.data.datasets import subjects

    card = load_card(card_id)
    head = case_id.split("/")[0]
    for split in SPLITS:
        listed = subjects(card, split)
        stems = {Path(name).stem.split(".")[0] for name in listed}
        if case_id in listed or head in listed or head.split(".")[0] in stems:
            return split
    return "unknown"


# --- the ROI ---------------------------------------------------------------------------------
#: The ROI of a case whose measurement observes no pixel directly (k-space, projections).
FOREGROUND_ROI = "foreground"
#: The ROI of a case whose measurement observes some pixels directly (inpainting): there
#: the data fixes the estimate, the std is about 0 and what error is left is the noise, so
#: a scale fitted over them diverges and says nothing about the region the prior fills.
UNOBSERVED_ROI = "unobserved foreground"


def observed_pixels(physics: Any, shape: Sequence[int]) -> np.ndarray | None:
    """The pixels ``physics`` observes directly, as a bool array broadcast to ``shape``
    (the solver layout of ``x``, e.g. ``(B, 1, H, W)``), or None when it observes none
    (the physics lacks the :data:`~medldm.physics.base.OBSERVED_MASK` capability).

    >>> import torch
    >>> from medldm.physics import Inpainting
    >>> mask = torch.ones(4, 4, dtype=torch.bool)
    >>> mask[1:3, 1:3] = False
    >>> observed = observed_pixels(Inpainting(mask), (2, 1, 4, 4))
    >>> tuple(observed.shape), int((~observed).sum())
    ((2, 1, 4, 4), 8)
    """
    from medldm.physics.base import OBSERVED_MASK

    if OBSERVED_MASK not in getattr(physics, "capabilities", ()):
        return None
    return np.broadcast_to((physics.mask.detach() > 0).cpu().numpy(), tuple(shape))


def uncertainty_roi(ground_truth: np.ndarray, observed: np.ndarray | None = None) -> np.ndarray:
    """The pixels an uncertainty is fitted and scored on: the ground truth's foreground
    (:func:`~medldm.metrics.foreground_mask`), less the ``observed`` ones (a bool array of
    the ground truth's size, any singleton axes; see :func:`observed_pixels`). May be
    empty (a box outside the head).

    >>> truth = np.pad(np.ones((4, 4)), 2)
    >>> observed = np.ones((8, 8), bool)
    >>> observed[3:5, :] = False
    >>> int(uncertainty_roi(truth).sum()), int(uncertainty_roi(truth, observed).sum())
    (16, 8)
    """
    from medldm.metrics.foreground import foreground_mask

    roi = foreground_mask(ground_truth)
    if observed is None:
        return roi
    return roi & ~np.asarray(observed, bool).reshape(roi.shape)


def roi_name(observed: Any) -> str:
    """:data:`UNOBSERVED_ROI` where some pixels are observed directly, else
    :data:`FOREGROUND_ROI`."""
    return FOREGROUND_ROI if observed is None else UNOBSERVED_ROI


# --- scales -------------------------------------------------------------------------------------
def _ratios(error: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """``error / spread`` with ``0/0 = 0`` and ``x/0 = inf``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(spread > 0, error / np.where(spread > 0, spread, 1.0), np.inf)
    return np.where((spread <= 0) & (error <= 0), 0.0, ratio)


def conformal_scale(scores: Sequence[np.ndarray], level: float) -> float:
    """The smallest score whose cumulative weight reaches ``level``, every group of scores
    (one per case) weighing the same.

    >>> conformal_scale([np.array([1.0, 2.0, 3.0, 4.0])], 0.5)
    2.0
    >>> conformal_scale([np.array([1.0]), np.array([5.0, 6.0, 7.0, 8.0])], 0.5)  # case 1: 0.5
    1.0
    """
    level = check_level(level)
    groups = [np.asarray(s, np.float64).ravel() for s in scores if np.size(s)]
    if not groups:
        raise InvalidInputError("no scores to calibrate on", fix="pass cases with a foreground")
    values = np.concatenate(groups)
    weights = np.concatenate([np.full(g.size, 1.0 / (len(groups) * g.size)) for g in groups])
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, level - 1e-12, side="left"))
    return float(values[order][min(index, values.size - 1)])


@dataclass
class LevelFit:
    """The fit at one nominal level ``p``.

    Attributes
    ----------
    level:
        ``p``.
    std_scale:
        Calibrated half-width in stds: the interval is ``estimate +- std_scale * std``.
    gaussian_scale:
        The uncalibrated half-width ``z_p`` (0.674 for 50 %, 1.645 for 90 %).
    sample_scale:
        Widening of the samples' central quantile interval around its centre (None
        without samples).
    uncalibrated, calibrated:
        Mean coverage over the fitting cases, ``{"std": ..., "samples": ...}``.
    """

    level: float
    std_scale: float
    gaussian_scale: float
    sample_scale: float | None = None
    uncalibrated: dict[str, float] = field(default_factory=dict)
    calibrated: dict[str, float] = field(default_factory=dict)

    @property
    def std_factor(self) -> float:
        """``std_scale / z_p``: the factor on the std that makes ``+- z_p std`` calibrated."""
        return self.std_scale / self.gaussian_scale


@dataclass
class StdCalibration:
    """A std calibration of one solver preset on one operator, prior and K, fitted on
    independent 2D slices (``case_dims`` 2) or on whole volumes solved as one (3)."""

    solver: str
    operator: str
    n_samples: int
    levels: dict[float, LevelFit]
    cases: list[dict[str, str]]
    solver_preset: str = ""
    solver_config: dict[str, Any] = field(default_factory=dict)
    prior: str = ""
    prior_fingerprint: str = ""
    precision: str = ""
    roi: str = FOREGROUND_ROI
    fitted_at: str = ""
    command: str = ""
    case_dims: int = 2

    @property
    def coupled(self) -> bool:
        """Whether it was fitted on whole volumes or slabs solved as one (``case_dims`` 3),
        where a preset's coupling along z acts, rather than on independent 2D slices."""
        return self.case_dims >= 3

    @property
    def scales(self) -> dict[float, float]:
        """``{level: std_scale}``."""
        return {level: fit.std_scale for level, fit in self.levels.items()}

    def std_scale(self, level: float) -> float:
        """The calibrated half-width in stds at ``level``: interval = estimate +- it * std."""
        return self._fit(level).std_scale

    def _fit(self, level: float) -> LevelFit:
        level = check_level(level)
        if level not in self.levels:
            raise InvalidInputError(
                f"no calibration at level {level} (fitted: {sorted(self.levels)})",
                fix="use a fitted level or refit with it",
            )
        return self.levels[level]

    def interval(
        self, estimate: np.ndarray, std: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated interval ``estimate -+ std_scale * std`` at ``level``."""
        half = self._fit(level).std_scale * np.asarray(std, np.float64)
        centre = np.abs(np.asarray(estimate))
        return centre - half, centre + half

    def sample_interval(self, samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The samples' central quantile interval, widened by ``sample_scale``."""
        scale = self._fit(level).sample_scale
        if scale is None:
            raise InvalidInputError(
                "this calibration was fitted without samples", fix="refit with the samples"
            )
        lower, upper = sample_interval(samples, level)
        centre, half = (lower + upper) / 2.0, (upper - lower) / 2.0
        return centre - scale * half, centre + scale * half

    def calibrated_std(self, std: np.ndarray, level: float = 0.9) -> np.ndarray:
        """``std * std_factor(level)``: the std whose Gaussian interval at ``level`` is the
        calibrated one (the map to show as "calibrated std")."""
        return np.asarray(std, np.float64) * self._fit(level).std_factor

    def describe(self) -> str:
        """One line: what was fitted on what."""
        datasets = sorted({c.get("dataset", "") for c in self.cases} - {""})
        scales = ", ".join(
            f"x{fit.std_scale:.3g} at {level_name(level)} %"
            for level, fit in sorted(self.levels.items())
        )
        prior = f", prior {self.prior}" if self.prior else ""
        on = f" of {', '.join(datasets)}" if datasets else ""
        roi = "" if self.roi == FOREGROUND_ROI else f" (ROI: {self.roi})"
        noun = "volume" if self.coupled else "case"
        return (
            f"{self.solver}/{self.operator} K={self.n_samples}{prior}: fitted on "
            f"{len(self.cases)} validation {noun}{'s' if len(self.cases) != 1 else ''}{on}{roi}; "
            f"half-width = std {scales}"
        )

    def label(self) -> str:
        """Short label for a results row, e.g. ``latent_dds_mri_4x.yaml K=4 prior
        brain_t1_2d: 6 validation cases of ixi_t1_validation`` (``volumes`` for a fit made
        on whole volumes)."""
        datasets = sorted({c.get("dataset", "") for c in self.cases} - {""})
        n = len(self.cases)
        prior = f" prior {self.prior}" if self.prior else ""
        on = f" of {', '.join(datasets)}" if datasets else ""
        noun = "volume" if self.coupled else "case"
        return (
            f"{self.solver}_{self.operator}.yaml K={self.n_samples}{prior}: "
            f"{n} validation {noun}{'s' if n != 1 else ''}{on}"
        )

    def matches(self, solver_config: Mapping[str, Any] | None, prior: Any = None) -> bool:
        """Whether this fit holds for a solver config (equal but for :data:`IGNORED_OPTIONS`)
        and prior (same checkpoint fingerprint when both are known, else same name)."""
        if solver_config is not None and plain_config(solver_config) != plain_config(
            self.solver_config
        ):
            return False
        if prior is not None:
            fingerprint = prior_fingerprint(prior)
            if fingerprint and self.prior_fingerprint:
                return fingerprint == self.prior_fingerprint
            name = str(getattr(prior, "name", "") or "")
            return not (name and self.prior) or name == self.prior
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_samples": int(self.n_samples),
            "solver_preset": self.solver_preset,
            "solver_config": plain_config(self.solver_config),
            "prior": self.prior,
            "prior_fingerprint": self.prior_fingerprint,
            "precision": self.precision,
            "roi": self.roi,
            "levels": [
                {
                    "level": float(fit.level),
                    "std_scale": float(fit.std_scale),
                    "gaussian_scale": round(float(fit.gaussian_scale), 6),
                    "std_factor": round(float(fit.std_factor), 6),
                    "sample_scale": None if fit.sample_scale is None else float(fit.sample_scale),
                    "uncalibrated_coverage": {k: float(v) for k, v in fit.uncalibrated.items()},
                    "calibrated_coverage": {k: float(v) for k, v in fit.calibrated.items()},
                }
                for _, fit in sorted(self.levels.items())
            ],
            "cases": [dict(c) for c in self.cases],
            "case_dims": int(self.case_dims),
            "fitted_at": self.fitted_at,
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, solver: str, operator: str, data: Mapping[str, Any]) -> StdCalibration:
        levels = {}
        for item in data.get("levels") or []:
            level = float(item["level"])
            levels[level] = LevelFit(
                level,
                float(item["std_scale"]),
                float(item.get("gaussian_scale") or gaussian_quantile(level)),
                None if item.get("sample_scale") is None else float(item["sample_scale"]),
                dict(item.get("uncalibrated_coverage") or {}),
                dict(item.get("calibrated_coverage") or {}),
            )
        return cls(
            solver,
            operator,
            int(data["n_samples"]),
            levels,
            [dict(c) for c in data.get("cases") or []],
            str(data.get("solver_preset") or ""),
            dict(data.get("solver_config") or {}),
            str(data.get("prior") or ""),
            str(data.get("prior_fingerprint") or ""),
            str(data.get("precision") or ""),
            str(data.get("roi") or FOREGROUND_ROI),
            str(data.get("fitted_at") or ""),
            str(data.get("command") or ""),
            int(data.get("case_dims") or 2),
        )


def plain_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A solver config as plain Python values, without :data:`IGNORED_OPTIONS` (an
    OmegaConf config is resolved first)."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)  # type: ignore[assignment]
    return {
        str(k): v
        for k, v in json.loads(json.dumps(dict(config), default=str)).items()
        if k not in IGNORED_OPTIONS
    }


def preset_solver_config(preset: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config a solver preset makes with ``options`` merged in (what a calibration is
    matched on); ``{}`` for a solver without a preset file (``registry:<name>``)."""
    from medldm.problems.configs import load_preset_config, merge_options, preset_path

    if not preset or preset.startswith("registry:") or preset_path("solver", preset) is None:
        return plain_config(dict(options or {}))
    merged = merge_options(load_preset_config("solver", preset), options)
    return plain_config(merged)


def prior_fingerprint(prior: Any) -> str:
    """First 12 hex digits of the SHA-256 of a prior's checkpoint file hashes (``""`` when
    the prior does not record them)."""
    meta = getattr(prior, "meta", None) or {}
    files = meta.get("files") if isinstance(meta, Mapping) else None
    if not files:
        return ""
    text = json.dumps(sorted((str(k), str(v)) for k, v in dict(files).items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _spatial_dims(image: np.ndarray) -> int:
    """The number of axes longer than one: 2 for a slice, 3 for a volume or slab."""
    return sum(int(size) > 1 for size in np.shape(image))


def fit_calibration(
    cases: Sequence[CalibrationCase],
    *,
    solver: str,
    operator: str,
    levels: Sequence[float] = LEVELS,
    solver_preset: str = "",
    solver_config: Mapping[str, Any] | None = None,
    prior: Any = None,
    precision: str = "",
    command: str = "",
    roi: str = FOREGROUND_ROI,
) -> StdCalibration:
    """Fit the std scales on validation cases (see the module docstring); ``roi`` names
    the cases' ROI (:func:`roi_name`), stored with the fit.

    Raises InvalidInputError when a case is not from the validation split (naming the
    cases), when cases disagree on K, or when a scale comes out infinite (a zero std where
    the error is not zero, on more than ``1 - level`` of the pixels).
    """
    cases = list(cases)
    if not cases:
        raise InvalidInputError("no cases to calibrate on", fix="pass validation cases")
    wrong = [f"{c.dataset or '?'}:{c.name} ({c.split})" for c in cases if c.split != "validation"]
    if wrong:
        raise InvalidInputError(
            f"calibration must be fitted on validation cases only, got {len(wrong)} from other "
            f"splits: {', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}",
            fix="fit on the validation split; the test split is for scoring the calibration",
        )
    counts = {None if c.samples is None else int(np.shape(c.samples)[0]) for c in cases}
    if len(counts) > 1:
        raise InvalidInputError(f"the cases hold different numbers of samples: {counts}")
    n_samples = counts.pop()
    configured = dict(solver_config or {}).get("n_samples")
    if n_samples is None:
        n_samples = int(configured or 0)
    elif configured is not None and int(configured) != n_samples:
        raise InvalidInputError(
            f"the cases hold {n_samples} samples but the solver config says {configured}"
        )

    prepared = []
    for case in cases:
        region = case.roi()
        if not region.any():
            raise InvalidInputError(
                f"case {case.name} has an empty ROI: nothing to fit on",
                fix="leave out cases whose foreground the measurement observes completely",
            )
        truth = np.abs(np.asarray(case.ground_truth, np.float64))
        estimate = np.abs(np.asarray(case.estimate)).astype(np.float64)
        std = np.abs(np.asarray(case.std, np.float64)).reshape(truth.shape)
        estimate = estimate.reshape(truth.shape)
        samples = None
        if case.samples is not None:
            samples = np.abs(np.asarray(case.samples)).astype(np.float64)
            samples = samples.reshape(samples.shape[0], *truth.shape)
        prepared.append((truth, estimate, std, samples, region))

    fits: dict[float, LevelFit] = {}
    for level in levels:
        level = check_level(level)
        z = gaussian_quantile(level)
        std_scores = [_ratios(np.abs(t - e)[r], s[r]) for t, e, s, _, r in prepared]
        std_scale = conformal_scale(std_scores, level)
        sample_scale = None
        sample_bounds = []
        if all(p[3] is not None for p in prepared):
            sample_scores = []
            for t, _, _, samples, r in prepared:
                lower, upper = sample_interval(samples, level)
                sample_bounds.append((lower, upper))
                centre, half = (lower + upper) / 2.0, (upper - lower) / 2.0
                sample_scores.append(_ratios(np.abs(t - centre)[r], half[r]))
            sample_scale = conformal_scale(sample_scores, level)
        for name, value in (("std", std_scale), ("samples", sample_scale)):
            if value is not None and not math.isfinite(value):
                raise InvalidInputError(
                    f"the {name} interval cannot be calibrated at level {level}: its width is "
                    f"zero on more than {1 - level:.0%} of the pixels where the error is not",
                    fix="use more posterior samples (n_samples >= 2)",
                )
        uncalibrated = {"std": [], "samples": []}
        calibrated = {"std": [], "samples": []}
        for index, (t, e, s, _, r) in enumerate(prepared):
            uncalibrated["std"].append(coverage(t, e - z * s, e + z * s, mask=r))
            calibrated["std"].append(coverage(t, e - std_scale * s, e + std_scale * s, mask=r))
            if sample_bounds:
                lower, upper = sample_bounds[index]
                centre, width = (lower + upper) / 2.0, (upper - lower) / 2.0
                uncalibrated["samples"].append(coverage(t, lower, upper, mask=r))
                calibrated["samples"].append(
                    coverage(
                        t, centre - sample_scale * width, centre + sample_scale * width, mask=r
                    )
                )
        fits[level] = LevelFit(
            level,
            std_scale,
            z,
            sample_scale,
            {k: _mean(v) for k, v in uncalibrated.items() if v},
            {k: _mean(v) for k, v in calibrated.items() if v},
        )
    config = plain_config(solver_config)
    return StdCalibration(
        solver=solver,
        operator=operator,
        n_samples=int(n_samples),
        levels=fits,
        cases=[c.label() for c in cases],
        solver_preset=solver_preset,
        solver_config=config,
        prior=str(getattr(prior, "name", prior or "") or ""),
        prior_fingerprint=prior_fingerprint(prior),
        precision=precision or str(getattr(prior, "precision", "") or ""),
        roi=roi,
        fitted_at=_now(),
        command=command,
        case_dims=max(_spatial_dims(t) for t, *_ in prepared),
    )


# --- files ------------------------------------------------------------------------------
def calibration_dir(directory: str | Path | None = None) -> Path:
    """``directory``, or ``configs/calibration`` of :func:`~medldm.problems.configs.config_dir`."""
    if directory is not None:
        return Path(directory)
    from medldm.problems.configs import config_dir

    return config_dir() / CALIBRATION_GROUP


def calibration_path(solver: str, operator: str, directory: str | Path | None = None) -> Path:
    """``<directory>/<solver>_<operator>.yaml``."""
    return calibration_dir(directory) / f"{solver}_{operator}.yaml"


def load_calibrations(
    solver: str, operator: str, directory: str | Path | None = None
) -> list[StdCalibration]:
    """Every fit stored for ``(solver, operator)`` (empty when there is no file)."""
    path = calibration_path(solver, operator, directory)
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("fits", []), list):
        raise InvalidInputError(
            "a calibration file must be a mapping with a list of fits",
            path=path,
            fix="rerun benchmarks/calibrate_uncertainty.py",
        )
    return [StdCalibration.from_dict(solver, operator, fit) for fit in data.get("fits") or []]


def find_calibration(
    solver: str,
    operator: str,
    solver_config: Mapping[str, Any] | None,
    *,
    prior: Any = None,
    directory: str | Path | None = None,
) -> StdCalibration | None:
    """The stored fit for this solver config (and prior), or None: the std is then
    uncalibrated. A config that differs in anything but :data:`IGNORED_OPTIONS` (another
    K, another step count) has no calibration."""
    for fit in load_calibrations(solver, operator, directory):
        if fit.matches(solver_config, prior):
            return fit
    return None


_HEADER = (
    "# Std calibration of {solver} on {operator}: fitted on VALIDATION cases only by\n"
    "# benchmarks/calibrate_uncertainty.py (rerun it, do not edit). One fit per solver config\n"
    "# (K = n_samples) and prior; medldm.problems.calibration reads it. A fit's std_scale is\n"
    "# the calibrated half-width in stds: interval = estimate +- std_scale * std.\n"
)


def save_calibration(calibration: StdCalibration, directory: str | Path | None = None) -> Path:
    """Add (or replace: same solver config and prior) a fit in its ``(solver, operator)``
    file; written atomically. Returns the path."""
    path = calibration_path(calibration.solver, calibration.operator, directory)
    kept = [
        fit
        for fit in load_calibrations(calibration.solver, calibration.operator, directory)
        if not (
            plain_config(fit.solver_config) == plain_config(calibration.solver_config)
            and fit.prior_fingerprint == calibration.prior_fingerprint
            and fit.prior == calibration.prior
        )
    ]
    fits = sorted([*kept, calibration], key=lambda f: (f.n_samples, f.solver_preset))
    data = {
        "solver": calibration.solver,
        "operator": calibration.operator,
        "fits": [fit.to_dict() for fit in fits],
    }
    header = _HEADER.format(solver=calibration.solver, operator=calibration.operator)
    text = header + yaml.safe_dump(data, sort_keys=False, width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text, overwrite=True)


# --- scoring ------------------------------------------------------------------------------
def score_uncertainty(
    estimate: np.ndarray,
    ground_truth: np.ndarray,
    std: np.ndarray,
    samples: np.ndarray | None = None,
    *,
    calibration: StdCalibration | None = None,
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """The uncertainty columns of one case (:func:`~medldm.metrics.uncertainty_scores`
    over the ground truth's foreground), with ``coverage_NN_calibrated`` and
    ``std_calibration`` (:meth:`StdCalibration.label`, ``""`` when uncalibrated)."""
    scales = None if calibration is None else calibration.scales
    scores: dict[str, Any] = uncertainty_scores(
        estimate, ground_truth, std, samples, mask=mask, scales=scales
    )
    scores["std_calibration"] = "" if calibration is None else calibration.label()
    return scores
