"""The fire CLI: help a new user can act on, train/evaluate through flags, one-line errors (exit 2)."""
import inspect
import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "PAGER": "cat", "OMP_NUM_THREADS": "1"}


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "semiseg_sdk.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def test_help_lists_subcommands_on_stdout():
    for args in ([], ["--help"], ["-h"]):
        r = run_cli(*args)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        for cmd in ("train", "evaluate", "export", "infer", "demo", "methods", "models", "datasets", "continual"):
            assert f"\n  {cmd} " in r.stdout, (args, cmd)
        assert "SemisegCLI object" not in r.stdout


def test_train_help_documents_every_flag_with_its_default():
    import dataclasses

    from semiseg_sdk.cli_help import train_fields
    from semiseg_sdk.config import TrainConfig

    r = run_cli("train", "--help")
    assert r.returncode == 0 and r.stderr == ""
    fields = train_fields()
    assert [name for _, name, _, _ in fields] == [f.name for f in dataclasses.fields(TrainConfig)]
    for section, name, default, text in fields:
        assert text, f"TrainConfig.{name} has no comment: its comment is its --help line"
        assert f"  --{name} " in r.stdout, name
    assert "  --lr 0.01 " in r.stdout and "  --crop_size 128,128 " in r.stdout and "Type: Optional" not in r.stdout


def test_command_help_shows_flags_and_defaults():
    r = run_cli("evaluate", "--help")
    assert r.returncode == 0 and "usage: semiseg evaluate CHECKPOINT" in r.stdout and "  --split None" in r.stdout
    assert "  --window None" in r.stdout and "default to how the run was scored while training" in r.stdout
    r = run_cli("continual", "run", "--help")
    assert r.returncode == 0 and "usage: semiseg continual run STORE" in r.stdout and "  --min_images 16" in r.stdout


def test_the_sdks_warnings_print_as_one_line_and_others_as_python_prints_them():
    from semiseg_sdk.cli import format_warning
    from semiseg_sdk.engine.evaluator import EvalWindowWarning
    from semiseg_sdk.models import AtrousPaddingWarning

    for category in (EvalWindowWarning, AtrousPaddingWarning):
        assert format_warning(category("window too large"), category, "/x/trainer.py", 9, "code") == "warning: window too large\n"
    other = format_warning(UserWarning("deprecated"), UserWarning, "/x/lib.py", 9, "code")
    assert other.startswith("/x/lib.py:9: UserWarning: deprecated")


def test_single_dash_flags_are_refused_instead_of_guessed():
    r = run_cli("train", "-w", "0.1")  # fire would have read it as --weight_decay
    assert r.returncode == 2 and r.stderr.startswith("error: -w: flags take two dashes") and "Traceback" not in r.stderr


def test_listing_commands_give_one_line_each():
    r = run_cli("methods")
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 17
    unimatch = next(line for line in lines if line.startswith("unimatch "))
    assert "hybrid" in unimatch and "feature perturbation" in unimatch
    r = run_cli("datasets")
    assert any(line.startswith("folder ") and "images/" in line for line in r.stdout.splitlines())
    r = run_cli("models")
    assert "encoders:" in r.stdout and any(line.startswith("efficientnet_lite0 ") for line in r.stdout.splitlines())


