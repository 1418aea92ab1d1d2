"""Shared pieces of the method tests: a per-pixel model, identity views and batch builders.

The per-pixel model (logits = a * RGB) makes every loss computable by hand: a red pixel is class 0 with confidence
``1 / (1 + 2 e^-a)``, green is class 1 alike, a grey pixel has confidence 1/3.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from semiseg_sdk.augment import View

Batch = Dict[str, torch.Tensor]
Colour = Tuple[int, int, int]

A = 5.0
CE0 = math.log(1 + 2 * math.exp(-A))  # CE of a confident red/green pixel against its own class
RED, GREEN, GREY = (255, 0, 0), (0, 255, 0), (128, 128, 128)


class PixelModel(nn.Module):
    """logits = a * image, 3 classes; encode/decode/classify like a Segmentor."""

    def __init__(self, a: float = A) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [x]

    def decode(self, feats: List[torch.Tensor]) -> torch.Tensor:
        return feats[-1]

    def classify(self, dec: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.a * dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.decode(self.encode(x)), x.shape[-2:])


class IdentityViews:
    """Weak view = the batch itself, strong view = identity: the test controls every pixel."""

    def weak(self, batch: Batch) -> View:
        b = batch["image"].shape[0]
        return View(batch["image"].float() / 255, batch["mask"], batch["valid"], torch.eye(2, 3).expand(b, 2, 3))

    def strong(self, image: torch.Tensor) -> torch.Tensor:
        return image


def colour_batch(colours: Sequence[Colour], labels: Optional[Sequence[int]] = None, h: int = 8, w: int = 8) -> Batch:
    """One flat colour per sample; mask = ``labels`` per sample, or 255 (unlabelled) when None; all pixels valid."""
    image = torch.zeros(len(colours), 3, h, w, dtype=torch.uint8)
    for i, c in enumerate(colours):
        image[i] = torch.tensor(c, dtype=torch.uint8)[:, None, None]
    mask = torch.full((len(colours), h, w), 255) if labels is None else torch.tensor(labels)[:, None, None].expand(-1, h, w).clone()
    return {"image": image, "mask": mask, "valid": torch.ones(len(colours), h, w, dtype=torch.bool)}


def unlabelled_batch() -> Batch:
    """Sample 0 red with a grey (unconfident) top row; sample 1 green with its last two columns padding (black)."""
    u = colour_batch([RED, GREEN])
    u["image"][0, :, 0, :] = 128
    u["image"][1, :, :, 6:] = 0
    u["valid"][1, :, 6:] = False
    return u


def random_batch(b: int = 2, size: int = 32, seed: int = 0, unlabelled: bool = False) -> Batch:
    """Random uint8 images and 4-class masks (255 everywhere when ``unlabelled``) from generator ``seed``."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    mask = torch.full((b, size, size), 255) if unlabelled else torch.randint(0, 4, (b, size, size), generator=g)
    return {"image": image, "mask": mask, "valid": torch.ones(b, size, size, dtype=torch.bool)}


def scalar(t: torch.Tensor) -> float:
    """A loss term as a Python float (detached)."""
    return float(t.detach())


def fit_running_stats(net: nn.Module, image: torch.Tensor) -> None:
    """Every BatchNorm of ``net`` gets the running statistics of ``image`` (one train-mode pass at momentum 1)."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0
        m.train()
    with torch.no_grad():
        net(image)
    for m in bns:
        m.momentum = 0.1
        m.eval()


def corrupt_running_stats(net: nn.Module) -> None:
    """Running means + 3, running variances x 50: eval-mode outputs change, batch-statistics outputs do not."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.add_(3.0)
            m.running_var.mul_(50.0)


def teacher_targets(method: nn.Module, x: Batch, u: Batch, steps: int = 2) -> List[torch.Tensor]:
    """Probabilities of ``method.teacher`` in each of ``steps`` training steps on (x, u); the running statistics are
    those of the unlabelled batch, then corrupted after the first step."""
    fit_running_stats(method.teacher.net, u["image"].float() / 255)
    out: List[torch.Tensor] = []
    hook = method.teacher.net.register_forward_hook(lambda mod, inp, logits: out.append(logits.float().softmax(dim=1)))
    for _ in range(steps):
        method.training_step(x, u, 0)
        corrupt_running_stats(method.teacher.net)
    hook.remove()
    return out


def same_images_batches(n: int = 2, size: int = 32, classes: int = 4) -> Tuple[Batch, Batch]:
    """A labelled and an unlabelled batch of the same random images (random labels on the labelled one)."""
    g = torch.Generator().manual_seed(0)
    u = {"image": torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
         "mask": torch.full((n, size, size), 255), "valid": torch.ones(n, size, size, dtype=torch.bool)}
    # labelled images = unlabelled ones: BatchNorm sees the same batch statistics in the weak and the strong forward
    return {**u, "mask": torch.randint(0, classes, (n, size, size), generator=g)}, u


def undropped_mean_neg_log_conf(model: nn.Module, image: torch.Tensor) -> float:
    """mean(-log max softmax) of ``model`` in train mode (BN batch statistics) with its dropout layers inactive."""
    drops = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    for m in drops:
        m.eval()
    with torch.no_grad():
        conf = model(image.float() / 255).float().softmax(dim=1).max(dim=1).values
    for m in drops:
        m.train()
    return float(-conf.log().mean())
