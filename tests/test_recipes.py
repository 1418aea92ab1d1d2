"""Named recipes: laid between the defaults and the user's file and flags; model/method args merge key by key."""
import json

import pytest

from semiseg_sdk import recipes
from semiseg_sdk.config import TrainConfig, resolve_config
from semiseg_sdk.errors import ConfigError


@pytest.fixture
def demo_recipe(monkeypatch):
    monkeypatch.setattr(recipes, "RECIPES", dict(recipes.RECIPES))
    return recipes.register_recipe(recipes.Recipe(
        "demo", "for the test", {"method": "fixmatch", "steps": 123, "lr": 0.005,
                                 "model_args": {"channels": 64, "aspp_rates": "fit"}, "method_args": {"conf_thresh": 0.9}}))


def test_recipe_values_sit_between_defaults_and_flags(demo_recipe, tmp_path):
    cfg = resolve_config(None, {"recipe": "demo"})
    assert (cfg.recipe, cfg.method, cfg.steps, cfg.lr) == ("demo", "fixmatch", 123, 0.005)
    assert cfg.batch_size == TrainConfig().batch_size  # untouched by the recipe: the default
    cfg = resolve_config(None, {"recipe": "demo", "steps": 50, "model_args": {"channels": 128}})
    assert cfg.steps == 50 and cfg.model_args == {"channels": 128, "aspp_rates": "fit"}  # flags win, dicts merge
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"recipe": "demo", "lr": 0.02, "method_args": {"conf_thresh": 0.8}}))
    cfg = resolve_config(str(file), {"method": "unimatch"})
    assert (cfg.lr, cfg.method, cfg.method_args, cfg.steps) == (0.02, "unimatch", {"conf_thresh": 0.8}, 123)


def test_another_method_leaves_the_recipe_method_options_out(demo_recipe):
    """The recipe's method_args belong to its method (fixmatch's conf_thresh): ``--method supervised`` on the same
    recipe keeps the network and budget and takes none of them (supervised has no such option)."""
    from semiseg_sdk.methods import get_method

    cfg = resolve_config(None, {"recipe": "demo", "method": "supervised"})
    assert (cfg.method, cfg.method_args, cfg.steps, cfg.model_args["channels"]) == ("supervised", {}, 123, 64)
    get_method("supervised").make_config(cfg.method_args)
    cfg = resolve_config(None, {"recipe": "demo", "method": "fixmatch", "method_args": {"cutmix_p": 1.0}})
    assert cfg.method_args == {"conf_thresh": 0.9, "cutmix_p": 1.0}  # the recipe's own method: merged


def test_an_unknown_recipe_names_the_known_ones(demo_recipe):
    with pytest.raises(ConfigError, match="unknown recipe 'few-lables'.*demo"):
        resolve_config(None, {"recipe": "few-lables"})


@pytest.mark.parametrize("name", recipes.list_recipes())
def test_every_shipped_recipe_builds_a_valid_config(name):
    cfg = resolve_config(None, {"recipe": name})
    assert cfg.recipe == name and recipes.RECIPES[name].summary and recipes.RECIPES[name].evidence
    from semiseg_sdk.methods import get_method
    get_method(cfg.method).make_config(cfg.method_args)  # its method options exist
