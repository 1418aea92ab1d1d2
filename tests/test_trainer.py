"""The training loop: loss falls, the run folder is complete, resume reproduces the uninterrupted run, bad input."""
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from semiseg_sdk.config import TrainConfig, resolve_config
from semiseg_sdk.engine import AfterStep, StopAtStep, Trainer, train
from semiseg_sdk.models import load_checkpoint, load_inference_model
from semiseg_sdk.errors import TrainingInterrupted
from semiseg_sdk.errors import CheckpointError, ConfigError


def tiny_cfg(tmp_path, **kw):
    base = dict(data="synthetic-driving", data_args={"length": 24, "size": [32, 64]}, labelled="1/4", model="deeplabv3plus",
                encoder="tiny", steps=8, batch_size=2, crop_size=(32, 32), eval_every=4, eval_batch_size=4, log_every=2,
                num_workers=0, out=str(tmp_path), name="run", progress=False, val_split="val", lr=0.01)
    base.update(kw)
    cfg = TrainConfig(**base)
    return cfg


def _val_small(monkeypatch):
    """Evaluate on 4 val images only (the dataset kwargs are shared by train and val)."""
    from semiseg_sdk.engine import data_setup

    orig = data_setup.build_train_data

    def small(cfg, split_path):
        d = orig(cfg, split_path)
        d.val = torch.utils.data.Subset(d.val, range(4))
        return d

    monkeypatch.setattr(data_setup, "build_train_data", small)
    monkeypatch.setattr("semiseg_sdk.engine.trainer.build_train_data", small)


def test_run_folder_has_config_metrics_checkpoints(tmp_path, monkeypatch):
    _val_small(monkeypatch)
    res = train(tiny_cfg(tmp_path))
    run = Path(res["run_dir"])
    for name in ("config.json", "metrics.jsonl", "train.log", "best.pt", "last.pt", "split.json", "confusion.png", "confusion.csv"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "supervised" and cfg["resolved"]["labelled_images"] == 6
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "eval" in l] == [4, 8]
    assert all("loss" in l and "sup" in l for l in lines if "eval" not in l)
    model, ckpt = load_inference_model(run)
    assert ckpt["dataset"]["name"] == "synthetic-driving" and "trainer_state" not in ckpt
    for name in ("best.pt", "last.pt"):  # plain data: torch's weights-only loader needs no allow-list for them
        assert torch.load(run / name, weights_only=True)["step"] == 8
    # the model comes back on map_location, not only its loaded tensors (ST++ on CUDA fed a CPU model CUDA images)
    moved, to = [], torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(str(a[0] if a else k["device"])) or to(self, *a, **k))
    load_inference_model(run, map_location="cpu")
    assert moved == ["cpu"]
    assert "trainer_state" in load_checkpoint(run / "last.pt")
    assert 0.0 <= res["best_miou"] <= 1.0


