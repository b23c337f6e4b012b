"""Every config option composes (the glob idea of lightning-hydra-template), every _target_
imports, the schemas type the groups, and start-up validation rejects bad values in one line."""

from __future__ import annotations

import os

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from distill.config.checks import validate_config
from distill.core.errors import ConfigError
from distill.loop import TrainSettings
from tests.conftest import CONF, compose

GROUPS = ("model", "distiller", "data", "optimizer", "logger")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def targets(node, path=""):
    if OmegaConf.is_dict(node):
        if "_target_" in node:
            yield path, node._target_
        for k in node:
            yield from targets(node._get_node(k), f"{path}.{k}")


@pytest.mark.parametrize(
    "overrides",
    [[f"{g}={o}"] for g in GROUPS for o in options(g)]
    + [[f"experiment={o}"] for o in options("experiment")]
    + [[f"debug={o}"] for o in options("debug")]
    + [[f"experiment={e}", f"debug={d}"] for e in options("experiment") for d in options("debug")],
    ids=" ".join,
)
def test_every_option_composes_and_validates(overrides):
    cfg = compose(*overrides)
    for group in GROUPS:
        assert group in cfg
    for path, target in targets(cfg):
        assert callable(get_object(target)), f"{path}: {target}"
    hub = (
        any(o.startswith("model=") and o != "model=embedded" for o in overrides) or "experiment=bert_sst2" in overrides
    )
    if not hub:  # hub models need the network to build; composing and key checks are what runs offline
        validate_config(cfg)


def test_hparams_search_presets_compose_as_multiruns():
    for option in options("hparams_search"):
        cfg = compose(f"hparams_search={option}", return_hydra_config=True)
        assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
        assert cfg.monitor == "accuracy"


def test_debug_smoke_stacks_on_an_experiment():
    cfg = compose("experiment=bert_sst2", "debug=smoke")
    assert cfg.train.max_steps == 12 and cfg.data.max_train_examples == 512
    assert cfg.distiller.temperature == 2.0 and cfg.distiller.hidden_weight == 0.15  # the experiment stays
    assert cfg.data.task == "classification"


def test_defaults_come_from_the_schemas():
    cfg = compose()
    assert OmegaConf.get_type(cfg.train) is TrainSettings
    assert cfg.train.max_steps == TrainSettings.max_steps and cfg.train.eval_every == TrainSettings.eval_every
    assert cfg.distiller._target_ == "distill.distillers.LogitDistiller"
    assert (cfg.distiller.temperature, cfg.distiller.alpha, cfg.distiller.divergence) == (2.0, 0.5, "forward_kl")
    assert cfg.data._target_ == "distill.data.TaskData" and cfg.data.max_length == 96
    assert cfg.optimizer._partial_ is True
    assert cfg.paths.cache_dir == os.environ["DISTILL_CACHE"]  # the resolver reads it: set once, in Python


