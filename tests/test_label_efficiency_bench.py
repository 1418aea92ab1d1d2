"""The label-efficiency benchmark's bookkeeping: which metrics file a (staged) run's result comes from, and the
per-class means of its summary."""
import json
import math
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import label_efficiency as le  # noqa: E402
import label_efficiency_tables as tables  # noqa: E402
from semiseg_sdk.models import save_checkpoint  # noqa: E402
from test_folder_lock import _holder  # noqa: E402


def _metrics(path: Path, miou: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": 4, "eval": {"miou": miou}}) + "\n")


def test_final_metrics_of_plain_and_staged_runs(tmp_path):
    plain = tmp_path / "plain"
    _metrics(plain / "metrics.jsonl", 0.5)
    assert le.final_metrics(plain) == plain / "metrics.jsonl"
    staged = tmp_path / "staged"  # ST++: training stages 1, 3 and 10 (numeric order, not text order)
    for name in ("stage1_sup", "stage3_retrain", "stage10_final"):
        _metrics(staged / name / "metrics.jsonl", 0.1)
    assert le.final_metrics(staged) == staged / "stage10_final" / "metrics.jsonl"
    with pytest.raises(FileNotFoundError, match="empty"):
        (tmp_path / "empty").mkdir()
        le.final_metrics(tmp_path / "empty")


def test_summary_means_classes_over_seeds_that_measured_them():
    rows = [{"dataset": "d", "ratio": "1/8", "method": "m", "seed": s, "miou": mi, "iou": iou} for s, mi, iou in
            [(0, 0.5, {"road": 90.0, "pole": None}), (1, 0.7, {"road": 80.0, "pole": 20.0})]]
    rows.append({"dataset": "d", "ratio": "all", "method": "m", "seed": 0, "miou": 0.9})  # an older row: no per-class IoU
    by_ratio = {r["ratio"]: r for r in tables.summarise(rows)}
    one = by_ratio["1/8"]
    assert one["miou_mean"] == pytest.approx(60.0) and one["miou_std"] == pytest.approx(14.142, abs=1e-3)
    assert one["iou_road"] == pytest.approx(85.0) and one["iou_pole"] == pytest.approx(20.0)
    assert math.isnan(by_ratio["all"]["iou_road"])
    assert "| 1/8 | m | 85.0 | 20.0 |" in tables.class_table(list(by_ratio.values()))


def test_a_seed_run_twice_counts_once_and_the_later_row_stands_for_it():
    """Seeds 0 / 1 at 50 / 60, then seed 0 again at 54 (a rerun at a later commit): mean 57 over 2 seeds, not 54.7
    over 3."""
    rows = [{"dataset": "d", "ratio": "1/8", "method": "m", "seed": s, "miou": v} for s, v in
            [(0, 0.50), (1, 0.60), (0, 0.54)]]
    (one,) = tables.summarise(rows)
    assert one["seeds"] == 2 and one["miou_mean"] == pytest.approx(57.0) and one["_per_seed"] == {0: 54.0, 1: 60.0}


def test_target_table_reports_gain_and_share_of_the_gap():
    """supervised 60 at 1/16 and 64 with all labels (gap 4): a method at 62.5 on the same seed is +2.5 and recovers
    62 %; one at 59 loses; one seed judges nothing against the spread; a dataset without an all-label supervised row
    gets gains but no shares; a method on another seed only is compared unpaired."""
    rows = [{"dataset": d, "ratio": r, "method": m, "seed": seed, "miou": v} for d, r, m, seed, v in [
        ("a", "1/16", "supervised", 0, 0.60), ("a", "all", "supervised", 0, 0.64), ("a", "1/16", "good", 0, 0.625),
        ("a", "1/16", "bad", 0, 0.59), ("a", "1/16", "other", 1, 0.61),
        ("b", "1/8", "supervised", 0, 0.50), ("b", "1/8", "good", 0, 0.52)]]
    text = tables.target_table(tables.summarise(rows))
    assert "a 1/16: vs supervised 60.0 ± 0.0 (1 seeds) (all labels 64.0 ± 0.0, gap +4.0)" in text
    assert "| good | 62.5 ± 0.0 | 1 | +2.5 (1) | - (< 3 seeds) | 1 of 1 | 62 % |" in text
    assert "| bad | 59.0 ± 0.0 | 1 | -1.0 (1) | - (< 3 seeds) | 0 of 1 | -25 % |" in text
    assert "| other | 61.0 ± 0.0 | 1 | +1.0 (unpaired) | - (< 3 seeds) | - | 25 % |" in text
    assert "beats supervised by more than its std (0.0): 0 of 0 with >= 3 seeds (3 with fewer not judged); 0 of them " \
           "ahead on every shared split" in text
    assert "| good | 52.0 ± 0.0 | 1 | +2.0 (1) | - (< 3 seeds) | 1 of 1 | - |" in text and "gap" not in text.split("b 1/8")[1].split("\n")[0]


def test_the_header_says_whether_the_all_label_reference_has_converged():
    """The protocol's test: a curve has converged when its last third (from the evaluation nearest 2/3 of the last
    step) rises less than 0.5. Set "a": two all-label seeds rise 40 -> 50 -> 55 (+5.0 from step 1600 of 2400) and
    60 -> 61 -> 61.2 (+0.2): mean +2.6, not converged. Set "b": 70 -> 72 -> 72.3 (+0.3): converged, not flagged."""
    assert tables.last_third_rise([[800, 40.0], [1600, 50.0], [2400, 55.0]]) == pytest.approx(5.0)
    assert tables.last_third_rise([[3200, 66.28], [4800, 66.19]]) == pytest.approx(-0.09)
    assert tables.last_third_rise([[800, 40.0]]) is None
    curves = {("a", 0): [[800, 40.0], [1600, 50.0], [2400, 55.0]], ("a", 1): [[800, 60.0], [1600, 61.0], [2400, 61.2]],
              ("b", 0): [[800, 70.0], [1600, 72.0], [2400, 72.3]]}
    rows = [{"dataset": d, "ratio": "all", "method": "supervised", "seed": s, "miou": c[-1][1] / 100, "curve": c}
            for (d, s), c in curves.items()]
    rows += [{"dataset": d, "ratio": "1/64", "method": m, "seed": 0, "miou": v} for d, m, v in [
        ("a", "supervised", 0.45), ("a", "x", 0.47), ("b", "supervised", 0.60), ("b", "x", 0.61)]]
    text = tables.target_table(tables.summarise(rows))
    assert "(all labels 58.1 ± 4.4, gap +13.1; its last third rises +2.6 (not converged))" in text
    assert "(all labels 72.3 ± 0.0, gap +12.3; its last third rises +0.3)" in text


def test_the_late_swing_is_the_mean_change_between_evaluations_from_half_the_run_on():
    """Evaluations at 800 ... 4800: from step 2400 on, 50 -> 53 -> 51 -> 52 changes by 3, 2, 1 (swing 2.0); a second
    seed 40 -> 40 -> 41 -> 41 by 0, 1, 0 (1/3): the row's swing is their mean, 1.17; supervised's (steady: 0.5) goes in
    the header. A curve with one evaluation in its second half has none."""
    assert tables.late_swing([[800, 10.0], [1600, 90.0], [2400, 50.0], [3200, 53.0], [4000, 51.0], [4800, 52.0]]) == \
        pytest.approx(2.0)
    assert tables.late_swing([[800, 10.0], [4800, 50.0]]) is None and tables.late_swing([]) is None
    steps = (800, 1600, 2400, 3200, 4000, 4800)
    curves = {("x", 0): (0, 0, 50, 53, 51, 52), ("x", 1): (0, 0, 40, 40, 41, 41),
              ("supervised", 0): (0, 0, 45, 45.5, 46, 46.5), ("supervised", 1): (0, 0, 38, 38.5, 39, 39.5)}
    rows = [{"dataset": "a", "ratio": "1/64", "method": m, "seed": s, "miou": c[-1] / 100,
             "curve": [[t, v] for t, v in zip(steps, c)]} for (m, s), c in curves.items()]
    text = tables.target_table(tables.summarise(rows))
    assert "vs supervised 43.0 ± 4.9 (2 seeds; late swing 0.5)" in text
    assert "| x | 46.5 ± 7.8 | 2 | +3.5 ± 2.8 (2) | - (< 3 seeds) | 2 of 2 | - | 1.2 |" in text


def test_gap_recovered_is_measured_on_the_splits_a_method_shares_with_supervised():
    """Supervised 50 / 60 on seeds 0 / 1 (mean 55), 70 with all labels: the mean gap is 15. A method with seed 0 only
    at 60 gains +10 on a split whose own gap is 20: 50 %, not the 67 % the mean gap would give."""
    rows = [{"dataset": "a", "ratio": r, "method": m, "seed": s, "miou": v} for r, m, s, v in [
        ("1/64", "supervised", 0, 0.50), ("1/64", "supervised", 1, 0.60), ("all", "supervised", 0, 0.70),
        ("1/64", "one", 0, 0.60)]]
    text = tables.target_table(tables.summarise(rows))
    assert "gap +15.0" in text and "| one | 60.0 ± 0.0 | 1 | +10.0 (1) | - (< 3 seeds) | 1 of 1 | 50 % |" in text


def test_a_gain_within_supervised_seed_spread_does_not_count():
    """supervised 60 +- 2 over three seeds: a method at +1.5 on every split is within the spread, one at +2.5 beyond."""
    rows = [{"dataset": "a", "ratio": "1/16", "method": m, "seed": s, "miou": v} for m, vals in [
        ("supervised", (0.58, 0.60, 0.62)), ("near", (0.595, 0.615, 0.635)), ("far", (0.605, 0.625, 0.645))]
        for s, v in enumerate(vals)]
    text = tables.target_table(tables.summarise(rows))
    assert "| near | 61.5 ± 2.0 | 3 | +1.5 ± 0.0 (3) | no |" in text and "| far | 62.5 ± 2.0 | 3 | +2.5 ± 0.0 (3) | yes |" in text
    assert "beats supervised by more than its std (2.0): 1 of 2 with >= 3 seeds" in text and "fewer" not in text


def test_a_mean_gain_beyond_the_std_that_loses_one_split_is_shown_as_such():
    """supervised 58 / 60 / 62 (std 2.0): "uneven" at +6, +3, -1 has a mean gain of +2.7, beyond the std, yet is behind
    on one split of three; "even" at +2.5 on every split is ahead on all three. Both count as beyond the std; only
    "even" counts as ahead on every shared split."""
    rows = [{"dataset": "a", "ratio": "1/64", "method": m, "seed": s, "miou": v} for m, vals in [
        ("supervised", (0.58, 0.60, 0.62)), ("uneven", (0.64, 0.63, 0.61)), ("even", (0.605, 0.625, 0.645))]
        for s, v in enumerate(vals)]
    text = tables.target_table(tables.summarise(rows))
    assert "| uneven | 62.7 ± 1.5 | 3 | +2.7 ± 3.5 (3) | yes | 2 of 3 |" in text
    assert "| even | 62.5 ± 2.0 | 3 | +2.5 ± 0.0 (3) | yes | 3 of 3 |" in text
    assert "2 of 2 with >= 3 seeds; 1 of them ahead on every shared split; named methods (any setting) beyond it: 2 " \
           "(even, uneven)" in text


def test_paired_gains_use_shared_seeds_and_lever_rows_stay_apart():
    """Supervised 50 / 48 / 52 on seeds 0-2. UniMatch (official) on seeds 0 and 1 at 51 / 50: paired +1, +2 -> +1.5
    ± 0.7 over 2 seeds, not judged. The same method with a lever (``method_args``) is its own row: 54 / 51 / 56 ->
    paired +4, +3, +4 = +3.7 ± 0.6 (3), beyond supervised's std (2.0)."""
    sup = [("supervised", {}, s, v) for s, v in enumerate((0.50, 0.48, 0.52))]
    plain = [("unimatch", {}, s, v) for s, v in enumerate((0.51, 0.50))]
    lever = [("unimatch", {"class_thresholds": True}, s, v) for s, v in enumerate((0.54, 0.51, 0.56))]
    rows = [{"dataset": "a", "ratio": "1/64", "method": m, "seed": s, "miou": v, "recipe": {"method_args": a}}
            for m, a, s, v in sup + plain + lever]
    summary = tables.summarise(rows)
    assert sorted(s["method"] for s in summary) == ["supervised", "unimatch", 'unimatch {"class_thresholds":true}']
    text = tables.target_table(summary)
    assert "| unimatch | 50.5 ± 0.7 | 2 | +1.5 ± 0.7 (2) | - (< 3 seeds) |" in text
    assert '| unimatch {"class_thresholds":true} | 53.7 ± 2.5 | 3 | +3.7 ± 0.6 (3) | yes |' in text
    assert "1 of 1 with >= 3 seeds (1 with fewer not judged)" in text


def test_two_settings_of_one_method_beyond_the_std_count_as_one_named_method():
    """supervised 58 / 60 / 62 (std 2.0): CutMix plain (+3 on every split) and CutMix with a lever (+4) are two rows
    beyond the std but one named method; FixMatch at +1 is not beyond it."""
    sup = [("supervised", {}, s, v) for s, v in enumerate((0.58, 0.60, 0.62))]
    plain = [("cutmix", {}, s, v) for s, v in enumerate((0.61, 0.63, 0.65))]
    lever = [("cutmix", {"conf_per_pixel": True}, s, v) for s, v in enumerate((0.62, 0.64, 0.66))]
    weak = [("fixmatch", {}, s, v) for s, v in enumerate((0.59, 0.61, 0.63))]
    rows = [{"dataset": "a", "ratio": "1/64", "method": m, "seed": s, "miou": v, "recipe": {"method_args": a}}
            for m, a, s, v in sup + plain + lever + weak]
    text = tables.target_table(tables.summarise(rows))
    assert "2 of 3 with >= 3 seeds; 2 of them ahead on every shared split; named methods (any setting) beyond it: " \
           "1 (cutmix)" in text


def test_table_recomputes_from_a_results_file_whatever_commit_wrote_it(tmp_path, capsys, monkeypatch):
    """--table keeps the rows of the command line's datasets, methods, seeds and budget: a row of another step
    budget is left out; nothing is trained."""
    rows = [{"dataset": "synthetic-driving", "ratio": r, "method": "supervised", "seed": s, "miou": v,
             "recipe": {"steps": steps, "batch_size": 8, "lr": 0.01, "model": "deeplabv3plus",
                        "encoder": "efficientnet_lite0", "method_args": {}}}
            for r, s, v, steps in [("1/64", 0, 0.5, 4800), ("all", 0, 0.62, 4800), ("all", 0, 0.70, 19200)]]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(sys, "argv", ["label_efficiency.py", "--protocol", "converge-cpu", "--datasets",
                                      "synthetic-driving", "--table", str(path), "--out", str(tmp_path / "out")])
    le.main()
    out = capsys.readouterr().out
    assert "| synthetic-driving | supervised | 50.0 ± 0.0 | 62.0 ± 0.0 |" in out and "70.0" not in out
    assert not (tmp_path / "out").exists()


def test_parallel_jobs_write_every_row_once(tmp_path):
    """--jobs 2: two child processes, each appends its row; the parent summarises both, and a rerun reuses them."""
    import subprocess

    script = Path(le.__file__)
    cmd = [sys.executable, str(script), "--datasets", "synthetic-driving", "--ratios", "1/4", "--methods", "supervised",
           "cutmix", "--seeds", "0", "--steps", "2", "--batch_size", "2", "--crop_size", "32", "32", "--encoder", "tiny",
           "--data_args", '{"synthetic-driving": {"length": 16, "val_length": 2, "size": [32, 64]}}', "--workers", "0",
           "--cache_mb", "0", "--jobs", "2", "--out", str(tmp_path)]
    for _ in range(2):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=script.parents[1])
        assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(l) for l in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["cutmix", "supervised"]  # the second call trained nothing
    assert {r["device"] for r in rows} == {"cpu"}
    assert {r["threads"] for r in rows} == {int(os.environ.get("OMP_NUM_THREADS", "1"))}  # each child's torch threads
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "synthetic-driving-1of4-cutmix-s0.log", "synthetic-driving-1of4-supervised-s0.log"]
    assert "| synthetic-driving | cutmix |" in (tmp_path / "summary.md").read_text()