def test_non_finite_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A NaN loss at step 5 is caught at the next check (log or checkpoint) without a host sync per step; the
    checkpoint of step 4 stays as it was and no checkpoint holds the weights the bad step made."""
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, steps=8, eval_every=4, log_every=100))
    forward = trainer.ddp

    def poisoned(x, u, step):
        out = forward(x, u, step)
        return {**out, "loss": out["loss"] * float("nan")} if step == 5 else out

    trainer.ddp = poisoned
    with pytest.raises(FloatingPointError, match=r"step 5: loss is not finite"):
        trainer.fit()
    last = load_checkpoint(Path(trainer.run.root) / "last.pt")
    assert last["step"] == 4
    assert all(torch.isfinite(v).all() for v in last["model_state"].values() if v.is_floating_point())
    # the step itself does not raise (no sync); the check does, and names the first bad step
    assert trainer.step == 8
    with pytest.raises(FloatingPointError, match="step 5"):
        trainer.check_finite()


def test_supervised_loss_falls(tmp_path, monkeypatch):
    _val_small(monkeypatch)
    cfg = tiny_cfg(tmp_path, steps=120, eval_every=120, log_every=40, labelled="all", batch_size=4, lr=0.02)
    trainer = Trainer(cfg)
    trainer.fit()
    losses = [json.loads(l)["loss"] for l in (Path(cfg.out) / "run" / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    # means over 40 steps each: every window lower than the one before, the last at least 20 % below the first
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("weight_ema", [0.0, 0.9])
def test_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch, weight_ema):
    """Stopped at step 4 and resumed to 8: the same trained weights and the same saved network (with
    ``weight_ema``, the average of the weights, which last.pt carries across the stop)."""
    _val_small(monkeypatch)
    full = Trainer(tiny_cfg(tmp_path, name="full", weight_ema=weight_ema))
    full.fit()
    # interrupted: a hook stops the run at step 4 (last.pt), then a new Trainer resumes it to 8
    part = Trainer(tiny_cfg(tmp_path, name="part", steps=8, weight_ema=weight_ema))
    assert part.fit(hooks=[StopAtStep(4)])["stopped"] == "step 4"
    assert load_checkpoint(Path(part.run.root) / "last.pt")["step"] == 4
    del part
    resumed = Trainer(tiny_cfg(tmp_path, name="part", steps=8, resume=True, weight_ema=weight_ema))
    assert resumed.step == 4
    resumed.fit()
    a = full.method.state_dict()
    b = resumed.method.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    saved_a, saved_b = (load_checkpoint(t.run.last)["model_state"] for t in (full, resumed))
    for k in saved_a:
        assert torch.allclose(saved_a[k].float(), saved_b[k].float(), atol=1e-6), k


def test_a_resume_that_changes_the_scoring_warns_and_one_that_keeps_it_does_not(tmp_path, monkeypatch):
    """A resume with another eval window says that the curve now mixes two scorings (naming both windows, the step
    and best.pt's score, also in train.log); a resume with the run's own window is silent."""
    import warnings

    from semiseg_sdk.engine import ScoringChangeWarning

    _val_small(monkeypatch)
    part = Trainer(tiny_cfg(tmp_path, name="part"))
    part.fit(hooks=[StopAtStep(4)])
    best = part.best_miou
    part.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScoringChangeWarning)
        Trainer(tiny_cfg(tmp_path, name="part", resume=True)).close()
    match = (r"last\.pt was scored with eval_mode 'auto' on 32x32 windows, this resume scores with eval_mode 'auto' on "
             rf"48x48 windows: evaluations from step 4 on do not compare .* best\.pt's {100 * best:.2f}")
    with pytest.warns(ScoringChangeWarning, match=match):
        resumed = Trainer(tiny_cfg(tmp_path, name="part", resume=True, eval_window=(48, 48)))
    resumed.close()
    assert "this resume scores with eval_mode 'auto' on 48x48 windows" in (resumed.run.root / "train.log").read_text()


def test_a_resume_on_another_thread_count_warns_and_one_on_the_same_does_not(tmp_path, monkeypatch):
    """last.pt records the torch threads it was trained on; resuming on another count warns (naming last.pt and
    both counts, also in train.log), resuming on the same count is silent."""
    import warnings

    from semiseg_sdk.engine import ThreadCountWarning

    _val_small(monkeypatch)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        part = Trainer(tiny_cfg(tmp_path, name="part"))
        part.fit(hooks=[StopAtStep(4)])
        assert load_checkpoint(part.run.last)["trainer_state"]["threads"] == 1
        part.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error", ThreadCountWarning)
            Trainer(tiny_cfg(tmp_path, name="part", resume=True)).close()
        torch.set_num_threads(2)
        with pytest.warns(ThreadCountWarning, match=r"last\.pt was trained on 1 torch thread\(s\), this process has 2"):
            resumed = Trainer(tiny_cfg(tmp_path, name="part", resume=True))
        resumed.close()
        assert "was trained on 1 torch thread(s)" in (resumed.run.root / "train.log").read_text()
        assert json.loads((resumed.run.root / "config.json").read_text())["resolved"]["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_weight_ema_evaluates_and_saves_the_average_of_the_weights_after_each_step(tmp_path, monkeypatch):
    """momentum 0.5 with warm-up, a_t = min(1 - 1/(t+1), 0.5): after steps 1, 2, 3 the average is w1, then
    (w1 + w2) / 2, then (w1 + w2) / 4 + w3 / 2 (float BatchNorm statistics alike, the step counters copied).
    last.pt and best.pt hold that average, the trainer state the student (w3), and the logged mIoU is the average's."""
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, steps=3, eval_every=3, weight_ema=0.5))
    seen = []
    trainer.fit(hooks=[AfterStep(lambda loop: seen.append(
        {k: v.detach().clone() for k, v in loop.method.inference_model().state_dict().items()}))])
    w1, w2, w3 = seen
    ckpt = load_checkpoint(trainer.run.last)
    saved, student = ckpt["model_state"], ckpt["trainer_state"]["method"]
    moved = 0
    for k, v in saved.items():
        if not v.dtype.is_floating_point:
            assert torch.equal(v, w3[k]), k
            continue
        want = 0.25 * w1[k] + 0.25 * w2[k] + 0.5 * w3[k]
        assert torch.allclose(v, want, atol=1e-6), k
        moved += not torch.allclose(v, w3[k], atol=1e-6)
    assert moved > 0  # the average is not the last weights
    assert all(torch.equal(student[f"model.{k}"], w3[k]) for k in w3)
    best = load_checkpoint(trainer.run.best)
    assert all(torch.equal(best["model_state"][k], saved[k]) for k in saved)
    assert trainer.inference_model() is trainer.weight_average.net
    assert trainer.evaluate()["miou"] == pytest.approx(ckpt["metrics"]["miou"], abs=1e-9)
    with pytest.raises(ConfigError, match="weight_ema must be a momentum"):
        tiny_cfg(tmp_path, weight_ema=1.0)


