"""The road a value takes from the command line to the tensor, traced as the code runs.

    python -m advmeta.benchmarks.road            # both: ε of a sweep and γ of a search
    python -m advmeta.benchmarks.road eps --dataset omniglot

Runs a command of the product with a profiler watching every call into advmeta's own modules
(``advmeta/``, ``tune/``, ``cli/``), and prints, module by module:

- **the road**: the modules on the call stack at each moment the value changes hands — where its
  text is parsed, where it is put into a trial, and where it reaches the tensor (ε: the projection
  onto the ε-ball of an evaluation's attack; γ: TAFL's task weights); a module that hands the value
  back to its caller is on the road too (the ε plan, the search space's values), found as the
  modules a call carrying the value entered between two of those moments;
- **everything else that carries it**: the other modules a call holding the value entered (an
  estimate reading the trials, the ledger writing them, …) — side roads, not the road.

The command is the product's own (``advmeta sweep --grid tafl --eps 16/255``, ``advmeta tune tafl
--gamma 0:5``, planned as a dry run); one of its trials then runs in this process, from its family's
``run`` — as a sweep's trial runs in its own process, entered from :func:`advmeta.tune.runner.run_trial`
through Ray (listed as the first stop of the trial's side, not traced: a profiler does not cross to
Ray's processes). A module is counted once however often it is called; one entered again after the
road left it is marked.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

TRIAL_ENTRY = "tune/runner.py"


def _roots() -> dict[str, str]:
    """Source folder → the prefix its modules are named by (``advmeta/``, ``tune/``, ``cli/``)."""
    import importlib

    out = {}
    for package, prefix in (("advmeta", "advmeta/"), ("advmeta.tune", "tune/"), ("advmeta.cli", "cli/")):
        folder = Path(importlib.import_module(package).__file__ or "").resolve().parent
        out[str(folder) + os.sep] = prefix
    return out


def _outwards(frame: FrameType | None) -> Iterator[FrameType]:
    """``frame`` and its callers, innermost first."""
    while frame is not None:
        yield frame
        frame = frame.f_back


@dataclass
class Road:
    """What the profiler saw of one value."""

    carried: list[tuple[str, str, str]] = field(default_factory=list)
    """(module, function, ``module:function`` of the caller) of every call into a project module whose
    arguments hold the value, in order."""
    at: dict[str, int] = field(default_factory=dict)
    """Moment → how many carrying calls came before it."""
    within: list[set[str]] = field(default_factory=list)
    """Per carried call: the moments whose stack holds its caller's frame (a call made while that
    moment's work was still going on — a parse finishing — is part of it, not a later hand-over)."""
    frames: dict[str, list[FrameType]] = field(default_factory=dict)
    """Moment → the frames on its stack (kept, so that the identity of a frame is not reused)."""
    stacks: dict[str, list[str]] = field(default_factory=dict)
    """Moment → the project modules on the call stack then (outermost first)."""
    order: list[str] = field(default_factory=list)
    """The moments in the order they happened."""


