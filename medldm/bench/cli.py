"""``medldm-bench``: the Hydra command line of the benchmark harness.

The primary config is ``configs/bench/config.yaml``. ``data`` is a Hydra config group
(the presets of ``configs/data/``); ``physics`` and ``solvers`` are *lists of preset
names*, resolved by :mod:`medldm.problems.configs` (not config groups, so that
``physics=[mri_4x,mri_8x]`` is a plain list override). The contract::

    medldm-bench data.root=/folder data.slices=4 data.size=128 \\
        physics=[mri_4x,mri_8x] solvers=[zero_filled,tv] seeds=[0,1,2] output_dir=out/

writes ``out/results.csv``, ``out/report.md`` and ``out/report.html``. Hydra's own logs go
to ``out/hydra/``. Multirun with the joblib launcher runs jobs in parallel processes that
share ``out/results.csv`` (file lock) and each regenerate the report from all rows::

    medldm-bench -m data=ixi_t1_test physics=[mri_4x],[mri_8x] hydra/launcher=joblib

The standard suite: ``medldm-bench --config-name standard`` (``configs/bench/standard.yaml``).

Example
-------
>>> from hydra import compose, initialize_config_dir
>>> register_data_presets()
>>> with initialize_config_dir(str(config_dir() / "bench"), version_base="1.3"):
...     cfg = compose("config", overrides=["data.root=/tmp", "physics=[mri_4x,mri_8x]"])
>>> list(cfg.physics), cfg.data.root
(['mri_4x', 'mri_8x'], '/tmp')
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf

from medldm.bench.report import write_report
from medldm.bench.results import ResultsTable
from medldm.bench.runner import RESULTS_FILE, RunSummary, run_benchmark
from medldm.errors import InvalidInputError
from medldm.problems.configs import available_presets, config_dir, preset_path

log = logging.getLogger(__name__)


def register_data_presets() -> None:
    """Make ``configs/data/*.yaml`` the options of the ``data`` config group.

    The configs folder itself is not on Hydra's search path, because its ``physics/``
    and ``solver/`` folders would then be config groups and turn the list override
    ``physics=[a,b]`` into a group selection.
    """
    store = ConfigStore.instance()
    for path in sorted((config_dir() / "data").glob("*.yaml")):
        store.store(group="data", name=path.stem, node=OmegaConf.load(path))


def _as_list(value: Any) -> list:
    if isinstance(value, ListConfig | list | tuple):
        return list(value)
    return [value]


def _overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not running under Hydra (compose API)
        return []


def load_bench_prior(spec: Any, device: str, precision: str = "auto") -> Any:
    """``prior=`` as a shipped name / checkpoint folder, or a config with a ``_target_``;
    ``precision`` of its network calls (auto, fp32, bf16)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        from medldm.models.prior import load_prior

        path = Path(to_absolute_path(spec))
        return load_prior(path if path.exists() else spec, device=device, precision=precision)
    return instantiate(spec)


def prior_groups(cfg: DictConfig) -> list[tuple[Any, list[str]]]:
    """The operators of ``cfg.physics`` grouped by the prior they run, in order: ``prior``
    for all of them but those ``operator_priors`` names another for (a suite whose
    operators the app's presets solve with different priors measures each with its own).
    A name in ``operator_priors`` that is no physics preset is refused (a typo would
    otherwise leave its operator on ``prior`` without a word).

    >>> cfg = OmegaConf.create({"physics": ["mri_4x", "inpaint_box", "mri_8x"],
    ...     "prior": "brain_t1_lossless_2d", "operator_priors": {"inpaint_box": "brain_t1_2d"}})
    >>> prior_groups(cfg)
    [('brain_t1_lossless_2d', ['mri_4x', 'mri_8x']), ('brain_t1_2d', ['inpaint_box'])]
    """
    named = cfg.get("operator_priors") or {}
    unknown = sorted(str(name) for name in named if preset_path("physics", str(name)) is None)
    if unknown:
        raise InvalidInputError(
            f"operator_priors names no physics preset: {', '.join(unknown)}",
            fix=f"use names from configs/physics/ ({', '.join(available_presets('physics'))})",
        )
    groups: dict[str, tuple[Any, list[str]]] = {}
    for operator in (str(name) for name in _as_list(cfg.physics)):
        spec = named.get(operator, cfg.get("prior"))
        key = OmegaConf.to_yaml(spec) if isinstance(spec, DictConfig) else str(spec)
        groups.setdefault(key, (spec, []))[1].append(operator)
    return list(groups.values())


def _add(total: RunSummary, part: RunSummary) -> RunSummary:
    """The counts of two groups' runs: every group reads the same cases, so the cases and
    the unreadable ones are counted once."""
    counts = {f.name: getattr(total, f.name) + getattr(part, f.name) for f in fields(total)}
    for name in ("cases", "case_failures"):
        counts[name] = max(getattr(total, name), getattr(part, name))
    return RunSummary(**counts)


def _group_record(config: dict, spec: Any, operators: list[str]) -> dict:
    """The run record's config for one group: its operators and the prior they ran."""
    prior = OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else spec
    return {**config, "physics": operators, "prior": prior}


def run_from_config(cfg: DictConfig) -> RunSummary:
    """Run the benchmark described by a composed config, then rewrite the report."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    output_dir = Path(to_absolute_path(str(cfg.output_dir)))
    source = instantiate(cfg.data, _convert_="all")
    arguments = " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    precision = str(cfg.get("precision", "auto"))
    # every prior loads before any row runs: a bad one stops the run with nothing half done
    groups = [
        (spec, operators, load_bench_prior(spec, str(cfg.device), precision))
        for spec, operators in prior_groups(cfg)
    ]
    config: dict = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    summary = RunSummary()
    for spec, operators, prior in groups:
        part = run_benchmark(
            source,
            operators,
            [str(name) for name in _as_list(cfg.solvers)],
            [int(seed) for seed in _as_list(cfg.seeds)],
            output_dir,
            device=str(cfg.device),
            prior=prior,
            roi=cfg.get("roi"),
            save_arrays=str(cfg.get("save_arrays", "first_seed")),
            progress=bool(cfg.get("progress", True)),
            command=f"medldm-bench {arguments}".strip(),
            config=_group_record(config, spec, operators),
            overrides=_overrides(),
            domain=cfg.get("domain"),
            variants=OmegaConf.to_container(cfg.variants) if cfg.get("variants") else None,  # type: ignore[arg-type]
        )
        summary = _add(summary, part)
    table = ResultsTable(output_dir / RESULTS_FILE)
    with table.locked():  # one report writer at a time; the last one sees every row
        markdown, html = write_report(
            output_dir, figures_per_operator=int(cfg.get("figures_per_operator", 3))
        )
    log.info("%s", summary)
    print(
        f"medldm-bench: {summary.computed} computed, {summary.failed} failed, "
        f"{summary.skipped_done} already done ({summary.skipped_stale} with since-changed "
        f"presets), {summary.skipped_inapplicable} not applicable; "
        f"results in {output_dir / RESULTS_FILE}, report in {markdown} and {html}"
    )
    return summary


def main() -> None:
    """Console script entry point (``medldm-bench``)."""
    import hydra

    register_data_presets()
    app = hydra.main(
        version_base="1.3", config_path=str(config_dir() / "bench"), config_name="config"
    )(run_from_config)
    app()


if __name__ == "__main__":
    main()
