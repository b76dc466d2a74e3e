"""The command line: help texts, an end-to-end train + evaluate in a subprocess, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=600)


def test_help_lists_commands_flags_defaults_and_paper_values():
    top = run_cli("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("train", "evaluate", "demo"))
    tr = run_cli("train", "--help")
    assert tr.returncode == 0
    text = " ".join(tr.stdout.split())
    for flag in ("--ce-epochs", "--alpha", "--imbalance-ratio", "--test-protocol", "--epochs", "--lr", "--resume"):
        assert flag in text
    assert "(default: 100; paper: 100)" in text  # --epochs
    assert "paper: 40" in text  # --ce-epochs
    for m in ("taet", "atbsl", "at", "ce"):
        assert f"  {m} " in tr.stdout  # every registered method is listed with its hyperparameters
    ev = run_cli("evaluate", "--help")
    assert ev.returncode == 0 and "autoattack" in ev.stdout


def test_every_argparse_definition_is_in_lib_cli(capsys):
    """One command line: no module outside lib/cli builds a parser or adds a flag; `claims` is one of its
    subcommands, and its --readme help names docs/results.md, where the claims section lives."""
    import ast

    outside = []
    for path in sorted((ROOT / "lib").rglob("*.py")):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [node.func.attr] if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else [])
            if any(n in ("argparse", "add_argument", "add_parser", "add_subparsers") for n in names):
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not outside, f"argparse outside lib/cli: {outside}"
    with pytest.raises(SystemExit) as e:
        main(["claims", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and "--readme docs/results.md" in text and "--switches" in text


def test_train_then_evaluate_end_to_end(tmp_path):
    out = tmp_path / "runs"
    r = run_cli("train", "--method", "taet", "--profile", "smoke", "--epochs", "2", "--ce-epochs", "1",
                "--device", "cpu", "--out-dir", str(out), "--name", "e2e", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "train counts per class:" in r.stdout
    rd = out / "e2e"
    assert {"config.json", "history.csv", "checkpoint.pt"} <= {p.name for p in rd.iterdir()}
    cfg = json.loads((rd / "config.json").read_text())
    assert cfg["method"] == "taet" and cfg["method_args"]["ce_epochs"] == 1 and cfg["method_args"]["alpha"] == 0.1
    r = run_cli("evaluate", str(rd), "--attacks", "clean,pgd20", "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr
    doc = json.loads((rd / "eval.json").read_text())
    assert set(doc["results"]) == {"clean", "pgd20"}
    assert doc["results"]["pgd20"]["settings"]["steps"] == 20


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid: ["),
    (["--arch", "resnet9000"], "unknown model 'resnet9000'; valid: ["),
    (["--imbalance-ratio", "0.5"], "imbalance ratio 0.5 < 1"),
    (["--train-eps", "8"], "eps=8.0 is outside [0.0, 1.0]"),
    (["--train-step-size", "-0.1"], "step_size=-0.1 is outside"),
    (["--ce-epochs", "5", "--epochs", "2"], "ce_epochs=5 must be between 0 and epochs=2"),
    (["--method", "at", "--alpha", "0.2"], "method 'at' has no hyperparameter(s) ['alpha']"),
    (["--lt-profile", "linear"], "unknown lt_profile 'linear'"),
    (["--test-protocol", "weird"], "unknown test_protocol 'weird'"),
    (["--amp", "fp16"], "amp must be one of ['auto', 'off', 'bf16']; got 'fp16'"),
    (["--channels-last", "maybe"], "channels_last must be one of"),
    (["--threads", "0"], "threads must be a positive integer"),
])
def test_bad_train_input_fails_fast_with_a_clear_message(tmp_path, capsys, args, message):
    code = main(["train", "--profile", "smoke", "--device", "cpu", "--out-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not any(tmp_path.iterdir())  # nothing was written: the error came before any work


def test_unknown_method_and_attack(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    code = main(["train", "--profile", "smoke", "--attacks", "clean,jsma", "--out-dir", str(tmp_path)])
    assert code == 2 and "unknown attack 'jsma'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_but_absent(tmp_path, capsys):
    code = main(["train", "--profile", "smoke", "--device", "cuda", "--out-dir", str(tmp_path)])
    assert code == 2 and "no CUDA GPU is visible" in capsys.readouterr().err


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
