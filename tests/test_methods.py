"""Every registered method x two model families, through the real trainer: a few steps run, the loss is finite,
the student learns, teachers move only by EMA, the inference network is plain, resume restores the state."""
import copy

import pytest
import torch

from semiseg_sdk.config import TrainConfig
from semiseg_sdk.engine import Trainer
from semiseg_sdk.methods import get_method, list_methods
from semiseg_sdk.methods.ema import EMATeacher
from semiseg_sdk.models import build_model

STEP_METHODS = [m for m in list_methods() if not get_method(m).staged]
STAGED_METHODS = [m for m in list_methods() if get_method(m).staged]
MODELS = ["deeplabv3plus", "unet"]


def _cfg(tmp_path, method, model, **kw):
    base = dict(data="synthetic-driving", data_args={"length": 16, "size": [32, 64]}, labelled="1/4", model=model, encoder="tiny",
                method=method, steps=4, batch_size=2, crop_size=(32, 32), eval_every=100, eval_batch_size=4, num_workers=0,
                out=str(tmp_path), name=f"{method}-{model}", progress=False, lr=0.01)
    base.update(kw)
    return TrainConfig(**base)


def _small_val(trainer):
    trainer.data.val = torch.utils.data.Subset(trainer.data.val, range(2))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", STEP_METHODS)
def test_method_contract(tmp_path, method, model):
    torch.manual_seed(0)
    tr = Trainer(_cfg(tmp_path, method, model))
    _small_val(tr)
    student = tr.method.model
    before = copy.deepcopy(student.state_dict())
    teachers = [m for m in tr.method.modules() if isinstance(m, EMATeacher)]
    t_before = [copy.deepcopy(t.state_dict()) for t in teachers]
    for _ in range(3):
        terms = tr.run_step()
        assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values()), terms
        assert "loss" in terms and len(terms) >= 2, terms  # the total and at least one logged term
    changed = [k for k, v in student.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "student weights did not change"
    for t, tb in zip(teachers, t_before):
        assert all(p.grad is None for p in t.parameters()), "a teacher received gradients"
        assert any(not torch.equal(v, tb[k]) for k, v in t.state_dict().items() if v.is_floating_point()), "teacher did not move"
    # the inference network is a plain model of the student's spec: same keys, nothing extra
    net = tr.method.inference_model()
    plain = build_model(**net.spec)
    assert set(net.state_dict()) == set(plain.state_dict())
    assert sum(1 for _ in net.modules()) == sum(1 for _ in plain.modules())
    # resume: last.pt restores the whole method state
    tr.eval_and_save()
    saved = copy.deepcopy(tr.method.state_dict())
    again = Trainer(_cfg(tmp_path, method, model, resume=True))
    assert again.step == 3
    for k, v in again.method.state_dict().items():
        if torch.is_tensor(v):
            assert torch.equal(v.cpu(), saved[k].cpu()), k
    _small_val(again)
    again.run_step()


@pytest.mark.parametrize("method", STAGED_METHODS)
def test_staged_method_end_to_end(tmp_path, method):
    from semiseg_sdk.engine import train

    res = train(_cfg(tmp_path, method, "unet", steps=6, eval_every=2, data_args={"length": 8, "size": [32, 64]}))
    assert 0.0 <= res["best_miou"] <= 1.0 and res["steps"] > 0
