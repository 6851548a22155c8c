"""docs/plugins.md works as written: its example learner, attack and dataset (docs/examples/plugins/)
are files named in ADVMETA_PLUGINS, by path, and its commands run and print what the page says.

The page's command block is read from the page itself and run in bash from the repository root
(with the data folder it names replaced by a temporary one), so the page and the test cannot drift.
The registry-wide tests then pick the three files up, a pickled trial of the plugin learner loads in
a fresh process (as in a Ray trial), and a bad path is one line and exit 2. The page's real run
(Ray, about a minute) is the slow test.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "plugins.md"
EXAMPLES = REPO / "docs" / "examples" / "plugins"


def _block(marker: str) -> str:
    text = PAGE.read_text()
    found = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)```\n<!-- end {marker} -->", text, re.S)
    assert found, f"docs/plugins.md has no {marker} block"
    return found.group(1)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADVMETA_PLUGINS", "ADVMETA_DATA")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _bash(script: str, data: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    script = script.replace("/tmp/my-data", str(data)).replace("/tmp/my-run", str(data.parent / "run"))
    advmeta = f'advmeta() {{ "{sys.executable}" -m advmeta "$@"; }}\npython() {{ "{sys.executable}" "$@"; }}\n'
    return subprocess.run(["bash", "-c", "set -e\n" + advmeta + script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def page_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    data = tmp_path_factory.mktemp("plugins") / "my-data"
    return data, _bash(_block("plugin-commands"), data, _env())


def test_the_pages_commands_run_and_print_what_it_says(page_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    data, out = page_run
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (data / "image-folders" / "splits.json").is_file()
    assert re.search(rf"image-folders\s+{re.escape(str(data))}/image-folders", out.stdout), out.stdout
    for option in ("--train-eps", "--train-steps", "--clean-weight", "--inner-lr"):
        assert option in out.stdout
    assert "2 trials" in out.stdout
    assert re.search(r"aq-mix 5w1s clean_weight=0 ", out.stdout) and "clean_weight=1 " in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.slow  # tests/test_one_file_extensions.py checks the same pick-up in the default run
def test_the_registry_wide_tests_pick_up_the_three_files(page_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    data, _ = page_run
    plugins = ",".join(str(EXAMPLES / f) for f in ("aq_mix_learner.py", "bim_attack.py", "folder_dataset.py"))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k",
                          "bim or aq-mix or image-folders", "tests/test_attacks.py", "tests/test_learners.py",
                          "tests/test_train.py::test_every_learner_trains_and_reports", "tests/test_data_episodes.py"],
                         cwd=REPO, env=_env(ADVMETA_PLUGINS=plugins, ADVMETA_DATA=str(data)), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    passed = [line for line in out.stdout.splitlines() if line.startswith("PASSED")]
    for module, name, at_least in (("test_attacks", "bim", 7), ("test_learners", "aq-mix", 2),
                                   ("test_train", "aq-mix", 1), ("test_data_episodes", "image-folders", 1)):
        assert len([p for p in passed if module in p and name in p]) >= at_least, (module, name, out.stdout[-3000:])


def test_a_pickled_trial_of_the_plugin_learner_loads_where_only_the_variable_names_it(tmp_path: Path) -> None:
    """Ray hands a trial's spec to a fresh process, which has not imported the plugin yet."""
    plugin = str(EXAMPLES / "aq_mix_learner.py")
    code = ("import os, pickle, sys; from advmeta.hparams import HParams; from advmeta.learners import get_learner; "
            "hp = HParams(get_learner('aq-mix').Config, {'clean_weight': 0.25}); sys.stdout.buffer.write(pickle.dumps(hp))")
    made = subprocess.run([sys.executable, "-c", code], env=_env(ADVMETA_PLUGINS=plugin), capture_output=True,
                          timeout=120, cwd=tmp_path)
    assert made.returncode == 0, made.stderr.decode()[-2000:]
    load = ("import pickle, sys; hp = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(hp.config).__name__, hp.config.clean_weight, dict(hp))")
    back = subprocess.run([sys.executable, "-c", load], input=made.stdout, env=_env(ADVMETA_PLUGINS=plugin),
                          capture_output=True, timeout=120, cwd=tmp_path)
    assert back.returncode == 0, back.stderr.decode()[-2000:]
    assert back.stdout.decode().split() == ["AQMixConfig", "0.25", "{'clean_weight':", "0.25}"]
    assert pickle.loads(pickle.dumps(made.stdout)) == made.stdout


@pytest.mark.parametrize("entry, message", [
    ("docs/examples/plugins/no_such_file.py", "ADVMETA_PLUGINS: no file docs/examples/plugins/no_such_file.py"),
    ("no_such_module_anywhere", "ADVMETA_PLUGINS: cannot import no_such_module_anywhere: No module named"),
])
def test_a_bad_plugin_is_one_line_and_exit_2(entry: str, message: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from advmeta.cli.app import main
    from advmeta.registry import import_plugins

    monkeypatch.setenv("ADVMETA_PLUGINS", entry)
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["advmeta", "tune", "maml", "--dataset", "glyphs", "--dry-run"])
    import advmeta.learners._registry as reg

    monkeypatch.setattr(reg.LEARNERS, "_discovered", False)  # the command discovers (and imports plugins) again
    with pytest.raises(SystemExit) as ex:
        main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert ex.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    with pytest.raises(Exception, match=re.escape(message)):
        import_plugins()


def test_a_plugin_that_fails_while_importing_names_the_file_and_line(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from advmeta.errors import ConfigError
    from advmeta.registry import import_plugins

    bad = tmp_path / "broken_plugin_probe.py"
    bad.write_text("x = 1\nraise RuntimeError('boom')\n")
    monkeypatch.setenv("ADVMETA_PLUGINS", str(bad))
    with pytest.raises(ConfigError) as err:
        import_plugins()
    assert str(err.value) == f"ADVMETA_PLUGINS: {bad} failed while importing (line 2): RuntimeError: boom"
    assert "broken_plugin_probe" not in sys.modules  # nothing half-imported is left behind


@pytest.mark.slow
def test_the_pages_run_trains_and_evaluates_with_the_three_files(
        page_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    import pandas as pd

    data, _ = page_run
    plugins = ",".join(f"docs/examples/plugins/{f}" for f in ("aq_mix_learner.py", "bim_attack.py", "folder_dataset.py"))
    out = _bash(_block("plugin-run"), data, _env(ADVMETA_PLUGINS=plugins))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    s = pd.read_parquet(data.parent / "run" / "summary.parquet")
    assert set(s["method"]) == {"aq-mix"} and (s["status"] == "ok").all()
    assert {"pgd", "bim", "worst"} <= set(s["attack"]) and set(s["dataset"]) == {"image-folders"}
    assert set(s["hp_clean_weight"]) == {0.0, 1.0}
