"""Named training recipes: measured settings that one flag applies (``semiseg train --recipe few-labels``).

A recipe is a set of :class:`~semiseg_sdk.config.TrainConfig` values laid between the defaults and the user's own
config file and flags: ``defaults <- recipe <- --config file <- flags``. ``model_args`` and ``method_args`` merge
key by key, so ``--recipe few-labels --model_args '{"channels": 128}'`` keeps the recipe's other model settings;
another ``--method`` drops the recipe's ``method_args`` (they are its method's options).
Each recipe names the benchmark evidence behind it (docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping

from .errors import ConfigError

MERGED_FIELDS = ("model_args", "method_args")  # dict-valued settings that merge key by key


@dataclass(frozen=True)
class Recipe:
    """A named set of TrainConfig values and the measurement that chose them."""

    name: str
    summary: str
    values: Dict[str, Any] = field(default_factory=dict)
    evidence: str = ""


RECIPES: Dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES` (names are unique)."""
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def list_recipes() -> List[str]:
    """Names of the registered recipes."""
    return sorted(RECIPES)


def recipe_values(name: str) -> Dict[str, Any]:
    """The TrainConfig values of recipe ``name`` (a copy); ConfigError naming the known recipes otherwise."""
    if name not in RECIPES:
        raise ConfigError(f"recipe: unknown recipe {name!r}; known: {', '.join(list_recipes()) or 'none'}")
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in RECIPES[name].values.items()}


def apply_recipe(name: str, values: Mapping[str, Any]) -> Dict[str, Any]:
    """``values`` (from a config file and flags) laid over recipe ``name``; ``MERGED_FIELDS`` merge key by key.

    The recipe's ``method_args`` are options of the recipe's method: when ``values`` choose another method
    (``--recipe few-labels --method supervised``, the baseline on the same network), they are left out."""
    out = recipe_values(name)
    if "method" in values and values["method"] != out.get("method"):
        out.pop("method_args", None)
    for key, value in values.items():
        if key in MERGED_FIELDS and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    out["recipe"] = name
    return out


register_recipe(Recipe(
    name="few-labels",
    summary="UniMatch with class-wise thresholds and class-balanced pseudo-label weights, on the light DeepLabV3+ "
            "(EfficientNet-Lite0 with its packaged ImageNet weights, 64 channels, no dropout layers, ASPP rates fitted "
            "to the crop), SGD lr 0.01 with the head at x10",
    values={"method": "unimatch", "model": "deeplabv3plus", "encoder": "efficientnet_lite0", "pretrained": "imagenet",
            "model_args": {"channels": 64, "aspp_rates": "fit", "aspp_dropout": 0.0, "dropout": 0.0},
            "method_args": {"class_thresholds": True, "class_balance": True},
            "lr": 0.01, "head_lr_mult": 10.0},
    evidence="docs/benchmarks.md, converge-cpu protocol, synthetic-driving with 32 labelled images (1/64), 4800 "
             "steps, 3 paired seeds: 55.8 +- 0.3 vs supervised 50.0 +- 1.5 on the same labels (paired gain +5.8 +- "
             "1.8; all labels, seed 0: 62.5). Without the class levers UniMatch gained +0.7 (seed 0 only). "
             "Synthetic-aerial, 32 labelled tiles, 3 paired seeds, without the levers: UniMatch 40.7 +- 2.5 vs "
             "supervised 41.8 +- 1.2; with them 45.2 +- 1.2, paired +3.4 +- 0.7, ahead on all 3 splits (mean-teacher "
             "CutMix with the levers and per-pixel confidence masks: 44.9 +- 0.7, paired +3.1 +- 0.6). Real aerial "
             "patches (23 labelled, 3 paired splits, scored by sliding windows of the 96-px training crop): "
             "supervised 58.7 +- 3.4 (7 runs; runs of a split agree within about a point; all labels 67.6 +- 0.2); "
             "UniMatch with the levers 61.1 +- 3.0, paired +2.4 +- 1.4, ahead on every split; mean-teacher CutMix "
             "with the same levers 60.2 +- 4.3, paired +1.5 +- 1.0; FixMatch with them 58.6 +- 4.3, paired -0.1 +- 1.3",
))