class Tracer:
    """A ``sys.setprofile`` hook: records the calls that carry a value and the stacks at its moments.

    Args:
        holds: whether an object is, or holds (in a record, a mapping or a sequence, a few levels
            down), the value.
        moments: moment name → (module, function, test of the call's frame): the call at which the
            value changes hands (its first such call is recorded).
    """

    def __init__(self, holds: Callable[[Any], bool],
                 moments: Mapping[str, tuple[str, str, Callable[[FrameType], bool]]]) -> None:
        self.holds, self.moments, self.road = holds, dict(moments), Road()
        self.roots = _roots()
        self._names: dict[str, str | None] = {}
        self._skip = str(Path(__file__).resolve())

    def module(self, filename: str) -> str | None:
        """The project module a source file is (``advmeta/eps.py``), or None outside the project."""
        if filename not in self._names:
            name = None
            if filename != self._skip and ".venv" not in filename:
                for root, prefix in self.roots.items():
                    if filename.startswith(root):
                        name = prefix + filename[len(root):].replace(os.sep, "/")
                        break
            self._names[filename] = name
        return self._names[filename]

    def stack(self, frame: FrameType | None) -> list[str]:
        """The project modules on the stack from ``frame`` outwards, outermost first (a module once per
        run of its frames); in parentheses where none of its frames there holds the value in an
        argument (on the stack for the control flow only: it called on an object that keeps the value)."""
        mods: list[tuple[str, bool]] = []
        for f in _outwards(frame):
            m = self.module(f.f_code.co_filename)
            if m is not None:
                carries = self.carries(f)
                if mods and mods[-1][0] == m:
                    mods[-1] = (m, mods[-1][1] or carries)
                else:
                    mods.append((m, carries))
        return [m if carries else f"({m})" for m, carries in mods[::-1]]

    def carries(self, frame: FrameType) -> bool:
        """Whether an argument of ``frame``'s call holds the value."""
        code = frame.f_code
        n_args = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 4) + bool(code.co_flags & 8)
        f_locals = frame.f_locals
        return any(self.holds(f_locals.get(name)) for name in code.co_varnames[:n_args])

    def caller(self, frame: FrameType, module: str) -> str:
        """``module:function`` of the nearest project frame below ``frame`` in another module."""
        for up in _outwards(frame.f_back):
            m = self.module(up.f_code.co_filename)
            if m is not None and m != module:
                return f"{m}:{up.f_code.co_name}"
        return ""

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        m = self.module(frame.f_code.co_filename)
        if m is None:
            return
        code = frame.f_code
        if self.carries(frame):
            self.road.carried.append((m, code.co_name, self.caller(frame, m)))
            up = frame.f_back
            self.road.within.append({moment for moment, frames in self.road.frames.items()
                                     if any(up is f for f in frames)})
        for moment, (mod, fn, test) in self.moments.items():
            if moment not in self.road.stacks and m == mod and code.co_name == fn and test(frame):
                self.road.stacks[moment] = self.stack(frame)
                self.road.frames[moment] = list(_outwards(frame.f_back))
                self.road.order.append(moment)
                self.road.at[moment] = len(self.road.carried)

    def run(self, work: Callable[[], Any]) -> Any:
        """``work()`` with the hook set (this thread)."""
        sys.setprofile(self)
        try:
            return work()
        finally:
            sys.setprofile(None)


def holder(is_value: Callable[[Any], bool], depth: int = 4) -> Callable[[Any], bool]:
    """A test of whether an object is, or holds within ``depth`` levels, a value ``is_value`` accepts."""

    def holds(obj: Any, level: int = 0) -> bool:
        try:
            return _holds(obj, level)
        except Exception:  # an object half-built (``self`` as its __init__ is entered) holds nothing yet
            return False

    def _holds(obj: Any, level: int) -> bool:
        if is_value(obj):
            return True
        if level >= depth or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
            return False
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return any(holds(getattr(obj, f.name, None), level + 1) for f in dataclasses.fields(obj))
        if isinstance(obj, Mapping):
            return any(holds(v, level + 1) for v in list(obj.values())[:64])
        if isinstance(obj, (list, tuple)):
            return any(holds(v, level + 1) for v in obj[:64])
        if type(obj).__name__ == "Context" and isinstance(getattr(obj, "args", None), list):
            return holds(obj.args, level + 1)  # a command's context: the options it did not name (advmeta tune's)
        return False

    return holds


def handed_back(road: Road, before: str, after: str) -> dict[str, list[str]]:
    """The modules the value entered between two moments, called from a module on the later moment's
    stack without being on it: callees that took the value and handed it (or a record of it) back —
    the ε plan, a record's constructor, a check. Module → ``caller → function`` of each such call."""
    on = [m.strip("()") for m in road.stacks[after]]
    lo, hi = road.at.get(before, 0), road.at[after]
    out: dict[str, list[str]] = {}
    for (m, fn, caller), within in list(zip(road.carried, road.within))[lo:hi]:
        if before in within:
            continue  # the earlier moment's own work, finishing
        call = f"{caller.split(':')[1]} → {fn}" if caller else fn
        if m not in on and caller.split(":")[0] in on and call not in out.setdefault(m, []):
            out[m].append(call)
    return {m: calls for m, calls in out.items() if calls}