@pytest.mark.parametrize(
    "override, error",
    [
        ("train.max_steps=abc", ValidationError),  # wrong type
        ("train.max_stpes=5", ConfigCompositionException),  # unknown key
        ("distiller.temprature=2", ConfigCompositionException),
        ("distiller.alpha=high", ValidationError),
        ("data.batch_size=1.5", ValidationError),
        ("experiment=any_typo", ConfigCompositionException),
    ],
)
def test_hydra_refuses_types_and_unknown_keys(override, error):
    with pytest.raises((error, ConfigCompositionException)) as info:
        compose(override)
    key = override.split("=")[0]
    text = f"{info.value} {info.value.__cause__ or ''}"
    assert key.split(".")[-1] in text or "any_typo" in text


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["distiller.temperature=0"], "distiller.temperature"),
        (["distiller.alpha=1.5"], "distiller.alpha"),
        (["distiller.divergence=jsd", "distiller.beta=2"], "distiller.beta"),
        (["distiller.divergence=jsd", "distiller.beta=0"], "distiller.beta"),
        (["distiller.divergence=kl_magic"], "distiller.divergence"),
        (["+distiller.temprature=2"], "distiller.temprature"),
        (["+train.seed=1"], "train.seed"),
        (["+train.output_dir=x"], "train.output_dir"),
        (["+train.lr=0.1"], "train.lr"),
        (["train.max_steps=-5"], "train.max_steps"),
        (["train.max_grad_norm=0"], "train.max_grad_norm"),
        (["train.on_nonfinite=ignore"], "train.on_nonfinite"),
        (["+data.source.n_trian=5"], "data.source.n_trian"),
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["distiller=onpolicy", "distiller.lmbda=2"], "distiller.lmbda"),
        (["distiller=language", "distiller.top_p=0"], "distiller.top_p"),
        (["distiller.chunk_size=-1"], "distiller.chunk_size"),
        (["distiller.teacher_cache=top_k", "distiller.teacher_cache_size=0"], "distiller.teacher_cache_size"),
        (["distiller.teacher_cache_size=0"], "distiller.teacher_cache_size"),
        (["distiller.teacher_cache_temperature=0"], "distiller.teacher_cache_temperature"),
        (["distiller.teacher_cache=top_k", "distiller.divergence=jsd"], "distiller.divergence"),
        (["distiller.teacher_cache=all"], "distiller.teacher_cache"),
        (["distiller.layer_map=[7]"], "distiller.layer_map"),
        (["distiller.hidden_loss=l1"], "distiller.hidden_loss"),
        (["distiller=language", "distiller.num_samples=2"], "distiller.num_samples"),
        (["distiller=language", "distiller.generation_batch_size=0"], "distiller.generation_batch_size"),
        (["distiller=onpolicy", "distiller.max_length=0"], "distiller.max_length"),
        (["distiller=supervised", "distiller.chunk_size=big"], "distiller.chunk_size"),
        (["+distiller.teacher_model=x"], "distiller.teacher_model"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        validate_config(compose(*overrides))
    message = str(err.value)
    assert key in message and "\n" not in message


def test_runner_keys_say_where_to_set_them():
    with pytest.raises(ConfigError, match=r"train.seed is set by the runner: set the top-level seed"):
        validate_config(compose("+train.seed=1"))
    with pytest.raises(ConfigError, match=r"train.output_dir is set by the runner: set hydra.run.dir"):
        validate_config(compose("+train.output_dir=x"))


@pytest.mark.parametrize("name", ["logit", "supervised", "language", "onpolicy"])
def test_every_yaml_option_names_the_class_it_builds(name):
    text = (CONF / "distiller" / f"{name}.yaml").read_text()
    assert f"_target_: distill.distillers.{name.title().replace('Onpolicy', 'OnPolicy')}Distiller" in text
    for group in ("data", "logger"):
        for path in (CONF / group).glob("*.yaml"):
            assert "_target_:" in path.read_text(), path


def test_a_layer_map_that_is_not_pairs_says_what_a_layer_map_is():
    with pytest.raises(ConfigError) as err:
        validate_config(compose("distiller.layer_map=[7]"))
    assert "[student layer, teacher layer] pairs" in str(err.value)


@pytest.mark.parametrize("model", [o for o in options("model")])
def test_a_student_born_from_the_teacher_composes_with_every_model(model):
    cfg = compose(f"model={model}", "model/student=from_teacher")
    assert cfg.model.student._target_ == "distill.models.student_from_teacher"
    assert set(cfg.model.student) == {"_target_", "layers", "n"}  # nothing of another student's node leaks in
    validate_config(cfg)  # key checks only: hub models are not loaded


@pytest.mark.parametrize("model, student", [("smollm2", "smollm2_135m"), ("qwen2.5", "qwen2.5_0.5b")])
def test_pretrained_pairs_default_to_their_pretrained_student(model, student):
    cfg = compose(f"model={model}")
    assert (
        cfg.model.student.name_or_path
        == compose(f"model={model}", f"model/student={student}").model.student.name_or_path
    )
    assert "Instruct" in cfg.model.student.name_or_path
