"""Adding an attack, a learner, a dataset or a grid is one file, picked up by the registry-wide tests.

Each extension below is written as one new module in a temporary folder, registered only through
``ADVMETA_PLUGINS`` (how a user's own file joins; a module of the package joins the same way by
being there). A subprocess then runs the registry-wide tests selected by the new name — the
attack contract, the learner checks, the dataset episodes — and the CLI lists the new learner's
and the new grid's trials. Nothing else is edited: no test, no ``__init__``, no table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

ATTACK = '''
"""A new attack in one file: two signed-gradient steps of ε/2 (PGD, 2 steps, no random start)."""
from advmeta.attacks import register_attack
from advmeta.attacks.pgd import pgd_attack
from advmeta.eps import parse_eps


@register_attack("probe-two-step")
def probe_two_step(model_fn, x, y, *, eps, norm="linf", loss="ce", generator=None):
    e = parse_eps(eps)
    return pgd_attack(model_fn, x, y, eps=e, steps=2, step_size=e / 2 if e > 0 else None, norm=norm,
                      loss=loss, random_start=False, generator=None)
'''

LEARNER = '''
"""A new learner in one file: MAML with a larger default inner learning rate and its own field."""
from advmeta.learners import MAMLBase, MAMLConfig, hp, hparams, register_learner


@hparams
class ProbeConfig(MAMLConfig):
    """The probe's hyper-parameters: MAML's, with α = 0.2 by default."""

    inner_lr: float = hp(0.2, "inner-loop learning rate α", low=1e-4, high=1.0, log=True)


@register_learner("probe-maml")
class ProbeMAML(MAMLBase):
    """MAML under another name and default."""

    Config = ProbeConfig
'''

DATASET = '''
"""A new few-shot dataset in one file: the built-in glyphs under another name (no files to find)."""
from advmeta.data import FEWSHOT, DatasetInfo, register_info
from advmeta.data.glyphs import check_rendering, load_glyphs

register_info(DatasetInfo("probe-glyphs", rank=1000, classification="glyphs-cls", built_in=True, check=check_rendering))


@FEWSHOT.register("probe-glyphs")
def load_probe_glyphs(data_root=None, image_size=None, split_scheme=None, download=True):
    return load_glyphs(data_root=data_root, image_size=image_size, split_scheme=split_scheme, download=download)
'''

GRID = '''
description = "A new grid in one file: the probe learner against MAML under the probe attack."

[[tables]]
name = "probe"
methods = ["maml", "probe-maml"]
k_shot = [1]
[tables.hparams]
inner_lr = [0.1, 0.3]
[[tables.evals]]
scenario = "whitebox"
attacks = ["pgd", "probe-two-step"]
eps = ["2/255"]
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The three modules and the grid in a fresh folder, and the environment that registers them."""
    folder = tmp_path_factory.mktemp("plugins")
    for name, text in (("probe_attack", ATTACK), ("probe_learner", LEARNER), ("probe_dataset", DATASET)):
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    (folder / "probe.toml").write_text(GRID)
    env = {**os.environ, "ADVMETA_PLUGINS": "probe_attack,probe_learner,probe_dataset",
           "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    return folder, env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_the_registry_wide_tests_pick_up_each_new_file(plugins: tuple[Path, dict[str, str]]) -> None:
    _, env = plugins
    out = _run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k", "probe or has_a_record",
                "tests/test_attacks.py", "tests/test_learners.py", "tests/test_train.py::test_every_learner_trains_and_reports",
                "tests/test_data_episodes.py", "tests/test_data_registry.py"], env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    # the attack contract (bound, ε = 0, seeds, batching, bad input), the learner checks and training,
    # and the dataset's episodes each ran over the new names
    passed = [line for line in out.stdout.splitlines() if line.startswith("PASSED")]
    for module, name, at_least in (("test_attacks", "probe-two-step", 6), ("test_learners", "probe-maml", 2),
                                   ("test_train", "probe-maml", 1), ("test_data_episodes", "probe-glyphs", 1)):
        ran = [line for line in passed if module in line and name in line]
        assert len(ran) >= at_least, (module, name, out.stdout[-3000:])
    # the record check runs over every registered dataset, the probe's included
    assert any("test_data_registry" in line for line in passed), out.stdout[-3000:]


def test_the_cli_runs_the_new_learner_attack_dataset_and_grid(plugins: tuple[Path, dict[str, str]]) -> None:
    folder, env = plugins
    tune = _run([sys.executable, "-m", "advmeta", "tune", "probe-maml", "--inner-lr", "0.1,0.3", "--budget", "smoke",
                 "--dataset", "probe-glyphs", "--attacks", "pgd,probe-two-step", "--dry-run"], env)
    assert tune.returncode == 0, tune.stderr[-2000:]
    assert "2 trials" in tune.stdout and "probe-maml" in tune.stdout
    sweep = _run([sys.executable, "-m", "advmeta", "sweep", "--grid", str(folder / "probe.toml"), "--budget", "smoke",
                  "--dataset", "probe-glyphs", "--output", str(folder / "out"), "--dry-run"], env)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert "4 trials" in sweep.stdout and "probe-maml" in sweep.stdout and "[probe]" in sweep.stdout
    # without the plugins the same names are unknown: the files above are all that registers them
    bare = {k: v for k, v in env.items() if k != "ADVMETA_PLUGINS"}
    missing = _run([sys.executable, "-m", "advmeta", "tune", "probe-maml", "--dry-run"], bare)
    assert missing.returncode == 2 and "unknown method 'probe-maml'" in missing.stderr


def test_a_plugin_that_does_not_import_is_a_short_error(tmp_path: Path) -> None:
    env = {**os.environ, "ADVMETA_PLUGINS": "no_such_probe_module"}
    out = _run([sys.executable, "-m", "advmeta", "tune", "maml", "--dry-run"], env)
    assert out.returncode == 2 and "ADVMETA_PLUGINS: cannot import no_such_probe_module" in out.stderr
    assert "Traceback" not in out.stderr
