"""Tune the LDM solvers per operator on VALIDATION cases, and write their presets.

The prior was trained on the training subjects, so tuning on training slices would flatter
it (the prior has seen those very images); the test subjects are never touched. For each
operator (``configs/physics/<operator>.yaml``) the central axial slices of the IXI
validation subjects (``ixi_t1`` card) are measured exactly as the benchmark does (seed
``i`` for case ``i``), every grid point of the solver is run and scored with the
benchmark's scoring, and the grid point written to
``configs/solver/<solver>_<operator>.yaml`` (with the grid and its scores in the header) is
the one with the best mean SSIM among those within ``--psnr-tolerance`` dB (0.05, on the
unrounded means) of the best mean PSNR: differences of a few hundredths of a dB are noise
on three to six validation slices, while PSNR alone once chose a preset that gave up 0.05
SSIM for 0.04 dB. ``--rule above-reference`` instead takes the best mean PSNR among the
points whose mean SSIM reaches the best classical reference's, for a target stated as
"better PSNR, not worse SSIM". ``--rule match-current`` is for speed: the grid starts
from the operator's current preset, which is scored on the same measurements, and the
chosen point is the one with the fewest network calls per case (``n_steps x n_samples``)
whose mean PSNR is within ``--match-psnr`` dB (0.1) and mean SSIM within ``--match-ssim``
(0.005) of it; when none is, the preset is left as it is (the grid is only the ``--grid``
axes, every other option as in the preset). The classical references
(``--references``, default TV and l1-wavelet with their ``<solver>_<operator>`` presets)
are scored on the same measurements and written to the header, so the preset shows the
margin it was tuned for. ``--max-calls N`` is a compute budget: every point is scored and
listed, but only those with at most ``N`` network calls per case can be chosen; with
``--skip-over-budget`` the points over it are not run at all (a grid such as
``n_samples=4,6,8 n_steps=6,8,12`` then scores only the pairs within the budget).

    .venv/bin/python benchmarks/tune_latent.py --prior brain_t1_2d \\
        --operators mri_4x mri_8x inpaint_box --solver latent_dds --slices 2

Grids (``GRIDS``): latent_dds over ``dc_weight`` x ``start_fraction`` x
``final_tv_weight`` (0 or the operator's tuned TV weight); with ``--card
brain_mri_native`` the presets read and written are the ``<solver>_<operator>_native`` ones
(tuned for brain MRI at the scanner's resolution); the others over their main step
size. ``--grid key=v1,v2`` replaces an axis (values: numbers, ``tv`` or ``tv*f`` for f
times the TV weight, ``l1`` or ``l1*f`` for the l1-wavelet preset's); a key the solver
does not take is refused before any case runs.
``--set`` fixes other parameters for the whole grid (they are written to the preset too);
the rest come from ``configs/solver/<solver>.yaml``. ``--precision`` of the network calls
defaults to auto (bf16 where the processor runs it natively), as the benchmark's. The
brain_t1_2d presets were made by::

    .venv/bin/python benchmarks/tune_latent.py --prior brain_t1_2d --operators mri_4x mri_8x \\
        --slices 2 --set n_steps=50 n_samples=4 final_dc_weight=0.003 \\
        --grid dc_weight=0.005,0.02 start_fraction=1.0 final_tv_weight=0,tv*0.5,tv
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune_classical import (
    _only_cases,
    psnr_ssim,
    simulate,
    write_preset,
)

from medldm.bench.cases.cards import card_cases
from medldm.errors import InvalidInputError
from medldm.models.prior import load_prior
from medldm.problems.configs import config_dir, load_preset_config, solver_for_operator

#: "tv" stands for the operator's tuned TV weight (configs/solver/tv_<operator>.yaml), "tv*f"
#: for f times it.
GRIDS: dict[str, dict[str, Sequence[float | str]]] = {
    "latent_dds": {
        "dc_weight": (0.02, 0.1),
        "start_fraction": (1.0, 0.5),
        "final_tv_weight": (0.0, "tv"),
    },
    "latent_dps": {"step_size": (0.3, 1.0, 3.0)},
    "psld": {"step_size": (0.3, 1.0, 3.0)},
    "resample": {"dc_weight": (0.01, 0.05, 0.2)},
    "latent_daps": {"lr": (0.1, 0.5, 1.0)},
}


#: Cards whose presets are written and read with a domain suffix (``<solver>_<operator>_native``).
CARD_DOMAINS = {"brain_mri_native": "native"}

CARD_LABELS = {
    "ixi_t1": "IXI",
    "brain_mri_native": "brain_mri_native (patient12, native grid)",
    "mednist": "MedNIST CT",
    "microscopy": "microscopy",
}


def validation_cases(card: str, slices: int, n: int = 6) -> list:
    """IXI: the central ``slices`` of each validation subject; MedNIST CT: ``n`` images
    spread over the HeadCT/ChestCT/AbdomenCT validation blocks; microscopy: the central
    256 x 256 crop of the validation image (maize_clsm.tif), as the benchmark crops its test
    image; brain_mri_native: the central ``slices`` of each validation series (T1W, T2W,
    FLAIR of patient12's two studies) on their own matrix, as the native suite takes them."""
    if card == "ixi_t1":
        return list(_only_cases(card_cases("ixi_t1", "validation", slices=slices, size=128)))
    if card == "brain_mri_native":
        return list(_only_cases(card_cases("brain_mri_native", "validation", slices=slices)))
    if card == "microscopy":
        return list(_only_cases(card_cases("microscopy", "validation", size=256)))
    from tune_classical import _spread

    cases = [
        c
        for c in _only_cases(card_cases("mednist", "validation"))
        if c.case_id.split("/")[0] in ("HeadCT", "ChestCT", "AbdomenCT")
    ]
    # MedNIST has a few blank (constant) images, e.g. HeadCT/007200: no PSNR is defined on them
    blank = [c for c in cases if float(np.ptp(c.image)) == 0.0]
    if blank:
        print(f"  skipped {len(blank)} blank validation images, e.g. {blank[0].case_id}")
    return _spread([c for c in cases if float(np.ptp(c.image)) > 0.0], n)


def choose(rows: Sequence[tuple[tuple, float, float]], psnr_tolerance: float) -> int:
    """Index of the row ``(values, psnr_db, ssim)`` with the best SSIM among the rows within
    ``psnr_tolerance`` dB of the best PSNR (ties to the higher PSNR).

    >>> choose([((0,), 20.00, 0.40), ((1,), 19.97, 0.45), ((2,), 19.0, 0.60)], 0.05)
    1
    >>> choose([((0,), 20.00, 0.40), ((1,), 19.97, 0.45)], 0.0)
    0
    """
    if psnr_tolerance < 0:
        raise ValueError(f"the PSNR tolerance must be >= 0 dB, got {psnr_tolerance}")
    if not rows:
        raise ValueError("no grid points to choose from")
    best_psnr = max(row[1] for row in rows)
    near = [i for i, row in enumerate(rows) if row[1] >= best_psnr - psnr_tolerance]
    return max(near, key=lambda i: (rows[i][2], rows[i][1]))


def choose_above_reference(
    rows: Sequence[tuple[tuple, float, float]], reference_ssim: float, psnr_tolerance: float
) -> tuple[int, bool]:
    """``(index, met)``: the row with the best PSNR among those whose mean SSIM is at least
    ``reference_ssim`` (a classical solver's on the same cases); ``met`` is False, and the
    :func:`choose` rule decides, when no row reaches it.

    This is the rule for a target stated as "better in PSNR and not worse in SSIM than the
    best classical solver".

    >>> rows = [((0,), 24.46, 0.7278), ((1,), 24.30, 0.7350), ((2,), 23.90, 0.7400)]
    >>> choose_above_reference(rows, 0.7300, 0.05)
    (1, True)
    >>> choose_above_reference(rows, 0.7500, 0.05)
    (0, False)
    """
    above = [i for i, row in enumerate(rows) if row[2] >= reference_ssim]
    if not above:
        return choose(rows, psnr_tolerance), False
    return max(above, key=lambda i: (rows[i][1], rows[i][2])), True


def current_options(preset: str) -> dict[str, Any]:
    """The options of solver preset ``preset`` (``configs/solver/<preset>.yaml``)."""
    options = dict(load_preset_config("solver", preset))
    options.pop("_target_", None)
    return options


def score_solver(solver: Any, measurements: Sequence[Any], prior: Any) -> tuple[float, float]:
    """Mean PSNR dB / SSIM of ``solver`` over ``measurements`` (seed of each for its sampler)."""
    scores = []
    for m in measurements:
        generator = torch.Generator(device=prior.device).manual_seed(m.seed)
        y = m.y.to(prior.device)
        estimate = solver.solve(y, m.physics.to(prior.device), prior, generator=generator).estimate
        scores.append(psnr_ssim(estimate.cpu(), m.case))
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def network_calls(params: dict[str, Any]) -> int:
    """Network evaluations per case of a latent_dds-like option set: steps x samples."""
    return int(params.get("n_steps", 1)) * int(params.get("n_samples", 1))


def within_budget(costs: Sequence[int], max_calls: int | None) -> list[int]:
    """Indices of the grid points whose network calls per case are within ``max_calls``
    (all of them when it is ``None``).

    >>> within_budget([24, 48, 96], 48), within_budget([24, 48], None)
    ([0, 1], [0, 1])
    """
    return [i for i, cost in enumerate(costs) if max_calls is None or cost <= max_calls]


def runs_point(params: dict[str, Any], max_calls: int | None, skip_over_budget: bool) -> bool:
    """Whether a grid point runs: every one does, except, with ``--skip-over-budget``, those
    over ``max_calls`` network calls per case.

    >>> point = {"n_steps": 12, "n_samples": 8}  # 96 calls
    >>> runs_point(point, 48, True), runs_point(point, 48, False), runs_point(point, 96, True)
    (False, True, True)
    """
    return not (skip_over_budget and max_calls is not None and network_calls(params) > max_calls)


def point_mark(index: int, chosen: int, allowed: Sequence[int]) -> str:
    """The header's note after grid point ``index``: chosen, over the budget, or nothing.

    >>> point_mark(1, 1, [0, 1]), point_mark(2, 1, [0, 1]), point_mark(0, 1, [0, 1])
    ('  <- chosen', '  (over the budget)', '')
    """
    if index == chosen:
        return "  <- chosen"
    return "" if index in allowed else "  (over the budget)"


def choose_cheapest_match(
    rows: Sequence[tuple[tuple, float, float]],
    costs: Sequence[int],
    current: tuple[float, float],
    psnr_tolerance: float,
    ssim_tolerance: float,
) -> int | None:
    """Index of the cheapest row (``costs``, ties to the higher PSNR) whose mean PSNR is at
    least ``current[0] - psnr_tolerance`` and mean SSIM at least ``current[1] -
    ssim_tolerance``; ``None`` when no row is.

    >>> rows = [((50,), 24.60, 0.755), ((10,), 24.55, 0.754), ((6,), 24.40, 0.754)]
    >>> choose_cheapest_match(rows, [200, 40, 24], (24.60, 0.755), 0.1, 0.005)
    1
    >>> choose_cheapest_match(rows, [200, 40, 24], (25.0, 0.80), 0.1, 0.005) is None
    True
    """
    matching = [
        i
        for i, row in enumerate(rows)
        if row[1] >= current[0] - psnr_tolerance and row[2] >= current[1] - ssim_tolerance
    ]
    if not matching:
        return None
    return min(matching, key=lambda i: (costs[i], -rows[i][1]))


def reference_scores(
    names: Sequence[str],
    operator: str,
    measurements: Sequence[Any],
    domain: str | None = None,
) -> dict[str, tuple[float, float]]:
    """Mean PSNR dB / SSIM of classical solvers (``<name>_<operator>_<domain>.yaml``, else
    ``<name>_<operator>.yaml``, else ``<name>.yaml``) on the same measurements, keyed by the
    preset used."""
    out = {}
    for name in names:
        solver, source = solver_for_operator(name, operator, domain=domain)
        scores = [psnr_ssim(solver.solve(m.y, m.physics).estimate, m.case) for m in measurements]
        out[source] = (
            float(np.mean([s[0] for s in scores])),
            float(np.mean([s[1] for s in scores])),
        )
        print(f"{operator} reference {source}: {out[source][0]:.2f} dB / {out[source][1]:.4f}")
    return out


#: Grid values that stand for a classical preset's weight on the operator (``tv``, ``l1``)
#: or a multiple of it (``tv*0.5``, ``l1*2``).
REFERENCE_WEIGHTS = {"tv": "tv", "l1": "l1_wavelet"}


def _is_reference(text: object) -> bool:
    return isinstance(text, str) and any(
        text == key or text.startswith(f"{key}*") for key in REFERENCE_WEIGHTS
    )


def _resolve_reference(value: float | str, weights: dict[str, float]) -> float | str:
    """``"tv"`` / ``"l1"`` -> the operator's TV / l1-wavelet weight, ``"tv*f"`` -> f times
    it; numbers and other text unchanged.

    >>> _resolve_reference("l1*2", {"tv": 0.001, "l1": 0.005}), _resolve_reference(3, {})
    (0.01, 3)

    ``l1`` is the ``weight`` of the operator's ``l1_wavelet`` preset whatever its transform;
    the anchored wavelet step (``final_wavelet_weight``) always uses 2-level Haar, so the
    token is in the same units only where that preset does too (the native single-coil
    ones).
    """
    if _is_reference(value):
        key, _, factor = str(value).partition("*")
        return weights[key] * (float(factor) if factor else 1.0)
    return value


def reference_weights(operator: str, domain: str | None) -> dict[str, float]:
    """The ``weight`` of each classical preset a grid value may stand for."""
    weights = {}
    for key, solver in REFERENCE_WEIGHTS.items():
        source = solver_for_operator(solver, operator, domain=domain)[1]
        weights[key] = float(load_preset_config("solver", source).get("weight", float("nan")))
    return weights


def parse_grid(
    items: Sequence[str], solver: str, *, defaults: bool = True
) -> dict[str, Sequence[float | str]]:
    """``GRIDS[solver]`` (``defaults=False``: no axes) with ``key=v1,v2`` items replacing
    (or adding) axes; values are numbers, ``tv`` / ``tv*f`` (see ``GRIDS``) or other text
    for string options.

    >>> parse_grid(["sampler=ddim,dpm++2m", "n_steps=10,15"], "latent_dds", defaults=False)
    {'sampler': ('ddim', 'dpm++2m'), 'n_steps': (10, 15)}
    """
    grid = dict(GRIDS[solver]) if defaults else {}
    for item in items:
        key, _, listed = item.partition("=")
        texts = [text.strip() for text in listed.split(",") if text.strip()]
        if not key or not texts:
            raise SystemExit(f"--grid takes key=v1,v2,...; got {item!r}")
        values: list[float | str] = []
        for text in texts:
            if _is_reference(text):
                values.append(text)
                continue
            try:
                values.append(int(text) if text.lstrip("-").isdigit() else float(text))
            except ValueError:
                values.append(text)  # a string option (e.g. sampler=ddim,dpm++2m)
        grid[key] = tuple(values)
    return grid


def set_keys_on_grid(items: Sequence[str], axes: Sequence[str]) -> list[str]:
    """The ``--set key=value`` keys that are also grid axes (the axis would win silently).

    >>> set_keys_on_grid(["n_steps=50", "dc_weight=0.005"], ["dc_weight", "start_fraction"])
    ['dc_weight']
    """
    return [key for key in (item.split("=", 1)[0] for item in items) if key in axes]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default="brain_t1_2d")
    parser.add_argument("--solver", default="latent_dds", choices=sorted(GRIDS))
    parser.add_argument("--operators", nargs="+", default=["mri_4x", "mri_8x", "inpaint_box"])
    parser.add_argument("--slices", type=int, default=2, help="central slices per subject")
    parser.add_argument(
        "--card",
        default="ixi_t1",
        choices=list(CARD_LABELS),
        help="validation cases: IXI subjects, the clinical native-resolution series, the "
        "MedNIST CT blocks or the microscopy image",
    )
    parser.add_argument("--cases", type=int, default=6, help="MedNIST validation images")
    parser.add_argument("--set", nargs="*", default=[], help="fixed overrides key=value")
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        help="grid axes key=v1,v2,... replacing the default ones (values: numbers, tv, tv*f, "
        "l1, l1*f)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="of the network calls; auto (bf16 where native) as the benchmark's default",
    )
    parser.add_argument(
        "--psnr-tolerance",
        type=float,
        default=0.05,
        help="dB below the best mean PSNR within which the best mean SSIM is chosen",
    )
    parser.add_argument(
        "--references",
        nargs="*",
        default=["tv", "l1_wavelet"],
        help="classical solvers scored on the same validation measurements, for the header "
        "and --rule above-reference (none: skip them)",
    )
    parser.add_argument(
        "--rule",
        default="near-best-psnr",
        choices=["near-best-psnr", "above-reference", "match-current"],
        help="near-best-psnr: the best SSIM within --psnr-tolerance of the best PSNR; "
        "above-reference: the best PSNR among points whose SSIM reaches the best reference "
        "SSIM (else near-best-psnr); match-current: the fewest network calls within "
        "--match-psnr / --match-ssim of the current preset (else no change)",
    )
    parser.add_argument(
        "--max-calls",
        type=int,
        default=None,
        help="a compute budget: only points with at most this many network calls per case "
        "(n_steps x n_samples) can be chosen; the others are scored and listed",
    )
    parser.add_argument(
        "--skip-over-budget",
        action="store_true",
        help="with --max-calls: do not run the grid points over the budget",
    )
    parser.add_argument("--match-psnr", type=float, default=0.1, help="dB, match-current")
    parser.add_argument("--match-ssim", type=float, default=0.005, help="match-current")
    args = parser.parse_args(argv)
    if args.rule == "above-reference" and not args.references:
        parser.error("--rule above-reference needs at least one of --references")
    if args.psnr_tolerance < 0:
        parser.error(f"--psnr-tolerance must be >= 0 dB, got {args.psnr_tolerance}")
    if args.max_calls is not None and args.max_calls <= 0:
        parser.error(f"--max-calls must be > 0 network calls per case, got {args.max_calls}")
    if args.skip_over_budget and args.max_calls is None:
        parser.error("--skip-over-budget needs --max-calls")
    base = dict(load_preset_config("solver", args.solver))
    target = base.pop("_target_")
    fixed = {}
    for item in args.set:
        key, value = item.split("=", 1)
        fixed[key] = type(base[key])(value) if base.get(key) is not None else float(value)
    base.update(fixed)
    command = "python benchmarks/tune_latent.py " + " ".join(sys.argv[1:] if argv is None else argv)
    module, name = target.rsplit(".", 1)
    solver_class = getattr(__import__(module, fromlist=[name]), name)
    grid = parse_grid(args.grid, args.solver, defaults=args.rule != "match-current")
    keys = list(grid)
    unknown = sorted(set(keys) - set(base))
    if unknown:
        raise SystemExit(
            f"--grid: {args.solver} takes no {', '.join(unknown)} "
            f"(its options: {', '.join(sorted(base))})"
        )
    shadowed = set_keys_on_grid(args.set, keys)
    if shadowed:
        raise SystemExit(
            f"--set {', '.join(shadowed)}: also a grid axis of {args.solver}, whose values would "
            f"replace it; give it as a one-valued axis instead, e.g. --grid {shadowed[0]}=<value>"
        )
    torch.manual_seed(0)
    prior = load_prior(args.prior, device="auto", precision=args.precision)
    cases = validation_cases(args.card, args.slices, args.cases)
    domain = CARD_DOMAINS.get(args.card)
    suffix = f"_{domain}" if domain else ""
    for operator in args.operators:
        started = time.perf_counter()
        measurements = simulate(operator, cases)
        references = reference_scores(args.references, operator, measurements, domain)
        rows = []
        weights = reference_weights(operator, domain)
        current_name = f"{args.solver}_{operator}{suffix}"
        current = None
        if args.rule == "match-current":
            base = {**current_options(current_name), **fixed}
            current = score_solver(
                solver_class(**current_options(current_name)), measurements, prior
            )
            print(f"{operator} current {current_name}: {current[0]:.2f} dB / {current[1]:.4f}")
        points = list(itertools.product(*(grid[k] for k in keys)))
        cheapest = min(
            network_calls({**base, **dict(zip(keys, raw, strict=True))}) for raw in points
        )
        if args.max_calls is not None and cheapest > args.max_calls:
            raise SystemExit(
                f"{operator}: every grid point needs more than --max-calls {args.max_calls} "
                f"network calls per case (the cheapest {cheapest})"
            )
        costs = []
        for raw in points:
            values = tuple(_resolve_reference(v, weights) for v in raw)
            params = {**base, **dict(zip(keys, values, strict=True))}
            if not runs_point(params, args.max_calls, args.skip_over_budget):
                print(f"{operator} {dict(zip(keys, values, strict=True))}: skipped (over budget)")
                continue
            try:
                solver = solver_class(**params)
            except InvalidInputError as refused:  # e.g. a final TV and wavelet weight both > 0
                print(f"{operator} {dict(zip(keys, values, strict=True))}: skipped ({refused})")
                continue
            psnr, ssim = score_solver(solver, measurements, prior)
            rows.append((values, psnr, ssim))
            costs.append(network_calls(params))
            print(
                f"{operator} {dict(zip(keys, values, strict=True))}: {psnr:.2f} dB / {ssim:.4f}",
                flush=True,
            )
        if not rows:
            raise SystemExit(f"{operator}: the solver refused every grid point (see above)")
        allowed = within_budget(costs, args.max_calls)
        if not allowed:
            raise SystemExit(f"{operator}: no grid point within --max-calls {args.max_calls}")
        eligible = [rows[i] for i in allowed]
        near_best = (
            f"the best mean SSIM within {args.psnr_tolerance} dB of the best mean PSNR "
            "(unrounded means)."
        )
        best, rule = allowed[choose(eligible, args.psnr_tolerance)], f"Chosen: {near_best}"
        if args.rule == "above-reference":
            best_reference = max(references.items(), key=lambda item: item[1][1])
            index, met = choose_above_reference(eligible, best_reference[1][1], args.psnr_tolerance)
            best = allowed[index]
            rule = (
                "Chosen: the best mean PSNR among the points whose mean SSIM reaches "
                f"{best_reference[0]}'s ({best_reference[1][1]:.4f})."
                if met
                else f"No point reached {best_reference[0]}'s mean SSIM "
                f"({best_reference[1][1]:.4f}); chosen: {near_best}"
            )
        if current is not None:
            matched = choose_cheapest_match(
                eligible, [costs[i] for i in allowed], current, args.match_psnr, args.match_ssim
            )
            if matched is None:
                print(f"{operator}: no grid point within the tolerances; {current_name} kept")
                continue
            best = allowed[matched]
            rule = (
                "Chosen: the fewest network calls per case (n_steps x n_samples) among the "
                f"points within {args.match_psnr} dB PSNR and {args.match_ssim} SSIM of the "
                f"preset it replaces ({network_calls(current_options(current_name))} calls: "
                f"{current[0]:.2f} / {current[1]:.4f} on these cases)."
            )
        if args.max_calls is not None:
            rule += (
                f" Budget: at most {args.max_calls} network calls per case (n_steps x "
                "n_samples); points over it are "
                + ("not run." if args.skip_over_budget else "marked.")
            )
        chosen = {**base, **dict(zip(keys, rows[best][0], strict=True))}
        listed = ", ".join(c.case_id for c in cases)
        header = [
            f"Tuned on {CARD_LABELS[args.card]} VALIDATION cases by "
            "benchmarks/tune_latent.py; rerun it, do not edit.",
            f"Command: {command}",
            f"Prior: {args.prior}. Operator: {operator} (configs/physics/{operator}.yaml); "
            "seed i for case i.",
            f"Validation cases ({len(cases)}): {listed}",
            "Scoring: the benchmark's (magnitude, data_range = ground truth max - min).",
            rule,
            *[
                f"Reference {source} on the same measurements: {psnr:.2f} / {ssim:.4f}"
                for source, (psnr, ssim) in references.items()
            ],
            f"{' x '.join(keys)} -> mean PSNR dB / SSIM:",
            *[
                f"  {values}: {psnr:.2f} / {ssim:.4f}{point_mark(i, best, allowed)}"
                for i, (values, psnr, ssim) in enumerate(rows)
            ],
            f"Tuning time: {time.perf_counter() - started:.0f} s on {prior.device} "
            f"({prior.precision} network calls).",
            "",
        ]
        path = write_preset(
            config_dir() / "solver", f"{args.solver}_{operator}{suffix}", target, chosen, header
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