def test_evaluate_and_export_weights_trained_use_a_weight_average_runs_weights_as_trained(tmp_path):
    """A --weight_ema run saves the average and keeps the trained weights beside it: ``--weights trained`` loads,
    evaluates (into its own eval folder) and exports those, the default the average; a run without an average
    refuses it."""
    from semiseg_sdk.data import build_dataset
    from semiseg_sdk.engine.evaluator import evaluate, evaluate_checkpoint
    from fixtures_data import make_folder_tree

    root = make_folder_tree(tmp_path / "field", {"train": 6, "val": 2, "test": 3}, size=(32, 32),
                            classes=["ground", "roof", "water"])
    cfg = dict(data="folder", data_root=str(root), data_args={}, labelled="all", steps=3, eval_every=3)
    trainer = Trainer(tiny_cfg(tmp_path, name="ema", weight_ema=0.5, **cfg))
    trainer.fit()
    student, average = trainer.method.inference_model().state_dict(), trainer.weight_average.net.state_dict()
    for name in ("best.pt", "last.pt"):
        trained = load_inference_model(trainer.run.root / name, weights="trained")[0].state_dict()
        saved = load_inference_model(trainer.run.root / name)[0].state_dict()
        assert all(torch.equal(trained[k], student[k]) for k in student), name
        assert all(torch.equal(saved[k], average[k]) for k in average), name
    assert any(not torch.equal(student[k], average[k]) for k in student)  # two different networks
    test = build_dataset("folder", split="test", root=str(root))
    want = evaluate(trainer.method.inference_model(), test, 3, test.info.classes, torch.device("cpu"))["miou"]
    out = evaluate_checkpoint(str(trainer.run.root), split="test", device="cpu", weights="trained")
    assert out["miou"] == pytest.approx(want, abs=1e-9) and out["weights"] == "trained"
    assert out["saved_to"] == str(trainer.run.root / "eval-folder-test-trained")
    assert json.loads((trainer.run.root / "eval-folder-test-trained" / "metrics.json").read_text())["weights"] == "trained"
    from semiseg_export import export_checkpoint
    from semiseg_serving import Segmenter

    image = torch.rand(1, 3, 32, 32)
    for weights, net in (("trained", trainer.method.inference_model()), ("saved", trainer.weight_average.net)):
        onnx_file = tmp_path / f"{weights}.onnx"
        export_checkpoint(str(trainer.run.root), str(onnx_file), check_sizes=[(32, 32)], verbose=False, weights=weights)
        seg = Segmenter(str(onnx_file))
        assert seg.metadata.source.get("weights", "saved") == weights
        with torch.no_grad():
            want_logits = net.eval()(image).numpy()
        assert np.abs(seg.run(image.numpy()) - want_logits).max() < 1e-3 * max(1.0, np.abs(want_logits).max())
    plain = train(tiny_cfg(tmp_path, name="plain", **cfg))
    with pytest.raises(CheckpointError, match=r"best\.pt: holds only the weights it saves.*--weight_ema"):
        evaluate_checkpoint(plain["run_dir"], split="test", device="cpu", weights="trained")
    with pytest.raises(CheckpointError, match="choose saved or trained"):
        evaluate_checkpoint(plain["run_dir"], split="test", device="cpu", weights="average")


