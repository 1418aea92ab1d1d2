"""Put one kind of layer of some networks in train or eval mode for a block; every other layer keeps its mode.

Official codes predict their pseudo-labels with networks in train mode. Where the layers whose behaviour depends on
the mode differ between their networks and ours, these give the official behaviour on ours: :func:`dropout_off` for
targets of official networks without dropout (UniMatch's, TorchSemiSeg's and CCT's DeepLab/PSP heads, where our
DeepLab-v3+ has ASPP and classifier dropout), :func:`bn_batch_stats` for EMA teachers that predict in train mode
(ClassMix, ReCo, PS-MT: ``ema_model.train()``).
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from torch import nn


@contextlib.contextmanager
def layers_in_mode(nets: Iterable[nn.Module], kind: type, training: bool) -> Iterator[None]:
    """Layers of type ``kind`` in ``nets`` in train (``training``) or eval mode within the block; modes restored."""
    layers = [m for net in nets for m in net.modules() if isinstance(m, kind)]
    modes = [m.training for m in layers]
    for m in layers:
        m.train(training)
    try:
        yield
    finally:
        for m, mode in zip(layers, modes):
            m.train(mode)


def bn_batch_stats(*nets: nn.Module, enabled: bool = True) -> contextlib.AbstractContextManager:
    """BatchNorm layers on the batch's own statistics (train mode: running statistics updated too); dropout keeps its
    mode. ``enabled=False``: changes nothing."""
    return layers_in_mode(nets, nn.modules.batchnorm._BatchNorm, True) if enabled else contextlib.nullcontext()


def dropout_off(*nets: nn.Module, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Dropout layers as identities (eval mode); BatchNorm keeps its mode. ``enabled=False``: changes nothing.

    Functional dropout (``F.dropout2d(..., training=True)``, UniMatch's feature perturbation) is unaffected."""
    return layers_in_mode(nets, nn.modules.dropout._DropoutNd, False) if enabled else contextlib.nullcontext()