def test_rescore_scores_finished_runs_again_on_another_window(tmp_path):
    """A finished sweep's runs scored again (--rescore): on a window as large as the 32x64 frames the score is the
    run's own (the evaluation is the same); on 32x32 windows a row with that window in its recipe, one curve point
    and the row it came from; a second call scores nothing again."""
    import subprocess

    script = Path(le.__file__)
    base = [sys.executable, str(script), "--datasets", "synthetic-driving", "--ratios", "1/4", "--methods", "supervised",
            "--seeds", "0", "--steps", "2", "--batch_size", "2", "--crop_size", "32", "32", "--encoder", "tiny",
            "--data_args", '{"synthetic-driving": {"length": 16, "val_length": 4, "size": [32, 64]}}', "--workers", "0",
            "--cache_mb", "0", "--out", str(tmp_path)]

    def call(*extra):
        res = subprocess.run(base + list(extra), capture_output=True, text=True, timeout=300, cwd=script.parents[1])
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    call()
    assert "1 runs scored again on 32x64" in call("--rescore", "--eval_window", "32", "64")
    assert "1 runs scored again on 32x32" in call("--rescore", "--eval_window", "32", "32")
    assert "0 runs scored again" in call("--rescore", "--eval_window", "32", "32")
    trained, whole, tiles = [json.loads(l) for l in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert whole["miou"] == pytest.approx(trained["miou"], abs=1e-9) and whole["recipe"]["eval_window"] == [32, 64]
    assert tiles["recipe"] == {**trained["recipe"], "eval_window": [32, 32]} and len(tiles["curve"]) == 1
    assert tiles["rescored"] == {"from": le.recipe_tag(trained["recipe"]), "miou": trained["miou"]}
    res = subprocess.run(base + ["--rescore"], capture_output=True, text=True, timeout=300, cwd=script.parents[1])
    assert res.returncode == 1 and res.stderr.strip() == "--rescore: give the windows to score on with --eval_window H W"


def test_sigterm_pauses_every_parallel_run_at_its_step(tmp_path):
    """SIGTERM to a --jobs 2 sweep while both children train: the sweep exits 143, each child wrote last.pt at the
    step it had reached (mid-run, not an evaluation: there is one at the end only) and no row is recorded."""
    import signal
    import subprocess
    import time

    from semiseg_sdk.models import load_checkpoint

    script = Path(le.__file__)
    steps = 3000
    cmd = [sys.executable, str(script), "--datasets", "synthetic-driving", "--ratios", "1/4", "--methods", "supervised",
           "cutout", "--seeds", "0", "--steps", str(steps), "--batch_size", "2", "--crop_size", "32", "32", "--encoder",
           "tiny", "--data_args", '{"synthetic-driving": {"length": 16, "val_length": 2, "size": [32, 64]}}',
           "--workers", "0", "--cache_mb", "0", "--jobs", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=script.parents[1])
    deadline = time.time() + 240
    while len(list(tmp_path.glob("runs/*/metrics.jsonl"))) < 2 and time.time() < deadline:  # both logged a step
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 143, out
    assert out.count("paused, resumes when the same command runs again") == 2, out
    lasts = [load_checkpoint(p)["step"] for p in sorted(tmp_path.glob("runs/*/last.pt"))]
    assert len(lasts) == 2 and all(0 < s < steps for s in lasts), lasts
    assert not (tmp_path / "runs.jsonl").exists()


def test_the_recipe_holds_the_method_config_and_code_and_split_or_strong_aug_change_its_tag():
    import argparse

    args = argparse.Namespace(
        data_root=None, data_args="{}", crop_size=None, method_args="{}", sup_loss="ce", ohem_min_kept=200000,
        model="deeplabv3plus", encoder="efficientnet_lite0", pretrained="imagenet", model_args='{"channels": 64}',
        steps=100, batch_size=8, lr=0.01, val_split="val", strong_aug="{}", weight_ema=0.0, split_seed=None)
    rec = le.recipe("synthetic-driving", "unimatch", args)
    assert rec["method_config"]["conf_thresh"] == 0.95 and rec["method_code"] == le.method_code("unimatch")
    args.method_args = '{"unimatch": {"conf_thresh": 0.9}}'
    assert le.recipe("synthetic-driving", "unimatch", args)["method_config"]["conf_thresh"] == 0.9
    args.method_args = "{}"
    args.val_split = "val+test"
    assert le.recipe_tag(le.recipe("synthetic-driving", "unimatch", args)) != le.recipe_tag(rec)
    args.val_split, args.strong_aug = "val", '{"blur_p": 0.0}'  # another strong view: another recipe
    assert le.recipe("synthetic-driving", "unimatch", args)["strong_aug"] == {"blur_p": 0.0}
    assert le.recipe_tag(le.recipe("synthetic-driving", "unimatch", args)) != le.recipe_tag(rec)
    args.strong_aug, args.weight_ema = "{}", 0.99  # the weight average evaluated: another recipe; off keeps old tags
    assert le.recipe("synthetic-driving", "unimatch", args)["weight_ema"] == 0.99
    assert le.recipe_tag(le.recipe("synthetic-driving", "unimatch", args)) != le.recipe_tag(rec)
    args.weight_ema = 0.0
    assert le.recipe_tag(le.recipe("synthetic-driving", "unimatch", args)) == le.recipe_tag(rec)
    args.split_seed = 1  # a repeat on split 1: another recipe
    assert le.recipe_tag(le.recipe("synthetic-driving", "unimatch", args)) != le.recipe_tag(rec)


def test_repeats_on_one_split_count_toward_its_score_and_are_tabled_with_the_std_within_and_between_splits(
        tmp_path, capsys, monkeypatch):
    """Supervised on splits 0 / 1 / 2 (seeds 0-2): 50 / 60 / 55, std 5.0 between splits. Split 1 trained again with
    seeds 10 and 11 (``--split_seed 1``): 52 and 56, so split 1's runs are 60 / 52 / 56, 56.0 +- 4.0, the std within a
    split. Split 1 then scores 56 (the mean of its runs): supervised 53.7 +- 3.2 over 3 splits, 5 runs; a method at
    58 on every split gains +4.3 paired (8, 2, 3). --table, asked for seeds 0-2, selects repeats by their split."""
    rec = {"steps": 4800, "batch_size": 8, "lr": 0.01, "model": "deeplabv3plus", "encoder": "efficientnet_lite0"}
    rows = [{"dataset": "a", "ratio": "1/64", "method": "supervised", "seed": s, "miou": v, "recipe": dict(rec)}
            for s, v in ((0, 0.50), (1, 0.60), (2, 0.55))]
    rows += [{"dataset": "a", "ratio": "1/64", "method": "supervised", "seed": s, "miou": v,
              "recipe": {**rec, "split_seed": 1}} for s, v in ((10, 0.52), (11, 0.56))]
    text = tables.repeat_table(rows)
    assert "| a | 1/64 | supervised | 1 | 1: 60.0, 10: 52.0, 11: 56.0 | 56.0 ± 4.0 |" in text
    assert ("a 1/64 supervised: std within a split 4.0 (1 of 3 splits repeated); 5.0 between the first runs of 3 "
            "splits; 3.2 between the split means") in text
    assert tables.repeat_table(rows[:3]) == ""
    again = {**rows[1], "miou": 0.48, "threads": 2}  # seed 1 again on two threads: another run of split 1
    assert "| a | 1/64 | supervised | 1 | 1 (1 thr.): 60.0, 1 (2 thr.): 48.0, 10: 52.0, 11: 56.0 | 54.0 ± 5.2 |" in \
        tables.repeat_table(rows + [again])
    rows += [{"dataset": "a", "ratio": "1/64", "method": "x", "seed": s, "miou": 0.58, "recipe": dict(rec)} for s in range(3)]
    target = tables.target_table(tables.summarise(rows))
    assert "vs supervised 53.7 ± 3.2 (3 seeds, 5 runs)" in target
    assert "| x | 58.0 ± 0.0 | 3 | +4.3 ± 3.2 (3) | yes | 3 of 3 |" in target
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(sys, "argv", ["label_efficiency.py", "--table", str(path), "--datasets", "a", "--ratios",
                                      "1/64", "--methods", "supervised", "x", "--seeds", "0", "1", "2", "--steps",
                                      "4800", "--encoder", "efficientnet_lite0"])
    le.main()
    out = capsys.readouterr().out
    assert "| a | supervised | 53.7 ± 3.2 |" in out and "1: 60.0, 10: 52.0, 11: 56.0" in out


def test_rows_that_evaluated_a_weight_average_are_compared_with_supervised_evaluated_alike():
    """Trained networks: supervised 50 / 54 / 58, FixMatch 53 / 57 / 61 (+3, within the std 4.0). Weight averages:
    supervised 55 / 56 / 57 (std 1.0), FixMatch 57 / 58 / 59 (+2, beyond it). The all-label reference (70) was
    measured for the trained network only: the average's gap (70 - 56 = 14) is taken to it and the header says so."""
    def rows(method, ema, values):
        rec = {"method_args": {}, **({"weight_ema": ema} if ema else {})}
        return [{"dataset": "a", "ratio": "1/64", "method": method, "seed": s, "miou": v, "recipe": rec}
                for s, v in enumerate(values)]
    data = (rows("supervised", 0, (0.50, 0.54, 0.58)) + rows("fixmatch", 0, (0.53, 0.57, 0.61))
            + rows("supervised", 0.99, (0.55, 0.56, 0.57)) + rows("fixmatch", 0.99, (0.57, 0.58, 0.59))
            + [{"dataset": "a", "ratio": "all", "method": "supervised", "seed": 0, "miou": 0.70, "recipe": {}}])
    text = tables.target_table(tables.summarise(data))
    plain, averaged = text.split("\na 1/64 [weight_ema 0.99]: ")
    assert "| fixmatch | 57.0 ± 4.0 | 3 | +3.0 ± 0.0 (3) | no |" in plain and "weight_ema" not in plain
    assert averaged.startswith("vs supervised [weight_ema 0.99] 56.0 ± 1.0 (3 seeds) (all labels, evaluated without "
                               "[weight_ema 0.99] 70.0 ± 0.0, gap +14.0)")
    assert "| fixmatch [weight_ema 0.99] | 58.0 ± 1.0 | 3 | +2.0 ± 0.0 (3) | yes | 3 of 3 | 14 % |" in averaged


def test_an_averaged_section_on_a_window_takes_the_all_label_reference_on_that_window():
    """Rows on 96-px windows with a weight average (supervised 55 / 56 / 57) have no all-label row of their own; the
    reference is the one scored on the same windows (72), not the one on the first window (70): a window sets the
    scale of a score, an average does not. The header names only the setting dropped."""
    def rows(method, ratio, ema, window, values):
        rec = {"method_args": {}, **({"weight_ema": ema} if ema else {}), **({"eval_window": [96, 96]} if window else {})}
        return [{"dataset": "a", "ratio": ratio, "method": method, "seed": s, "miou": v, "recipe": rec}
                for s, v in enumerate(values)]
    data = (rows("supervised", "1/64", 0.99, True, (0.55, 0.56, 0.57)) + rows("fixmatch", "1/64", 0.99, True, (0.58,) * 3)
            + rows("supervised", "all", 0, False, (0.70,)) + rows("supervised", "all", 0, True, (0.72,)))
    text = tables.target_table(tables.summarise(data))
    assert ("vs supervised [eval_window 96x96, weight_ema 0.99] 56.0 ± 1.0 (3 seeds) (all labels, evaluated without "
            "[weight_ema 0.99] 72.0 ± 0.0, gap +16.0)") in text


def test_rows_scored_on_another_window_form_their_own_section():
    """Supervised 50 / 54 / 58 scored on the first window and 56 / 57 / 58 on 96-px windows (std 1.0), the all-label
    reference 70 and 72 likewise; CutMix on 96-px windows 59 / 60 / 61: +3 against supervised scored alike (beyond
    1.0), 3 / 15 = 20 % of that section's gap (72 - 57). Neither window's rows merge with the other's."""
    def rows(method, ratio, window, values):
        rec = {"method_args": {}, **({"eval_window": [96, 96]} if window else {})}
        return [{"dataset": "a", "ratio": ratio, "method": method, "seed": s, "miou": v, "recipe": rec}
                for s, v in enumerate(values)]
    data = (rows("supervised", "1/64", False, (0.50, 0.54, 0.58)) + rows("supervised", "1/64", True, (0.56, 0.57, 0.58))
            + rows("supervised", "all", False, (0.70,)) + rows("supervised", "all", True, (0.72,))
            + rows("cutmix", "1/64", True, (0.59, 0.60, 0.61)))
    summary = tables.summarise(data)
    assert sorted(s["method"] for s in summary if s["ratio"] == "1/64") == [
        "cutmix [eval_window 96x96]", "supervised", "supervised [eval_window 96x96]"]
    section = tables.target_table(summary).split("\na 1/64 [eval_window 96x96]: ")[1]
    assert section.startswith("vs supervised [eval_window 96x96] 57.0 ± 1.0 (3 seeds) (all labels 72.0 ± 0.0, gap +15.0")
    assert "| cutmix [eval_window 96x96] | 60.0 ± 1.0 | 3 | +3.0 ± 0.0 (3) | yes | 3 of 3 | 20 % |" in section


def test_method_code_follows_what_runs_not_its_text(tmp_path):
    """Rows are reused by the hash of a method's code: an edit of a docstring or comment keeps it, an edit of a
    module the method imports (transitively) changes it, and a method that does not import that module keeps its hash."""
    import shutil

    sdk = Path(le.__file__).resolve().parents[1] / "semiseg_sdk"
    for package in ("methods", "augment"):
        shutil.copytree(sdk / package, tmp_path / "semiseg_sdk" / package)
    shutil.copy(sdk / "__init__.py", tmp_path / "semiseg_sdk" / "__init__.py")
    before = {m: le.method_code(m, root=tmp_path) for m in ("unimatch", "supervised")}
    assert before == {m: le.method_code(m) for m in before}
    labels = tmp_path / "semiseg_sdk" / "methods" / "pseudo_labels.py"
    text = labels.read_text()
    labels.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a new comment\n")
    assert {m: le.method_code(m, root=tmp_path) for m in before} == before
    labels.write_text(text + "\nNEW_CONSTANT = 1\n")
    assert le.method_code("unimatch", root=tmp_path) != before["unimatch"]
    assert le.method_code("supervised", root=tmp_path) == before["supervised"]


def test_a_protocol_sets_the_defaults_flags_still_win_and_fitted_rates_enter_the_recipe():
    args = le.parse_args(le.build_parser(), ["--protocol", "converge-cpu", "--steps", "10"])
    proto = le.PROTOCOLS["converge-cpu"]["defaults"]
    assert args.steps == 10 and args.seeds == proto["seeds"] and args.ratios == proto["ratios"]
    assert json.loads(args.model_args)["aspp_rates"] == "fit"
    assert le.parse_args(le.build_parser(), []).steps == 1000  # without --protocol: the parser's own defaults
    driving, aerial = le.dataset_settings("synthetic-driving", args), le.dataset_settings("folder", args)
    assert driving["val_split"] == "val" and aerial["val_split"] == "val+test" and aerial["patch_size"] == 256
    # the recipe holds the rates the run trains with: 96-px crops -> [1, 2, 3], 192-px crops -> [2, 4, 7]
    assert le.recipe("synthetic-driving", "supervised", args)["model_args"]["aspp_rates"] == [1, 2, 3]
    rec = le.recipe("folder", "supervised", args)
    assert rec["model_args"]["aspp_rates"] == [1, 2, 3] and (rec["patch_size"], rec["patch_overlap"]) == (256, 32)
    # the real set is scored on windows of the training crop; the data set's first window (384) leaves no key, so
    # rows scored on it before the window was a recipe setting keep their tag
    assert (aerial["eval_mode"], aerial["eval_window"], rec["eval_window"]) == ("slide", (96, 96), [96, 96])
    first = le.parse_args(le.build_parser(), ["--protocol", "converge-cpu", "--eval_window", "384", "384"])
    assert "eval_window" not in le.recipe("folder", "supervised", first)
    assert "eval_window" not in le.recipe("synthetic-aerial", "supervised", args)  # whole images, as before
    wide = le.parse_args(le.build_parser(), ["--protocol", "converge-cpu", "--crop_size", "192", "192"])
    assert le.recipe("folder", "supervised", wide)["model_args"]["aspp_rates"] == [2, 4, 7]


def test_the_release_protocol_is_converge_cpu_narrowed_to_supervised_and_the_few_labels_recipe():
    """converge-cpu-release trains supervised and the few-labels recipe's method with the recipe's settings, on the
    protocol's network, budget and data; a run of it tags like the same run of converge-cpu (its rows are shared)."""
    from semiseg_sdk.recipes import recipe_values

    recipe = recipe_values("few-labels")
    release = le.parse_args(le.build_parser(), ["--protocol", "converge-cpu-release"])
    full = le.parse_args(le.build_parser(), ["--protocol", "converge-cpu", "--method_args", release.method_args])
    assert release.methods == ["supervised", recipe["method"]] and release.all_methods == ["supervised"]
    assert json.loads(release.method_args) == {recipe["method"]: recipe["method_args"]}
    assert json.loads(release.model_args) == recipe["model_args"] and release.lr == recipe["lr"]
    for dataset in ("synthetic-aerial", "folder"):
        for method in release.methods:
            assert le.recipe(dataset, method, release) == le.recipe(dataset, method, full)
    assert le.parse_args(le.build_parser(), ["--protocol", "converge-cpu-release", "--methods", "cutmix"]).methods == [
        "cutmix"]  # flags still win


def test_a_run_another_process_trains_is_skipped_and_the_rest_of_the_sweep_goes_on(tmp_path):
    """Two sweeps given the same --out: the run the other one holds is skipped in one line naming its pid (never
    trained twice side by side, its row never written twice); the sweep's other run trains."""
    import subprocess

    script = Path(le.__file__)
    argv = ["--datasets", "synthetic-driving", "--ratios", "1/4", "--methods", "supervised", "cutmix", "--seeds", "0",
            "--steps", "2", "--batch_size", "2", "--crop_size", "32", "32", "--encoder", "tiny",
            "--data_args", '{"synthetic-driving": {"length": 16, "val_length": 2, "size": [32, 64]}}', "--workers", "0",
            "--cache_mb", "0", "--out", str(tmp_path)]
    args = le.parse_args(le.build_parser(), argv)
    rec = le.recipe("synthetic-driving", "cutmix", args)
    held = tmp_path / "runs" / le.run_name("synthetic-driving", "1/4", "cutmix", 0, rec)
    holder = _holder(held)
    try:
        res = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300,
                             cwd=script.parents[1])
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"synthetic-driving 1/4 cutmix seed 0: skipped, {held} is in use by another process (pid {holder.pid})" \
        in res.stdout
    rows = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["supervised"]