def test_split_seed_keeps_the_labelled_split_while_seed_changes_the_training(tmp_path, monkeypatch):
    """--split_seed 0 with --seed 1 labels the images --seed 0 labels (and another split than --seed 1 alone), while
    the initial weights follow --seed: a second training run on one split, to measure what the split does not."""
    _val_small(monkeypatch)
    split = {}
    weights = {}
    for name, seed, split_seed in (("s0", 0, None), ("s1", 1, None), ("s1_on_split0", 1, 0)):
        t = Trainer(tiny_cfg(tmp_path, name=name, seed=seed, split_seed=split_seed, labelled="1/2", steps=1))
        split[name] = json.loads((t.run.root / "split.json").read_text())["labelled"]
        weights[name] = t.model.state_dict()
        t.close()
    assert split["s1_on_split0"] == split["s0"] != split["s1"]
    head = [k for k in weights["s0"] if weights["s0"][k].dtype.is_floating_point and "weight" in k][-1]
    assert torch.equal(weights["s1_on_split0"][head], weights["s1"][head])
    assert not torch.equal(weights["s1_on_split0"][head], weights["s0"][head])


def test_a_resumed_run_reports_the_minutes_of_all_its_processes(tmp_path, monkeypatch):
    """The first process takes 120 s to step 4, the resumed one 30 s from its start to the end: 2.5 minutes."""
    _val_small(monkeypatch)
    now = {"t": 0.0}
    monkeypatch.setattr("semiseg_sdk.engine.trainer._clock", lambda: now["t"])
    part = Trainer(tiny_cfg(tmp_path, name="part"))
    set_time = AfterStep(lambda t: now.update(t={4: 120.0, 8: 1030.0}.get(t.step, now["t"])))
    assert part.fit(hooks=[set_time, StopAtStep(4)])["minutes"] == pytest.approx(2.0)
    now["t"] = 1000.0
    resumed = Trainer(tiny_cfg(tmp_path, name="part", resume=True))
    assert resumed.fit(hooks=[set_time])["minutes"] == pytest.approx(2.5)