def test_train_then_evaluate(tmp_path):
    args = ["train", "--data", "synthetic-driving", "--data_args", '{"length": 12, "size": [32, 64]}', "--labelled", "1/4",
            "--model", "fcn", "--encoder", "tiny", "--steps", "2", "--batch_size", "2", "--crop_size", "32,32",
            "--eval_every", "2", "--num_workers", "0", "--out", str(tmp_path), "--name", "cli", "--progress", "False"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "mIoU" in r.stdout
    r = run_cli("evaluate", str(tmp_path / "cli"), "--save", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] > 0
    assert (tmp_path / "eval" / "confusion.png").is_file()
    r = run_cli("evaluate", str(tmp_path / "cli"))  # without --save: beside the run
    assert r.returncode == 0 and (tmp_path / "cli" / "eval-synthetic-driving-val" / "confusion.csv").is_file()


@pytest.mark.parametrize("name", ["unimatch", "cutmix", "cps"])
def test_a_methods_help_lists_every_option_with_its_default_and_comment(name):
    import dataclasses

    from semiseg_sdk.cli_help import method_help
    from semiseg_sdk.methods import get_method

    text = method_help(name)
    assert text.startswith(f"{name}: {get_method(name).family}\n")
    for f in dataclasses.fields(get_method(name).Config):
        line = next(line for line in text.splitlines() if line.startswith(f"  {f.name} "))
        assert json.loads(line.split()[1]) == json.loads(json.dumps(f.default)), line  # the default, as JSON
    # the class levers' comments come from their shared base config (CPS: the class balance alone)
    assert any(line.startswith("  class_balance false ") and "class-balanced weights" in line for line in text.splitlines())
    assert (name == "cps") != any(line.startswith("  class_thresholds false ") for line in text.splitlines())
    names = [line.split()[0] for line in text.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    first_lever = next(i for i, n in enumerate(names) if n.startswith("class_"))  # own options first, levers after
    assert first_lever > 0 and all(n.startswith("class_") for n in names[first_lever:]), names
    if name == "cutmix":  # a comment of the base config (MeanTeacher.Config) serves the alias's config made at run time
        assert "French --conf_thresh 0.97" in text


def test_an_unknown_method_name_is_one_line(capsys):
    from semiseg_sdk.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["methods", "unimatc"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: unknown method 'unimatc'") and len(err.splitlines()) == 1


def test_errors_are_one_line_and_actionable(tmp_path):
    r = run_cli("train", "--method", "no-such-method", "--out", str(tmp_path), "--data_args", '{"length": 4}')
    assert r.returncode == 2 and "unknown method 'no-such-method'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "--stpes", "3", "--out", str(tmp_path))
    assert r.returncode == 2 and "stpes" in r.stderr
    r = run_cli("evaluate", str(tmp_path / "nothing.pt"))
    assert r.returncode == 2 and "nothing.pt" in r.stderr
    r = run_cli("train", "--data", "folder", "--data_root", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert r.returncode == 2 and "missing" in r.stderr


MISTAKES = [  # (flags, what the one line must say)
    (["--data", "folder"], "--data folder reads files: pass --data_root DIR"),
    (["--crop_size", "96y96"], "--crop_size '96y96': expected two whole numbers such as 321,321"),
    (["--data_args", '{"lenght": 4}'], "takes no argument 'lenght'; did you mean 'length'?"),
    (["--device", "cuda:7"], "--device cuda:7"),
    (["--device", "gpu"], "--device 'gpu': not a device"),
    (["--data", "folder", "--data_root", "../no-such-set"], "no-such-set: dataset folder not found"),
    (["--methd", "unimatch"], "unknown setting --methd; did you mean --method?"),
]


@pytest.mark.parametrize("flags, message", MISTAKES, ids=[m[0][0] + "-" + m[0][1] for m in MISTAKES])
def test_an_ordinary_mistake_is_one_line_and_leaves_no_run_folder(tmp_path, capsys, flags, message):
    from semiseg_sdk.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", *flags, "--out", str(tmp_path / "runs"), "--steps", "1", "--num_workers", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    if "no-such-set" in message:
        assert os.path.abspath(os.path.join(os.getcwd(), "..", "no-such-set")) in err  # the absolute path tried


COMMAND_LINE_MISTAKES = [  # (command line, what the one line must say)
    (["trian"], "unknown command 'trian' of `semiseg`; did you mean train?"),
    (["evaluate", "--checkpont", "run/"], "unknown flag --checkpont of `semiseg evaluate`; did you mean --checkpoint?"),
    (["evaluate"], "`semiseg evaluate` needs CHECKPOINT (the next argument, or --checkpoint VALUE)"),
    (["export", "a.pt", "--fp61", "b.onnx"], "unknown flag --fp61 of `semiseg export`; did you mean --fp16?"),
    (["export", "a.pt", "--fp16"], "`semiseg export` needs OUTPUT"),  # --fp16 takes no word: none is left for OUTPUT
    (["datasets", "extra"], "`semiseg datasets` takes no argument; got 'extra'"),
    (["continual", "ingest"], "unknown command 'ingest' of `semiseg continual`; did you mean init?"),
    (["continual", "run", "--stor", "fleet/"], "unknown flag --stor of `semiseg continual run`; did you mean --store?"),
]


@pytest.mark.parametrize("argv, message", COMMAND_LINE_MISTAKES, ids=[" ".join(m[0]) for m in COMMAND_LINE_MISTAKES])
def test_a_misspelt_command_or_flag_or_a_missing_argument_is_one_line(capsys, argv, message):
    from semiseg_sdk.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1, err


def test_the_command_line_check_accepts_what_fire_accepts():
    """Flags by either spelling, ``--name=value``, ``--noname`` for a boolean, arguments by position or by flag."""
    from semiseg_sdk.cli import SemisegCLI
    from semiseg_sdk.cli_check import command_line_error

    for argv in (["evaluate", "run/"], ["evaluate", "--checkpoint", "run/", "--data-root=d", "--save"],
                 ["export", "a.pt", "b.onnx", "--nosimplify", "--opset", "17"], ["export", "--output", "b.onnx", "a.pt"],
                 ["infer", "m.onnx", "in/", "out/", "--overlay", "False"], ["methods"], [], ["--help"],
                 ["train", "--anything", "1"]):  # train checks its own flags
        assert command_line_error(SemisegCLI, argv) is None, argv


def test_the_continual_group_alone_lists_its_commands():
    r = run_cli("continual")
    assert r.returncode == 0 and "semiseg continual COMMAND" in r.stdout and "  rollback " in r.stdout


def test_a_resume_with_other_settings_names_them(tmp_path, capsys):
    from semiseg_sdk.cli import main

    common = ["--data_args", '{"length": 8, "size": [32, 64]}', "--encoder", "tiny", "--crop_size", "32",
              "--num_workers", "0", "--out", str(tmp_path), "--name", "r", "--eval_every", "1", "--progress", "False"]
    main(["train", "--model", "fcn", "--steps", "1", *common])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--model", "unet", "--steps", "2", "--resume", *common])
    err = capsys.readouterr().err
    assert "settings that differ from the run's: --model 'unet' (the run: 'fcn')" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "r" / "last.pt").is_file()  # the run it refused to resume is kept


def test_help_and_the_runtime_commands_work_without_the_training_extras(tmp_path):
    """An install without [train]: help works, and a training command names the extra to install in one line."""
    block = "import sys; sys.modules['torch'] = None; sys.modules['kornia'] = None; from semiseg_sdk.cli import main; "
    for args, code, expect in ((["--help"], 0, "commands:"), (["train", "--help"], 0, "--labelled"),
                               (["infer", "--help"], 0, "usage: semiseg infer MODEL"),
                               (["methods"], 0, "unimatch"), (["models"], 0, "efficientnet_lite0"),
                               (["datasets"], 0, "synthetic-driving"),
                               (["train", "--steps", "1"], 2, 'which the [train] extra installs: pip install "semiseg-sdk[train]"')):
        r = subprocess.run([sys.executable, "-c", block + f"main({args!r})"], capture_output=True, text=True, env=ENV,
                           timeout=120, cwd=tmp_path)
        assert r.returncode == code and expect in r.stdout + r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


@pytest.mark.parametrize("kind", ["method", "model", "encoder", "dataset"])
def test_the_torch_free_listing_equals_what_the_registries_hold(kind):
    """`semiseg methods|models|datasets` read the source; importing the registries must give the same names and docs."""
    from semiseg_sdk.catalog import entries
    from semiseg_sdk.data import DATASETS
    from semiseg_sdk.methods import METHODS
    from semiseg_sdk.models import ENCODERS, MODELS

    registry = {"method": METHODS, "model": MODELS, "encoder": ENCODERS, "dataset": DATASETS}[kind]
    listed = {e.name: e for e in entries(kind)}
    # the listing covers the SDK's own packages; another module may register more (the continual loop's field-adapt
    # method, once semiseg_sdk.continual is imported)
    package = {"method": "semiseg_sdk.methods", "model": "semiseg_sdk.models", "encoder": "semiseg_sdk.models",
               "dataset": "semiseg_sdk.data"}[kind]
    assert sorted(listed) == [n for n in registry.names() if registry.get(n).__module__.startswith(package)]
    for name, entry in listed.items():
        obj = registry.get(name)
        assert entry.doc == inspect.getdoc(obj), name
        assert entry.family == getattr(obj, "family", ""), name