def test_plan_prices_the_runs_left_from_measured_rows_and_only_named_methods_run_with_all_labels(tmp_path, capsys,
                                                                                                   monkeypatch):
    """Measured: supervised on driving at 1/64 seed 0 (done; 5 min for 100 steps) and FixMatch on driving seed 1
    (40 min for 200 steps). Of driving + aerial x 1/64 + all x supervised + FixMatch, FixMatch skips 'all', one run is
    done and five are left: supervised at 0.05 min a step (aerial from driving's row: the same step), FixMatch at 0.2,
    and FixMatch on driving seed 0 paused at step 25 of 100: 15 + 5 + 20 + 5 + 5 = 50 min."""
    argv = ["--datasets", "synthetic-driving", "synthetic-aerial", "--ratios", "1/64", "all", "--methods",
            "supervised", "fixmatch", "--all_methods", "supervised", "--seeds", "0", "--steps", "100",
            "--out", str(tmp_path)]
    args = le.parse_args(le.build_parser(), argv)
    rows = [{"dataset": "synthetic-driving", "ratio": "1/64", "method": "supervised", "seed": 0, "miou": 0.5,
             "minutes": 5.0, "recipe": le.recipe("synthetic-driving", "supervised", args)},
            {"dataset": "synthetic-driving", "ratio": "1/64", "method": "fixmatch", "seed": 1, "miou": 0.5,
             "minutes": 40.0, "recipe": {**le.recipe("synthetic-driving", "fixmatch", args), "steps": 200}}]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paused = tmp_path / "runs" / le.run_name("synthetic-driving", "1/64", "fixmatch", 0,
                                             le.recipe("synthetic-driving", "fixmatch", args))
    save_checkpoint(paused / "last.pt", {"model_spec": {}, "model_state": {}, "dataset": {}, "step": 25})
    monkeypatch.setattr(sys, "argv", ["label_efficiency.py", *argv, "--plan"])
    le.main()
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" [")[0] for line in out[:-1]] == [
        "done synthetic-driving 1/64 supervised seed 0", "todo synthetic-driving 1/64 fixmatch seed 0",
        "todo synthetic-aerial 1/64 supervised seed 0", "todo synthetic-aerial 1/64 fixmatch seed 0",
        "todo synthetic-driving all supervised seed 0", "todo synthetic-aerial all supervised seed 0"]
    assert out[1].endswith("~15 min (paused at step 25)") and out[2].endswith("~5 min")
    assert out[-1] == "5 of 6 runs to do: about 0.8 core-hours"