def test_sigterm_checkpoints_the_step_and_resume_reproduces_the_run(tmp_path, monkeypatch):
    """SIGTERM after step 3 (no evaluation or log there): the run stops after that step, last.pt holds step 3, the
    signal handlers are restored, and resuming to step 8 gives the uninterrupted run's weights."""
    _val_small(monkeypatch)
    full = Trainer(tiny_cfg(tmp_path, name="full"))
    full.fit()
    before = signal.getsignal(signal.SIGTERM)
    part = Trainer(tiny_cfg(tmp_path, name="part"))
    with pytest.raises(TrainingInterrupted, match=r"stopped at step 3 of 8 by SIGTERM") as info:
        part.fit(hooks=[AfterStep(lambda t: t.step == 3 and os.kill(os.getpid(), signal.SIGTERM))])
    assert info.value.step == 3 and info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before
    assert load_checkpoint(Path(part.run.root) / "last.pt")["step"] == 3
    resumed = Trainer(tiny_cfg(tmp_path, name="part", resume=True))
    assert resumed.step == 3
    resumed.fit()
    a, b = full.method.state_dict(), resumed.method.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_a_stop_signal_sent_to_the_whole_process_group_still_checkpoints_the_step(tmp_path, monkeypatch):
    """``kill -- -PGID``, ``pkill -f`` or a cluster scheduler's cancel signal the loader workers too. A worker killed
    by SIGTERM made the main process die of torch's SIGCHLD check before it could write last.pt; the workers now
    leave stop signals to the main process, which stops after the step and checkpoints it."""
    import multiprocessing
    import time

    _val_small(monkeypatch)

    def signal_everyone(trainer):
        if trainer.step == 3:
            workers = multiprocessing.active_children()
            assert workers  # num_workers=1: the labelled and unlabelled loaders' workers
            for w in workers:
                os.kill(w.pid, signal.SIGTERM)
            time.sleep(1.0)  # time for a worker that dies of it to be noticed by the SIGCHLD check
            assert all(w.is_alive() for w in workers)
            os.kill(os.getpid(), signal.SIGTERM)

    run = Trainer(tiny_cfg(tmp_path, num_workers=1))
    with pytest.raises(TrainingInterrupted, match=r"stopped at step 3 of 8 by SIGTERM"):
        run.fit(hooks=[AfterStep(signal_everyone)])
    assert load_checkpoint(Path(run.run.root) / "last.pt")["step"] == 3


