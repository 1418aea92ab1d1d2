"""The method interface: every training method of the SDK is one subclass of :class:`Method`.

A method turns one labelled and one unlabelled device batch into named losses and owns its extra networks
(EMA teacher, second network, discriminator, projector). It never owns the loop, the optimiser schedule or I/O.

Naming inside methods (UniMatch's scheme): ``x`` labelled, ``u`` unlabelled, ``w`` weak view, ``s`` strong view,
``pred_u_w`` the prediction on the weak unlabelled view, ``mask_u_w`` the pseudo-label, ``conf_u_w`` its confidence.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple

import torch
from torch import nn

from ..augment import ViewMaker
from ..errors import ConfigError, did_you_mean
from .labelled_loss import CrossEntropy


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Hyper-parameters shared by all methods; subclasses add theirs with defaults from the official code."""


class StagedRunner(Protocol):
    """What a staged method composes its run from (the engine's ``StagedRun`` implements it): each call is one stage
    in a sub-folder of the run folder, skipped when a resumed run finds it complete."""

    unlabelled: List[int]  # indices of the training images a stage may pseudo-label
    data: Any              # the run's TrainData (datasets, split)

    def train(self, name: str, pseudo: Sequence[Dict] = (), snapshots: Sequence[int] = ()) -> Dict: ...
    def pseudo_label(self, name: str, checkpoint: str, indices: Sequence[int], scales: Sequence[float], flip: bool) -> Dict: ...
    def record(self, name: str, kind: str, work: Callable[[Any], Dict]) -> Dict: ...
    def predict_labels(self, checkpoints: Sequence[str], indices: Sequence[int]) -> Iterator[Tuple[int, List[torch.Tensor]]]: ...
    def finish(self, final: Dict) -> Dict: ...


# ``open_run(budget, tag)``: a new :class:`StagedRunner` for this run, ``budget`` mapping each training stage to its steps
OpenStagedRun = Callable[[Mapping[str, int], str], StagedRunner]


class Method(nn.Module):
    """Base class. Subclasses set ``name``, ``Config`` and implement :meth:`training_step`.

    A method that trains in stages (self-training, ST++) sets ``staged = True`` and implements
    ``run_stages(cfg, open_run: OpenStagedRun) -> summary``: the engine hands it the runner, so methods never import
    the engine."""

    name: ClassVar[str] = "base"
    family: ClassVar[str] = ""  # the method family, shown by `semiseg methods`
    Config: ClassVar[type] = MethodConfig
    uses_unlabelled: ClassVar[bool] = True
    staged: ClassVar[bool] = False

    def __init__(self, model: nn.Module, num_classes: int, views: ViewMaker, config: Any = None, total_steps: int = 1) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.views = views
        self.cfg = config if config is not None else self.Config()
        self.total_steps = max(1, int(total_steps))
        self.labelled_loss: nn.Module = CrossEntropy()  # the run's choice (TrainConfig.sup_loss), see set_labelled_loss

    @classmethod
    def make_config(cls, overrides: Optional[Mapping[str, Any]] = None) -> Any:
        """Build ``cls.Config`` from user overrides, refusing unknown keys with the list of valid ones."""
        overrides = dict(overrides or {})
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"method '{cls.name}': unknown option(s) {unknown}{did_you_mean(unknown[0], fields)} (`semiseg methods {cls.name}` "
                              f"lists them: {', '.join(sorted(fields))})")
        return cls.Config(**overrides)

    # -- the contract -------------------------------------------------------------------------------------------
    def training_step(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        """Return ``{"loss": total, <term>: value, ...}`` for one labelled (and unlabelled) device batch."""
        raise NotImplementedError

    def forward(self, x: Dict[str, torch.Tensor], u: Optional[Dict[str, torch.Tensor]], step: int) -> Dict[str, torch.Tensor]:
        """``training_step`` (so DistributedDataParallel can wrap the whole method)."""
        return self.training_step(x, u, step)

    def param_groups(self, lr: float, head_lr_mult: float) -> List[Dict[str, Any]]:
        """Optimiser groups: student encoder at ``lr``, decoder/head (and method-owned trainable heads) at ``lr*mult``."""
        model = self.model
        backbone = [p for p in model.backbone_parameters() if p.requires_grad]
        seen = {id(p) for p in backbone}
        head = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
        seen |= {id(p) for p in head}
        extra = [p for n, p in self.named_parameters() if p.requires_grad and id(p) not in seen and not n.startswith("model.")]
        groups = [{"params": backbone, "lr": lr, "name": "backbone"}, {"params": head + extra, "lr": lr * head_lr_mult, "name": "head"}]
        return [g for g in groups if g["params"]]

    def after_optimizer_step(self, step: int) -> None:
        """Hook after each optimiser step (EMA updates, extra optimisers)."""

    def set_labelled_loss(self, loss: nn.Module) -> None:
        """Use ``loss(logits, mask)`` (e.g. OHEM) for every labelled term of this method."""
        self.labelled_loss = loss

    def inference_model(self) -> nn.Module:
        """The plain network that evaluation and export use (no training-only parts)."""
        return self.model

    # -- shared helpers -----------------------------------------------------------------------------------------
    def supervised_loss(self, x: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Weak view of the labelled batch -> the labelled loss (CE or OHEM, 255 ignored).

        Returns ``{"sup": loss, "pred_x": logits, "mask_x": the view's mask}``."""
        v = self.views.weak(x)
        pred_x = self.model(v.image)
        return {"sup": self.labelled_loss(pred_x, v.mask), "pred_x": pred_x, "mask_x": v.mask}