def _sweep_eps(dataset: str, folder: str) -> Road:
    """ε: ``advmeta sweep --grid tafl --budget smoke --eps 16/255``, planned, and one trial's evaluation."""
    target = 16 / 255

    def is_eps(v: Any) -> bool:
        return (isinstance(v, float) and abs(v - target) < 1e-12) or (isinstance(v, str) and v.strip() == "16/255")

    moments = {
        "parse": ("advmeta/eps.py", "__new__", lambda f: f.f_locals.get("value") == "16/255"),
        "trial": ("advmeta/plan/trial.py", "__post_init__",
                  lambda f: any(is_eps(e) for e in getattr(f.f_locals.get("self"), "eps", None) or [])),
        "tensor": ("advmeta/attacks/_core.py", "__init__",
                   lambda f: is_eps(f.f_locals.get("eps")) and _under(f, "evaluate_learner")),
    }
    args = ["sweep", "--grid", "tafl", "--budget", "smoke", "--dataset", dataset, "--eps", "16/255", "--dry-run",
            "--output", f"{folder}/sweep", "--quiet"]
    from advmeta.plan.grids import GridRequest, plan_grid

    def trials() -> Any:
        return plan_grid(GridRequest(grid="tafl", budget="smoke", dataset=dataset, eps="16/255"), dry_run=True,
                         progress=False).trials

    return _trace(args, holder(is_eps), moments, folder, trials, lambda spec: spec.method == "tafl")


def _tune_gamma(dataset: str, folder: str) -> Road:
    """γ: ``advmeta tune tafl --gamma 0:5 --budget smoke``, planned, and the trial at γ = 3 trained."""
    target = 3.0

    def is_gamma(v: Any) -> bool:
        return (type(v) is float and v == target) or v == "0:5"

    moments = {
        "parse": ("advmeta/plan/space.py", "parse_values", lambda f: f.f_locals.get("text") == "0:5"),
        "trial": ("advmeta/plan/trial.py", "__post_init__",
                  lambda f: is_gamma(dict(getattr(f.f_locals.get("self"), "hparams", None) or {}).get("gamma"))),
        "tensor": ("advmeta/learners/tafl.py", "task_weights", lambda f: is_gamma(f.f_locals.get("gamma"))),
    }
    args = ["tune", "tafl", "--gamma", "0:5", "--budget", "smoke", "--dataset", dataset, "--dry-run",
            "--output", f"{folder}/tune", "--quiet"]
    from advmeta.plan.space import SearchRequest, plan_search

    def trials() -> Any:
        return plan_search(SearchRequest(method="tafl", options=("--gamma", "0:5"), budget="smoke", dataset=dataset),
                           dry_run=True, progress=False).trials

    return _trace(args, holder(is_gamma), moments, folder, trials,
                  lambda spec: dict(spec.hparams).get("gamma") == target)


def _under(frame: FrameType | None, function: str) -> bool:
    return any(f.f_code.co_name == function for f in _outwards(frame))


def _trace(args: list[str], holds: Callable[[Any], bool], moments: Mapping[str, Any], folder: str,
           trials: Callable[[], Any], pick: Callable[[Any], bool]) -> Road:
    """Plan ``advmeta ARGS`` (a dry run) through the command line, then run the trial ``pick`` chooses
    of the same plan (``trials``, made again untraced) from its family's ``run``, both under one
    :class:`Tracer`."""
    import contextlib
    import io

    from advmeta.cli.app import main
    from advmeta.families import RunContext, get_family

    tracer = Tracer(holds, moments)

    def command() -> None:
        saved = sys.argv
        sys.argv = ["advmeta", *args]
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                main()
        except SystemExit as done:
            if done.code not in (0, None):
                raise RuntimeError(f"advmeta {' '.join(args)} exited {done.code}") from None
        finally:
            sys.argv = saved

    tracer.run(command)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        spec = next(s for s in trials() if pick(s))
    ctx = RunContext(sweep_dir=f"{folder}/run", work_dir=f"{folder}/work", data_root=os.environ.get("ADVMETA_DATA"))
    tracer.run(lambda: get_family(spec.family).run(spec, ctx, lambda *a, **k: None))
    return tracer.road