def test_save_every_writes_last_pt_between_evaluations(tmp_path, monkeypatch):
    """save_every 3 with one evaluation at the end: before step 7's checks last.pt holds step 6, and no evaluation
    ran before the end."""
    _val_small(monkeypatch)
    seen = {}
    trainer = Trainer(tiny_cfg(tmp_path, eval_every=8, save_every=3))
    last = Path(trainer.run.root) / "last.pt"
    trainer.fit(hooks=[AfterStep(lambda t: t.step in (2, 4, 7) and seen.setdefault(t.step, last.exists() and load_checkpoint(last)["step"]))])
    assert seen == {2: False, 4: 3, 7: 6}
    evals = [json.loads(l)["step"] for l in (Path(trainer.run.root) / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert evals == [8]
    with pytest.raises(ConfigError, match="save_every"):
        tiny_cfg(tmp_path, save_every=-1)


def test_strong_aug_reaches_the_views_and_a_bad_key_fails_before_the_run_folder(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="blur_kernal"):
        Trainer(tiny_cfg(tmp_path, method="fixmatch", strong_aug={"blur_kernal": 5}))
    assert not (tmp_path / "run").exists()
    trainer = Trainer(tiny_cfg(tmp_path, method="fixmatch", strong_aug={"blur_p": 0.0, "blur_sigma": [0.1, 0.5]}))
    strong = trainer.method.views.cfg.strong
    assert strong.blur_p == 0.0 and strong.blur_sigma == (0.1, 0.5) and strong.jitter_p == 0.8


def test_existing_run_needs_resume_flag(tmp_path, monkeypatch):
    _val_small(monkeypatch)
    train(tiny_cfg(tmp_path, steps=2, eval_every=2))
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(tiny_cfg(tmp_path, steps=2, eval_every=2))


def test_dead_checkpoints_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "semiseg-checkpoint/1"}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing keys: model_spec"):
        load_checkpoint(tmp_path / "partial.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="no best.pt"):
        load_checkpoint(tmp_path / "empty_run")


def test_checkpoint_with_missing_weights_names_file_and_keys(tmp_path, monkeypatch):
    _val_small(monkeypatch)
    res = train(tiny_cfg(tmp_path, steps=2, eval_every=2))
    ckpt = load_checkpoint(res["run_dir"])
    ckpt["model_state"].pop("classifier.weight")
    torch.save({k: v for k, v in ckpt.items() if k != "path"}, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"damaged.pt.*classifier.weight"):
        load_inference_model(tmp_path / "damaged.pt")


def test_truncated_checkpoint_write_keeps_previous_file(tmp_path, monkeypatch):
    from semiseg_sdk.models import checkpoint as ck

    target = tmp_path / "best.pt"
    ck.save_checkpoint(target, {"model_spec": {}, "model_state": {}, "dataset": {}, "step": 1})

    def boom(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(target, {"model_spec": {}, "model_state": {}, "dataset": {}, "step": 2})
    monkeypatch.undo()
    assert load_checkpoint(target)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temp file left behind


def test_config_file_and_flags(tmp_path):
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps({"steps": 50, "method": "supervised", "crop_size": [64, 96]}))
    cfg = resolve_config(str(f), {"steps": 10, "lr": None})
    assert cfg.steps == 10 and cfg.crop_size == (64, 96)
    with pytest.raises(ConfigError, match="stpes"):
        resolve_config(None, {"stpes": 3})
    with pytest.raises(ConfigError, match="cfg.toml"):
        resolve_config(str(tmp_path / "cfg.toml"))
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")


def test_extra_unlabelled_folder_feeds_the_unlabelled_stream(tmp_path, monkeypatch):
    import cv2
    import numpy as np

    from semiseg_sdk.engine.data_setup import build_train_data, make_loaders
    from semiseg_sdk.errors import DataError

    fleet = tmp_path / "fleet" / "day1"
    fleet.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(fleet / f"f{i}.jpg"), np.full((40, 60, 3), 50 * i, np.uint8))
    cfg = tiny_cfg(tmp_path, unlabelled_root=str(tmp_path / "fleet"), labelled="1/2")
    data = build_train_data(cfg, tmp_path / "split.json")
    ds, idx = data.unlabelled_source()
    assert len(idx) == 12 + 3  # half of 24 synthetic images + 3 fleet frames
    names = {ds[i]["name"] for i in idx}
    assert "day1/f2.jpg" in names
    _, u_iter = make_loaders(cfg, data, {"labelled": 0, "unlabelled": 0}, uses_unlabelled=True)
    assert (next(u_iter)["mask"] == 255).all()  # labels never reach the unlabelled stream
    with pytest.raises(DataError, match="nothing-here"):
        build_train_data(tiny_cfg(tmp_path, unlabelled_root=str(tmp_path / "nothing-here")), tmp_path / "split2.json")


@pytest.mark.slow
def test_compile_trains_and_keeps_checkpoint_keys(tmp_path, monkeypatch):
    """``compile=True`` compiles the student in place: same module trained, checkpoints load into an uncompiled model."""
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, model="fcn", steps=2, eval_every=2, compile=True))
    assert trainer.method.model is trainer.model and trainer.model._compiled_call_impl is not None
    trainer.fit()
    last = load_checkpoint(Path(trainer.run.root) / "last.pt")
    keys = list(last["model_state"]) + list(last["trainer_state"]["method"])
    assert keys and not any("_orig_mod" in k for k in keys)
    model, _ = load_inference_model(trainer.run.root)  # a fresh, uncompiled network; strict load
    assert model._compiled_call_impl is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, last["model_state"][k]), k


def test_data_cache_gives_the_uncached_run(tmp_path, monkeypatch):
    _val_small(monkeypatch)
    states = []
    for name, mb in (("plain", 0), ("cached", 1)):  # one after the other: a trainer seeds the global generators
        trainer = Trainer(tiny_cfg(tmp_path, name=name, steps=4, eval_every=100, labelled="all", method="fixmatch",
                                   data_cache_mb=mb))
        for _ in range(4):
            trainer.run_step()
        states.append(trainer.method.state_dict())
    a, b = states
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ConfigError, match="data_cache_mb"):
        tiny_cfg(tmp_path, data_cache_mb=-1)


