"""Supervised baseline: cross-entropy on the weak view of labelled images only (the row every table compares with)."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from .base import Method
from .registry import register_method


@register_method("supervised")
class Supervised(Method):
    """Labelled data only; the unlabelled batch is ignored (and not even loaded by the trainer)."""

    family = "baseline (labels only)"
    uses_unlabelled = False

    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        sup = self.supervised_loss(x)["sup"]
        return {"loss": sup, "sup": sup}