@dataclass
class Tally:
    """A road counted (:func:`tally`)."""

    modules: list[str]
    """The modules that hold the value on the way, in order, each once."""
    again: list[str]
    """Those entered again after the road had left them."""
    handed: dict[str, dict[str, list[str]]]
    """Moment → the callees handed the value on the way to it (:func:`handed_back`)."""
    side: list[str]
    """The other modules that received it."""


def tally(road: Road) -> Tally:
    """Count a road: the modules on the moments' stacks that hold the value (not those there for the
    control flow only), the trial's entry, and the callees that took it and handed it back."""
    modules: list[str] = []
    again: list[str] = []
    handed: dict[str, dict[str, list[str]]] = {}
    for i, moment in enumerate(road.order):
        if moment == "tensor":
            (again if TRIAL_ENTRY in modules else modules).append(TRIAL_ENTRY)
        if i:
            handed[moment] = handed_back(road, road.order[i - 1], moment)
            for m in handed[moment]:
                (again if m in modules else modules).append(m)
        modules += [m for m in road.stacks[moment] if not m.startswith("(") and m not in modules]
    side = sorted({m for m, _, _ in road.carried} - set(modules))
    return Tally(modules, list(dict.fromkeys(again)), handed, side)


def show(what: str, road: Road) -> None:
    """Print the stacks at the moments, the callees handed the value in between, the count, and the
    side roads."""
    names = {"parse": "its text parsed", "trial": "put in the trial", "tensor": "at the tensor"}
    t = tally(road)
    print(what)
    seen: set[str] = set()
    for moment in road.order:
        if moment == "tensor":
            print(f"  then in the trial's process, entered at {TRIAL_ENTRY} (run_trial, through Ray; not traced):")
        print(f"  {names[moment]}: {' > '.join(road.stacks[moment])}")
        for m, calls in t.handed.get(moment, {}).items():
            print(f"      {'entered again' if m in seen else 'handed it back'}: {m} ({'; '.join(calls)})")
        seen |= {m.strip("()") for m in road.stacks[moment]} | set(t.handed.get(moment, {}))
    print(f"  {len(t.modules)} modules hold it on the way: {', '.join(t.modules)}")
    if t.again:
        print(f"  entered again after the road left them: {', '.join(t.again)}")
    print(f"  also received it, elsewhere: {', '.join(t.side) or 'none'}")


def trace(value: str, dataset: str, folder: str) -> Road:
    """The road of ``eps`` (``advmeta sweep --grid tafl --eps 16/255``) or ``gamma`` (``advmeta tune
    tafl --gamma 0:5``), traced in ``folder``."""
    return _sweep_eps(dataset, folder) if value == "eps" else _tune_gamma(dataset, folder)


def main(argv: list[str] | None = None) -> int:
    """Trace the roads asked for; print each."""
    p = argparse.ArgumentParser(prog="python -m advmeta.benchmarks.road", description=__doc__.split("\n")[0])
    p.add_argument("values", nargs="*", metavar="eps|gamma", help="the roads to trace (default: both)")
    p.add_argument("--dataset", default="glyphs", help="few-shot dataset of the commands (glyphs: no files needed)")
    a = p.parse_args(argv)
    todo = a.values or ["eps", "gamma"]
    if set(todo) - {"eps", "gamma"}:
        p.error(f"unknown road(s) {', '.join(sorted(set(todo) - {'eps', 'gamma'}))}; known: eps, gamma")
    from advmeta.errors import AdvmetaError

    titles = {"eps": "ε of `advmeta sweep --grid tafl --budget smoke --eps 16/255`",
              "gamma": "γ of `advmeta tune tafl --gamma 0:5 --budget smoke` (the trial at γ = 3)"}
    with tempfile.TemporaryDirectory(prefix="advmeta-road-") as tmp:
        for name in todo:
            t0 = time.perf_counter()
            try:
                road = trace(name, a.dataset, f"{tmp}/{name}")
            except (AdvmetaError, RuntimeError) as err:  # the command's own error, one line
                print(f"error: {err}", file=sys.stderr)
                return 2
            show(titles[name], road)
            print(f"  traced in {time.perf_counter() - t0:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