def test_evaluate_defaults_to_the_folder_set_a_run_trained_on(tmp_path):
    """A ``folder`` run is evaluated on its own root without --data (its checkpoint names the set, not the layout);
    a lone checkpoint of an unregistered set asks for --data."""
    import shutil

    from semiseg_sdk.engine.evaluator import evaluate_checkpoint
    from fixtures_data import make_folder_tree

    root = make_folder_tree(tmp_path / "my_field_set", {"train": 4, "val": 2, "test": 3}, size=(32, 32),
                            classes=["ground", "roof", "water"])
    res = train(tiny_cfg(tmp_path, data="folder", data_root=str(root), data_args={}, labelled="all", steps=2,
                         eval_every=2))
    out = evaluate_checkpoint(res["run_dir"], split="test", device="cpu")
    assert out["images"] == 3
    lone = tmp_path / "lone.pt"
    shutil.copy(Path(res["run_dir"]) / "best.pt", lone)
    shutil.rmtree(res["run_dir"])
    with pytest.raises(ConfigError, match="--data"):
        evaluate_checkpoint(str(lone), split="test", device="cpu")
    assert evaluate_checkpoint(str(lone), data="folder", data_root=str(root), split="val", device="cpu")["images"] == 2


def test_a_run_is_scored_on_windows_of_its_crop_and_evaluate_repeats_its_score(tmp_path):
    """Without --eval_window a run slides windows of its training crop over larger images (config.json records
    them); ``semiseg evaluate`` scores the same split the same way by default and reproduces the run's score; a window twice the
    crop warns, in training (train.log too) and in evaluate, unless the mode is whole."""
    import warnings

    from semiseg_sdk.engine.evaluator import EvalWindowWarning, evaluate_checkpoint, window_warning
    from fixtures_data import make_folder_tree

    root = make_folder_tree(tmp_path / "tiles", {"train": 4, "val": 2, "test": 1}, size=(64, 64), classes=["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvalWindowWarning)
        res = train(tiny_cfg(tmp_path, data="folder", data_root=str(root), data_args={}, labelled="all", steps=2,
                             eval_every=2, val_split="val+test"))
    assert json.loads((Path(res["run_dir"]) / "config.json").read_text())["eval_window"] == [32, 32]
    out = evaluate_checkpoint(res["run_dir"], device="cpu")  # the run's split, mode and window
    assert (out["split"], out["images"], out["mode"], out["window"]) == ("val+test", 3, "auto", [32, 32])
    assert out["miou"] == pytest.approx(res["best_miou"], abs=1e-12)
    with pytest.warns(EvalWindowWarning, match=r"window 64x64 is 2.0x the training crop 32x32"):
        wide = evaluate_checkpoint(res["run_dir"], window=64, device="cpu", save=str(tmp_path / "wide"))
    assert wide["window"] == [64, 64]
    with pytest.warns(EvalWindowWarning, match="128x64 is 4.0x"):
        Trainer(tiny_cfg(tmp_path, name="wide", eval_window=(128, 64)))
    assert "evaluation window 128x64" in (tmp_path / "wide" / "train.log").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvalWindowWarning)
        Trainer(tiny_cfg(tmp_path, name="whole", eval_window=(128, 64), eval_mode="whole"))
    assert window_warning((63, 63), (32, 32)) is None and window_warning((64, 32), None) is None
    assert window_warning((64, 32), (32, 32), "whole") is None and window_warning((64, 32), (32, 32), "slide")


def test_a_crop_too_small_for_the_aspp_rates_warns_and_fitted_rates_do_not(tmp_path, monkeypatch):
    import warnings

    from semiseg_sdk.models import AtrousPaddingWarning

    _val_small(monkeypatch)
    with pytest.warns(AtrousPaddingWarning, match=r"\[6, 12, 18\].*2x2"):
        Trainer(tiny_cfg(tmp_path, name="small"))
    assert "ASPP rates" in (tmp_path / "small" / "train.log").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AtrousPaddingWarning)
        Trainer(tiny_cfg(tmp_path, name="fitted", crop_size=(64, 64), model_args={"aspp_rates": [1, 2, 3]}))  # 4x4 map
        fit = Trainer(tiny_cfg(tmp_path, name="fit", crop_size=(64, 64), model_args={"aspp_rates": "fit"}))
    assert fit.model.spec["aspp_rates"] == [1, 2, 3]  # resolved for the crop; the checkpoint's spec holds the rates
    resolved = json.loads((tmp_path / "fit" / "config.json").read_text())["resolved"]
    assert resolved["model_spec"]["aspp_rates"] == [1, 2, 3]  # and config.json says what "fit" became