def test_plan_prices_come_from_cpu_rows_only():
    """A row trained on a GPU (10x faster here) does not lower the price of a CPU core's step; a row without
    ``device`` predates the field and counts as a CPU row."""
    args = le.parse_args(le.build_parser(), ["--steps", "100"])
    rec = le.recipe("synthetic-driving", "supervised", args)
    row = {"dataset": "synthetic-driving", "ratio": "1/64", "method": "supervised", "miou": 0.5, "recipe": rec}
    rows = [{**row, "seed": 0, "minutes": 10.0}, {**row, "seed": 1, "minutes": 12.0, "device": "cpu"},
            {**row, "seed": 2, "minutes": 1.0, "device": "cuda"}]  # 0.01 a step
    prices = le.minutes_per_step(rows)
    assert len(prices) == 2 and all(v == pytest.approx(0.11) for v in prices.values())  # median of 0.10, 0.12


def test_plan_prices_a_step_in_core_minutes_from_the_threads_a_row_trained_with():
    """Two runs of the same step: one on one thread (10 min for 100 steps), one on two threads (6 min wall, 12
    core-minutes); a row without ``threads`` trained on one. Median of 0.10, 0.12 and 0.14 core-minutes a step."""
    args = le.parse_args(le.build_parser(), ["--steps", "100"])
    rec = le.recipe("synthetic-driving", "supervised", args)
    row = {"dataset": "synthetic-driving", "ratio": "1/64", "method": "supervised", "miou": 0.5, "recipe": rec}
    rows = [{**row, "seed": 0, "minutes": 10.0}, {**row, "seed": 1, "minutes": 6.0, "threads": 2},
            {**row, "seed": 2, "minutes": 14.0, "threads": 1}]
    prices = le.minutes_per_step(rows)
    assert all(v == pytest.approx(0.12) for v in prices.values())
