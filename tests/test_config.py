"""Every config option composes, every _target_ resolves, and start-up validation rejects bad values."""

from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from distill.config import validate_config
from distill.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def targets(node, path=""):
    if OmegaConf.is_dict(node):
        if "_target_" in node:
            yield path, node._target_
        for k in node:
            yield from targets(node._get_node(k), f"{path}.{k}")


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("model", "distiller", "data", "optimizer", "logger") for o in options(g)]
    + [f"experiment={o}" for o in options("experiment")],
)
def test_every_option_composes_and_validates(compose, override):
    cfg = compose(override)
    for group in ("model", "distiller", "data", "optimizer", "logger"):
        assert group in cfg
    for path, target in targets(cfg):
        assert get_object(target) is not None, f"{path}: {target}"
    if override.startswith("model=") and override != "model=embedded":
        return  # hub models: composing is what can be checked offline (keys are checked below)
    validate_config(cfg)


def test_default_has_targets_in_every_group(compose):
    cfg = compose()
    for group in ("distiller", "data", "optimizer", "logger"):
        assert "_target_" in cfg[group], group
    for part in ("tokenizer", "teacher", "student"):
        assert "_target_" in cfg.model[part]
    assert cfg.optimizer._partial_ is True
    assert cfg.distiller._target_.endswith("LogitDistiller")


def test_documented_overrides_compose(compose):
    cfg = compose("distiller=supervised")
    assert cfg.distiller._target_.endswith("SupervisedDistiller")
    cfg = compose("distiller.divergence=jsd", "distiller.beta=0.3")
    validate_config(cfg)
    assert (cfg.distiller.divergence, cfg.distiller.beta) == ("jsd", 0.3)
    cfg = compose("experiment=bert_sst2")
    assert cfg.data.task == "classification" and cfg.model.student.num_hidden_layers == 6


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["distiller.temperature=0"], "distiller.temperature"),
        (["distiller.alpha=1.5"], "distiller.alpha"),
        (["distiller.divergence=jsd", "distiller.beta=2"], "distiller.beta"),
        (["distiller.divergence=kl_magic"], "distiller.divergence"),
        (["+distiller.temprature=2"], "distiller.temprature"),
        (["train.max_steps=-5"], "train.max_steps"),
        (["train.on_nonfinite=ignore"], "train.on_nonfinite"),
        (["data.batch_size=0"], "data.batch_size"),
        (["data.max_length=0"], "data.max_length"),
        (["+data.source.n_trian=5"], "data.source.n_trian"),
        (["optimizer.lr=-1"], "optimizer.lr"),
    ],
)
def test_bad_values_name_the_key(compose, overrides, key):
    with pytest.raises(ConfigError) as err:
        validate_config(compose(*overrides))
    message = str(err.value)
    assert key in message and "\n" not in message