def test_hooks_run_in_order_around_every_step_and_a_stop_request_ends_the_run(tmp_path, monkeypatch):
    """A user hook sees before_train, then before/after each step with the step count, then after_train; its stop
    request ends the run after that step with last.pt holding it and the summary naming the reason."""
    from semiseg_sdk.engine import HookBase

    _val_small(monkeypatch)
    calls = []

    class Recorder(HookBase):
        def before_train(self):
            calls.append(("before_train", self.loop.step))

        def before_step(self):
            calls.append(("before_step", self.loop.step))

        def after_step(self):
            calls.append(("after_step", self.loop.step))
            if self.loop.step == 3:
                self.loop.request_stop("enough")

        def after_train(self):
            calls.append(("after_train", self.loop.step))

    trainer = Trainer(tiny_cfg(tmp_path, steps=8, eval_every=2, log_every=100))
    summary = trainer.fit(hooks=[Recorder()])
    assert calls == [("before_train", 0), ("before_step", 0), ("after_step", 1), ("before_step", 1), ("after_step", 2),
                     ("before_step", 2), ("after_step", 3), ("after_train", 3)]
    assert summary["stopped"] == "enough" and summary["steps"] == 3 and summary["final_miou"] is None
    assert load_checkpoint(Path(trainer.run.root) / "last.pt")["step"] == 3
    assert summary["best_step"] == 2  # the evaluation at step 2 ran; the run never reached step 4's
    # the learning rate is the schedule hook's: poly from 0.01 over 8 steps, at step 2 of them
    lr = [json.loads(l)["lr"] for l in (Path(trainer.run.root) / "metrics.jsonl").read_text().splitlines() if '"lr"' in l]
    assert lr == [] or lr[-1] < 0.01


def test_time_phases_adds_seconds_per_step_of_each_phase_to_the_log(tmp_path, monkeypatch):
    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, steps=4, eval_every=4, log_every=2, time_phases=True))
    trainer.fit()
    logs = [json.loads(l) for l in (Path(trainer.run.root) / "metrics.jsonl").read_text().splitlines()]
    logs = [l for l in logs if "loss" in l]
    assert [l["step"] for l in logs] == [2, 4]
    for l in logs:
        assert {"data", "forward_backward", "optimizer"} <= set(l["phase_s"]), l
        assert all(v > 0 for v in l["phase_s"].values()), l
        # seconds per step of the phases together cannot exceed the wall time per step the throughput implies
        assert sum(l["phase_s"].values()) <= 1.05 * 2 / l["img_per_s"], l  # 2 labelled images per step


def test_tensorboard_gets_losses_evaluations_and_predicted_masks(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _val_small(monkeypatch)
    trainer = Trainer(tiny_cfg(tmp_path, steps=4, eval_every=2, log_every=2, tensorboard=True))
    trainer.fit()
    events = EventAccumulator(str(Path(trainer.run.root) / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "val/miou"} <= set(scalars)
    assert [e.step for e in events.Scalars("val/miou")] == [2, 4]
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    images = events.Images("val/prediction_0")
    assert [e.step for e in images] == [2, 4] and images[0].width == 3 * 64 and images[0].height == 32


def test_tensorboard_without_the_package_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match=r'--tensorboard needs the tensorboard package: pip install "semiseg-sdk\[tensorboard\]"'):
        Trainer(tiny_cfg(tmp_path, tensorboard=True))
    assert not (tmp_path / "run").exists()
