"""A walk of a reconstruction through medldm's modules: who calls whom, and the two faults
of ``docs/architecture.md`` ("Calls go one way, from the entry points down").

A **room** is one module of :mod:`medldm.recon` (``medldm.recon.presets``,
``medldm.recon.kspace_stages``, ...). A walk enters a room whenever a function of that
module is called from a function of another medldm module (the *caller module*). The design
says a reconstruction enters each room from **one** caller module only: a room entered from
two (``pipeline`` and ``stages`` both calling ``presets``, say) means two places decide the
same thing, and they drift apart.

A **climb-back** is a call against the direction of the design:

* ``"layer"``: a caller module in a lower import-linter layer than its callee (the
  ``layers`` contract of ``pyproject.toml``'s ``[tool.importlinter]``, read here, so the
  layers are never copied): ``medldm.solvers.x`` calling a function of ``medldm.recon.y``;
* ``"calls back its caller"``: two rooms each calling the other (``A -> B`` and ``B -> A``).

One kind of upward call is not a climb-back: **dispatch**. A lower layer may call a
*method* of an object handed down to it, whose class lives higher up, e.g. the phase
estimation of :mod:`medldm.physics.phase` calling ``PriorGridMRI.A`` of
:mod:`medldm.recon.kspace_prior_grid`. The lower layer imports nothing from the higher one;
it calls the operator interface it was given. A call counts as dispatch when the called
function's first argument is ``self`` and that object's class (or one of its bases) is
defined in the callee module (:func:`_is_method`); a module pair is excused only when every
call recorded between the two is dispatch.

Usage::

    walk = Tracer().run(medldm.reconstruct, path, "mri_brain_4x", ...)
    assert not walk.faults(), walk.describe()

The tracer records (caller module, callee module) for every Python call whose callee module
starts with ``medldm.``; the caller is the nearest frame on the stack in a medldm module, so
``torch.nn.Module.__call__``, ``functools`` or ``dataclasses`` in between are skipped. Module
bodies run by an import are not call flow and are ignored, and so are calls from outside
medldm (the test itself: the entry point).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import FrameType
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
ROOMS = "medldm.recon."

Pair = tuple[str, str]  # (caller module, callee module), or (caller, callee) function names


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            return {}
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _layer_strings(path: Path) -> list[str]:
    """The ``layers`` list of the import-linter contract with ``id = "layers"``."""
    config = _read_toml(path)
    if config:
        for contract in config["tool"]["importlinter"]["contracts"]:
            if contract.get("id") == "layers":
                return list(contract["layers"])
        raise LookupError(f'{path}: no [[tool.importlinter.contracts]] with id = "layers"')
    # Python 3.10 without tomli: the same list, found by its key inside that contract
    text = path.read_text(encoding="utf-8")
    found = re.search(r'id = "layers".*?\nlayers = \[(.*?)\]', text, re.S)
    if found is None:
        raise LookupError(f"{path}: no import-linter layers contract")
    return re.findall(r'"([^"]+)"', found.group(1))


@cache
def layers(path: Path = PYPROJECT) -> dict[str, int]:
    """Each top-level package of medldm (``"recon"``, ``"physics"``, ...) and its layer,
    0 the top one (``"apps | bench | recon | train"``)."""
    return {
        name.strip(): index
        for index, names in enumerate(_layer_strings(path))
        for name in names.split("|")
    }


def layer_of(module: str) -> int | None:
    """The layer of a medldm module (``None`` outside medldm or for ``medldm`` itself)."""
    parts = module.split(".")
    if parts[0] != "medldm" or len(parts) < 2:
        return None
    return layers().get(parts[1])


def _is_method(frame: FrameType) -> bool:
    """Dispatch: ``frame`` runs a method of an object whose class (or a base) is defined in
    the frame's own module, i.e. the caller called a method of an object it was handed
    (``physics.A(x)`` on a ``PriorGridMRI``), not a function it imported from above."""
    code = frame.f_code
    if not code.co_argcount or code.co_varnames[0] != "self":
        return False
    owner = type(frame.f_locals.get("self"))
    module = frame.f_globals.get("__name__")
    return any(cls.__module__ == module for cls in owner.__mro__)


@dataclass
class Walk:
    """What one traced call did: for each (caller module, callee module) pair, the
    (caller function, callee function) calls and how often, and the calls among them that
    went up a layer by dispatch (:func:`_is_method`)."""

    calls: dict[Pair, dict[Pair, int]] = field(default_factory=dict)
    dispatch_calls: dict[Pair, dict[Pair, int]] = field(default_factory=dict)

    @property
    def dispatch(self) -> set[Pair]:
        """Module pairs every one of whose calls is dispatch (not counted anywhere)."""
        return {
            pair
            for pair, functions in self.calls.items()
            if functions == self.dispatch_calls.get(pair)
        }

    def counted(self) -> list[Pair]:
        """The module pairs that count: every one but the dispatch ones, sorted."""
        dispatch = self.dispatch
        return sorted(pair for pair in self.calls if pair not in dispatch)

    def rooms(self) -> dict[str, list[str]]:
        """Each room (module of ``medldm.recon``) entered, and the caller modules."""
        callers: dict[str, set[str]] = defaultdict(set)
        for caller, callee in self.counted():
            if callee.startswith(ROOMS):
                callers[callee].add(caller)
        return {room: sorted(sources) for room, sources in sorted(callers.items())}

    def multi_caller(self) -> dict[str, list[str]]:
        """The rooms entered from more than one caller module."""
        return {room: sources for room, sources in self.rooms().items() if len(sources) > 1}

    def climb_backs(self) -> list[tuple[str, str, str]]:
        """(caller, callee, why): a call from a lower layer into a higher one
        (``"layer"``), or a room calling a room that calls it (``"calls back its
        caller"``)."""
        counted = self.counted()
        pairs = set(counted)
        found = []
        for caller, callee in counted:
            low, high = layer_of(caller), layer_of(callee)
            if low is not None and high is not None and low > high:
                found.append((caller, callee, "layer"))
            if caller.startswith(ROOMS) and callee.startswith(ROOMS) and (callee, caller) in pairs:
                found.append((caller, callee, "calls back its caller"))
        return found

    def faults(self) -> list[str]:
        """One line per fault (empty: the walk keeps to the design)."""
        lines = [
            f"room {room} entered from {len(sources)} caller modules:"
            + "".join(f"\n    {source} ({self._functions(source, room)})" for source in sources)
            for room, sources in self.multi_caller().items()
        ]
        lines += [
            f"climb-back [{why}]: {caller} -> {callee} ({self._functions(caller, callee)})"
            for caller, callee, why in self.climb_backs()
        ]
        return lines

    def describe(self) -> str:
        """The faults, for an assertion message, or a line saying there are none."""
        faults = self.faults()
        if not faults:
            return "no room entered from two caller modules, no climb-back"
        return "\n".join(["calls against docs/architecture.md (caller -> callee):", *faults])

    def _functions(self, caller: str, callee: str, limit: int = 6) -> str:
        calls = sorted(self.calls[(caller, callee)])
        text = ", ".join(f"{a} -> {b}" for a, b in calls[:limit])
        return text + (f", ... ({len(calls)} in all)" if len(calls) > limit else "")


class Tracer:
    """A ``sys.setprofile`` hook recording the calls between medldm modules as a
    :class:`Walk`; :meth:`run` traces one call."""

    def __init__(self) -> None:
        self._calls: dict[Pair, dict[Pair, int]] = defaultdict(lambda: defaultdict(int))
        self._dispatch: dict[Pair, dict[Pair, int]] = defaultdict(lambda: defaultdict(int))

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee = frame.f_globals.get("__name__", "")
        if not callee.startswith("medldm.") or frame.f_code.co_name == "<module>":
            return
        caller_frame = frame.f_back
        while caller_frame is not None:
            if caller_frame.f_code.co_filename.startswith("<frozen importlib"):
                return  # inside an import: module bodies, not call flow
            name = caller_frame.f_globals.get("__name__", "")
            if name.startswith("medldm.") and caller_frame.f_code.co_name != "<module>":
                break
            caller_frame = caller_frame.f_back
        if caller_frame is None:
            return  # called from outside medldm: the entry point itself
        caller = caller_frame.f_globals["__name__"]
        if caller == callee:
            return
        pair = (caller, callee)
        functions = (caller_frame.f_code.co_name, frame.f_code.co_name)
        self._calls[pair][functions] += 1
        # upward and a method of an object handed down (physics.phase calling
        # PriorGridMRI.A): dispatch, excused when it is all the pair does (Walk.dispatch)
        low, high = layer_of(caller), layer_of(callee)
        if low is not None and high is not None and low > high and _is_method(frame):
            self._dispatch[pair][functions] += 1

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Walk:
        """Call ``function(*args, **kwargs)`` under the hook; the calls it made."""
        previous = sys.getprofile()
        sys.setprofile(self)
        try:
            function(*args, **kwargs)
        finally:
            sys.setprofile(previous)
        return Walk(
            calls={pair: dict(functions) for pair, functions in self._calls.items()},
            dispatch_calls={pair: dict(functions) for pair, functions in self._dispatch.items()},
        )
