"""DINOv2 encoders + DPT: official checkpoint layout key for key, official position-embedding interpolation, and a
dynamic-size ONNX export that the runtime serves (padding to the patch size read from the metadata)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semiseg_export import export_model
from semiseg_sdk.errors import CheckpointError, ConfigError
from semiseg_sdk.models import build_model
from semiseg_sdk.models.assemble import assemble_segmentor
from semiseg_sdk.models.decoders.dpt import DPTDecoder
from semiseg_sdk.models.encoders import build_encoder
from semiseg_sdk.models.encoders.dinov2 import DinoV2Encoder
from semiseg_sdk.models.encoders.weights import load_encoder_file
from semiseg_serving import Segmenter


def official_layout(dim: int, depth: int, grid: int = 37) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of an official DINOv2 checkpoint (facebookresearch/dinov2 vision_transformer.py, block_chunks=0,
    no registers, MLP feed-forward), written from its structure."""
    keys: Dict[str, Tuple[int, ...]] = {
        "cls_token": (1, 1, dim), "pos_embed": (1, 1 + grid * grid, dim), "mask_token": (1, dim),
        "patch_embed.proj.weight": (dim, 3, 14, 14), "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,), "norm.bias": (dim,),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        keys.update({
            p + "norm1.weight": (dim,), p + "norm1.bias": (dim,),
            p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
            p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,), p + "ls1.gamma": (dim,),
            p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
            p + "mlp.fc1.weight": (4 * dim, dim), p + "mlp.fc1.bias": (4 * dim,),
            p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,), p + "ls2.gamma": (dim,),
        })
    return keys


def random_checkpoint(path: Path, layout: Dict[str, Tuple[int, ...]]) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in layout.items()}
    torch.save(state, path)
    return state


@pytest.mark.parametrize("name,dim", [("dinov2_vits14", 384), ("dinov2_vitb14", 768)])
def test_the_encoders_have_the_official_checkpoint_layout(name, dim):
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        own = {k: tuple(v.shape) for k, v in build_encoder(name).state_dict().items()}
    assert own == official_layout(dim, 12)


def test_an_official_file_loads_key_for_key_and_a_wrong_one_is_named(tmp_path):
    enc = DinoV2Encoder(32, 3, 2, layers=(0, 1, 2, 2))
    state = random_checkpoint(tmp_path / "dinov2.pth", official_layout(32, 3))
    load_encoder_file(enc, tmp_path / "dinov2.pth", enc.ignored_pretrained_prefixes)
    loaded = enc.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())  # every key used, none missing
    del state["blocks.1.ls2.gamma"]
    state["blocks.1.mlp.w12.weight"] = torch.zeros(3)  # a SwiGLU key (the giant model's feed-forward)
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth.*missing keys \['blocks\.1\.ls2\.gamma'\].*unexpected keys "
                                              r"\['blocks\.1\.mlp\.w12\.weight'\]"):
        load_encoder_file(DinoV2Encoder(32, 3, 2), tmp_path / "other.pth")


def test_vit_s_loads_through_the_model_builder(tmp_path):
    state = random_checkpoint(tmp_path / "dinov2_vits14_pretrain.pth", official_layout(384, 12))
    model = build_model("dpt", encoder="dinov2_vits14", num_classes=4, pretrained=str(tmp_path / "dinov2_vits14_pretrain.pth"))
    assert torch.equal(model.encoder.blocks[7].mlp.fc1.weight, state["blocks.7.mlp.fc1.weight"])
    assert model.size_divisor == 14 and model.spec["projections"] == [48, 96, 192, 384] and model.spec["features"] == 64
    with pytest.raises(ConfigError, match="not a ViT"):
        build_model("dpt", encoder="tiny")


@pytest.mark.parametrize("h,w", [(4, 4), (2, 7), (37, 37), (40, 30)])
def test_position_embeddings_follow_the_official_interpolation(h, w):
    """Bicubic at scale (n + 0.1) / 37 per side as the official code calls F.interpolate; the table itself at 37x37."""
    enc = DinoV2Encoder(16, 1, 2, layers=(0,))
    table = enc.pos_embed[:, 1:].reshape(1, 37, 37, 16).permute(0, 3, 1, 2)
    if (h, w) == (37, 37):
        expected = table
    else:
        expected = F.interpolate(table, scale_factor=((h + 0.1) / 37, (w + 0.1) / 37), mode="bicubic", antialias=False)
    got = enc.position_embedding(torch.tensor(h), torch.tensor(w))
    assert torch.equal(got[:, :1], enc.pos_embed[:, :1])
    got = got[:, 1:].reshape(1, h, w, 16).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_dpt_exports_with_dynamic_sizes_and_the_runtime_serves_it(tmp_path):
    torch.manual_seed(0)
    enc = DinoV2Encoder(32, 4, 2, layers=(0, 1, 2, 3))
    model = assemble_segmentor("dpt", "dinov2_vits14", enc, DPTDecoder(enc.out_channels, 16, (8, 16, 32, 32)), 3, 14,
                               0.0, {})
    out = tmp_path / "dpt.onnx"
    summary = export_model(model, str(out), check_sizes=[(28, 42), (70, 98)], verbose=False)
    assert summary["max_abs_diff"] < 1e-4 and summary["argmax_agreement"] == 1.0 and summary["size_divisor"] == 14
    seg = Segmenter(str(out))
    image = np.random.default_rng(0).integers(0, 256, (50, 61, 3), dtype=np.uint8)  # not a multiple of 14: padded
    padded = np.pad(image, ((0, 6), (0, 9), (0, 0)), mode="reflect")
    with torch.no_grad():
        expected = model(torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255)[0, :, :50, :61].argmax(0)
    assert np.mean(seg.predict(image) == expected.numpy()) > 0.99
