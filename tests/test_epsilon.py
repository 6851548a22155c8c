"""One ε type from the option to the attack's projection (advmeta.eps.Epsilon): parsed once, the
float and its canonical k/255 together, named by its text wherever it is written."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from advmeta.attacks import AttackSpec, get_attack
from advmeta.eps import Epsilon, format_eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.hparams import HParams
from advmeta.learners import get_learner
from advmeta.plan.space import parse_eps_option
from advmeta.plan.trial import EvalSettings, TrialSpec
from advmeta.protocol import EvalProtocol


def test_an_epsilon_is_its_float_and_its_canonical_text() -> None:
    e = Epsilon("16/255")
    assert e == 16 / 255 and isinstance(e, float)
    assert (e.text, str(e), f"{e}", repr(e)) == ("16/255", "16/255", "16/255", "Epsilon('16/255')")
    assert Epsilon(e) is e and parse_eps(e) is e and format_eps(e) == "16/255"
    # the float is the one its text names, exactly (a range's 2/255 + 2/255 is 4/255, not 4/255 ± 1 ulp)
    assert float(Epsilon(2 / 255 + 2 / 255)) == 4 / 255 and Epsilon(0.2 / 255).text == "0.2/255"
    assert pickle.loads(pickle.dumps(e)) == e and pickle.loads(pickle.dumps(e)).text == "16/255"
    with pytest.raises(ConfigError, match="banana"):
        Epsilon("banana")


def test_the_option_is_parsed_once_into_epsilons() -> None:
    values = parse_eps_option("4/255:16/255:4/255", "--eps")
    assert all(isinstance(v, Epsilon) for v in values)
    assert [v.text for v in values] == ["4/255", "8/255", "12/255", "16/255"]
    with pytest.raises(ConfigError, match="128/255"):
        parse_eps_option("200/255", "--eps")


def test_the_attack_gets_the_same_epsilon_object(monkeypatch: pytest.MonkeyPatch) -> None:
    (e,) = parse_eps_option("16/255", "--eps")
    settings = EvalSettings.of({"scenario": "whitebox", "attacks": ["pgd"], "eps": [e]})
    assert settings["eps"][0] is e
    protocol = EvalProtocol(scenarios=("whitebox",), eps=tuple(settings["eps"]))
    assert protocol.eps[0] is e
    spec = AttackSpec("pgd", protocol.eps[0], {"steps": 2})
    assert spec.eps is e and spec.eps_str == "16/255"
    seen: list[object] = []  # the eps the attack function itself is called with
    real = get_attack("pgd")

    def recording(*args: object, eps: object, **kwargs: object) -> torch.Tensor:
        seen.append(eps)
        return real(*args, eps=eps, **kwargs)

    monkeypatch.setattr("advmeta.attacks.spec.get_attack", lambda name: recording)

    def model(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3]

    x = torch.rand(2, 1, 2, 2)
    adv = spec(model, x, torch.tensor([0, 1]))
    assert len(seen) == 1 and seen[0] is e
    assert float((adv - x).abs().max()) <= 16 / 255 + 1e-7


def test_an_epsilon_is_named_by_its_text_in_ids_configs_and_records() -> None:
    """Epsilons and the k/255 text they replace give the same trial (ids of earlier runs hold)."""
    train = {"seed": 0, "dataset": "glyphs", "n_way": 5, "k_shot": 1}
    as_text = TrialSpec("s", "meta", "aq", {"train_eps": "8/255"}, train,
                        ({"scenario": "whitebox", "attacks": ["pgd"], "eps": ["8/255", "16/255"]},))
    as_eps = TrialSpec("s", "meta", "aq", HParams(get_learner("aq").Config, {"train_eps": Epsilon("8/255")}), train,
                       ({"scenario": "whitebox", "attacks": ["pgd"], "eps": [Epsilon("8/255"), Epsilon("16/255")]},))
    assert as_eps.trial_id == as_text.trial_id
    assert as_eps.hparams["train_eps"] == "8/255"  # a config holds the text a checkpoint stores
    assert json.loads(json.dumps(as_eps.to_dict()))["evals"][0]["eps"] == ["8/255", "16/255"]
    assert TrialSpec.from_dict(as_eps.to_dict()).evals[0]["eps"][1].text == "16/255"


def test_a_bank_names_its_epsilons_by_their_text() -> None:
    """A bank's rows are keyed by ε's k/255 (an Epsilon given, as `advmeta episodes --eps` parses it, is written so)."""
    from advmeta.bank import BankSpec

    spec = BankSpec(dataset="glyphs", split="test", n_way=2, k_shot=1, q_query=1, seed=0, n_episodes=2,
                    eps=tuple(parse_eps_option("2/255,0.2/255", "--eps")))
    assert spec.eps == ("2/255", "0.2/255")
    assert BankSpec.from_json(spec.to_json()).eps == ("2/255", "0.2/255")


def test_a_step_size_written_as_text_is_parsed_once_per_spec_and_recorded_as_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[object] = []  # the step size the attack function itself is called with
    real = get_attack("pgd")

    def recording(*args: object, step_size: object, **kwargs: object) -> torch.Tensor:
        steps.append(step_size)
        return real(*args, step_size=step_size, **kwargs)

    monkeypatch.setattr("advmeta.attacks.spec.get_attack", lambda name: recording)
    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    for given, text in (("3/255", "3/255"), ("auto", "4/255")):  # auto at 16/255: ε/4
        spec = AttackSpec("pgd", "16/255", {"steps": 2, "step_size": given})
        for _ in range(2):
            spec(lambda v: v.flatten(1)[:, :3], x, y)
        assert type(steps[-1]) is float and steps[-1] == parse_eps(text)  # what check_step_size made of the text
        assert steps[-1] is steps[-2]  # the same float at every call: parsed once, not per call
        assert json.loads(spec.params_json())["step_size"] == text  # the record names the step as written


def test_the_training_attack_gets_the_options_epsilon_and_what_is_stored_names_it_by_its_text() -> None:
    from advmeta.hparams import config_values
    from advmeta.learners.aq import train_attack_spec

    (e,) = parse_eps_option("16/255", "--eps")
    hp = HParams(get_learner("aq").Config, {"train_eps": e}, "aq")
    assert dict(hp) == {"train_eps": "16/255"}  # the mapping (the trial's id, the checkpoint) names it by its text
    assert hp.config.train_eps is e  # the Config gets the Epsilon itself
    assert HParams.on_dataset(type(hp.config), "omniglot", hp).config.train_eps is e  # and keeps it when re-made
    again = pickle.loads(pickle.dumps(hp))  # as a trial's process gets it through Ray: an Epsilon, not text
    assert type(again.config.train_eps) is Epsilon and again.config.train_eps.text == "16/255"
    spec = train_attack_spec(hp.config)
    assert spec.eps is e and spec.params["step_size"] is e  # AQ's step of ε: the same object, nothing parsed
    values = config_values(hp.config)  # what a checkpoint stores and a row records
    assert values["train_eps"] == "16/255" and values["train_step_size"] == "eps"


def test_an_epsilon_setting_equal_to_its_text_default_is_not_away_from_it() -> None:
    from advmeta.learners.aq import train_attack_spec

    config = get_learner("aq-protonet").Config  # train_step_size defaults to "2/255"; FGSM takes no step size
    spec = train_attack_spec(HParams(config, {"train_attack": "fgsm", "train_attack_steps": 7,
                                              "train_step_size": Epsilon("2/255")}).config)
    assert spec.params == {}
    with pytest.raises(ConfigError, match=r"step_size \(train_step_size = '3/255'\)"):
        train_attack_spec(HParams(config, {"train_attack": "fgsm", "train_step_size": Epsilon("3/255")}).config)
