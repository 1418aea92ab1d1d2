"""DINOv2 ViT-S/14 and ViT-B/14 encoders (Oquab et al. 2023), in the layout of the official checkpoints.

The module names are those of facebookresearch/dinov2's ``vision_transformer.py`` (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``mask_token``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,
mlp.fc2,ls2.gamma}``, ``norm``), so an official file (``dinov2_vits14_pretrain.pth``, ``dinov2_vitb14_pretrain.pth``)
loads with ``--pretrained PATH`` key for key: every key used, none missing (``mask_token`` is the masked-modelling
token of DINOv2's training: a buffer here, loaded and kept, neither used nor trained).

The encoder returns the normalised patch tokens of four blocks (2, 5, 8, 11, as UniMatch V2's DPT takes them) as
(N, D, H/14, W/14) maps, for the ``dpt`` decoder. Position embeddings are interpolated to the input's patch grid as
the official code does (bicubic, scale (n + 0.1) / 37 per side), written as two interpolation matrices built from the
input's size, so the exported ONNX graph stays exact for any multiple of 14 (no size is baked in).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..registries import register_encoder
from ..segmentor import IMAGENET_MEAN, IMAGENET_STD, Encoder

PATCH = 14
PRETRAIN_GRID = 37  # 518 / 14: the official checkpoints' position-embedding grid
INTERPOLATE_OFFSET = 0.1  # the official code adds it to the target grid so that floating point keeps its size
BICUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both branches."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def bicubic_matrix(out_size: torch.Tensor, in_size: int, offset: torch.Tensor) -> torch.Tensor:
    """(out, in) weights of PyTorch's bicubic resize (align_corners=False) at scale (out + offset) / in.

    ``out_size`` is a 0-d integer tensor (traced from the input's shape in an export), so the matrix and the graph
    follow the input size; with ``offset`` 0 and ``out_size == in_size`` the matrix is the identity.
    """
    scale = (out_size.to(torch.float32) + offset) / in_size
    dst = torch.arange(out_size, dtype=torch.float32, device=out_size.device)
    src = (dst + 0.5) / scale - 0.5
    base = torch.floor(src)
    t = (src - base).unsqueeze(1)  # (out, 1)
    a = BICUBIC_A
    x = torch.cat([t + 1, t, 1 - t, 2 - t], dim=1)  # distances to the 4 taps
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    weights = torch.where(x <= 1, near, far)  # (out, 4)
    taps = (base.unsqueeze(1) + torch.arange(-1, 3, device=out_size.device)).clamp(0, in_size - 1)
    grid = torch.arange(in_size, dtype=torch.float32, device=out_size.device)
    return ((taps.unsqueeze(2) == grid).to(weights.dtype) * weights.unsqueeze(2)).sum(1)  # (out, in)


def _size_tensor(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x.shape[dim]`` as a 0-d tensor: already one while tracing for export (so the graph follows the input's size),
    an int made a tensor in eager mode."""
    size = x.shape[dim]
    return size if isinstance(size, torch.Tensor) else torch.tensor(size, device=x.device)


class DinoV2Encoder(Encoder):
    """A DINOv2 ViT with patch size 14; returns the normalised patch tokens of ``layers`` as feature maps."""

    ignored_pretrained_prefixes: Tuple[str, ...] = ("head.",)
    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD
    patch_size = PATCH

    def __init__(self, dim: int, depth: int, heads: int, layers: Sequence[int] = (2, 5, 8, 11),
                 grid: int = PRETRAIN_GRID) -> None:
        super().__init__()
        self.output_stride = PATCH
        self.grid = grid
        self.layers = [int(i) for i in layers]
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.register_buffer("mask_token", torch.zeros(1, dim))  # loaded and kept, never used nor trained
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_channels = [dim] * len(self.layers)
        self.reductions = [PATCH] * len(self.layers)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embedding(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(1, 1 + h * w, D): the class position and the patch grid resized to h x w patches."""
        dim = self.pos_embed.shape[-1]
        table = self.pos_embed[0, 1:].reshape(self.grid, self.grid, dim).float()
        # the official code uses the table as is on the pretraining grid, and resizes it otherwise
        same = (h == self.grid) & (w == self.grid)
        offset = (~same).to(torch.float32) * INTERPOLATE_OFFSET  # on the input's device, traced in an export
        rows, cols = bicubic_matrix(h, self.grid, offset), bicubic_matrix(w, self.grid, offset)
        patches = torch.einsum("hi,ijd,wj->hwd", rows, table, cols).reshape(1, -1, dim)
        return torch.cat([self.pos_embed[:, :1].float(), patches], dim=1).to(self.pos_embed.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the class token in front and position embeddings added."""
        h, w = (_size_tensor(x, dim) // PATCH for dim in (-2, -1))
        patches = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], dim=1)
        return tokens + self.position_embedding(h, w)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        n, h, w = x.shape[0], x.shape[-2] // PATCH, x.shape[-1] // PATCH
        t = self.tokens(x)
        feats = []
        for i, block in enumerate(self.blocks[: max(self.layers) + 1]):
            t = block(t)
            if i in self.layers:
                feats.append(self.norm(t)[:, 1:].transpose(1, 2).reshape(n, -1, h, w))
        return feats


@register_encoder("dinov2_vits14")
def dinov2_vits14(output_stride: int = PATCH) -> DinoV2Encoder:  # noqa: ARG001  (a ViT has one stride)
    """DINOv2 ViT-S/14 (384 wide, 12 blocks); official checkpoint dinov2_vits14_pretrain.pth by --pretrained PATH."""
    return DinoV2Encoder(384, 12, 6)


@register_encoder("dinov2_vitb14")
def dinov2_vitb14(output_stride: int = PATCH) -> DinoV2Encoder:  # noqa: ARG001
    """DINOv2 ViT-B/14 (768 wide, 12 blocks); official checkpoint dinov2_vitb14_pretrain.pth by --pretrained PATH."""
    return DinoV2Encoder(768, 12, 12)


@register_encoder("vit_tiny")
def vit_tiny(output_stride: int = PATCH) -> DinoV2Encoder:  # noqa: ARG001
    """A small ViT in the DINOv2 layout (48 wide, 4 blocks), no pretrained weights (fast tests, smoke runs)."""
    return DinoV2Encoder(48, 4, 3, layers=(0, 1, 2, 3))
