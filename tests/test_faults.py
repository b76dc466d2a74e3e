"""Runs that survive faults: SIGKILL at random points, a second writer, a full disk (CPU, bounded in time)."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lib.cli.main import main
from lib.core import runs
from lib.core.config import override
from lib.core.evaluate import evaluate_run
from lib.core.train import train_run
from lib.profiles import profile_config

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = "clean,fgsm,pgd20,cw_l2"
TRAIN = ["train", "--profile", "smoke", "--method", "taet", "--epochs", "4", "--ce-epochs", "1", "--device", "cpu",
         "--no-progress", "--name", "run"]
EVALUATE = ["--evaluate", "--attacks", ATTACKS]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread here and in every subprocess: identical float results across processes, and no OpenMP
    spinning when the test machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TAET_KIT_FAULT"}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra})
    return env


def _run_cli(out_dir, *extra, fault=None, kill_after=None, delay=lambda gap: 0.0, timeout=120):
    """Run `python -m lib train ...`. With `kill_after`, SIGKILL it `delay(gap)` s after its first stdout line
    starting with that text, `gap` being the time since the line before it (an epoch's duration, for epoch
    lines: so the kill lands inside the next epoch however fast the machine is). Returns (returncode, stdout)."""
    env = _env(**({"TAET_KIT_FAULT": fault} if fault else {}))
    proc = subprocess.Popen([sys.executable, "-m", "lib", *TRAIN, "--out-dir", str(out_dir), *extra], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    last = time.monotonic()
    try:
        for line in proc.stdout:
            now = time.monotonic()
            lines.append(line)
            if kill_after and line.lstrip().startswith(kill_after):
                time.sleep(delay(now - last))
                proc.send_signal(signal.SIGKILL)
                break
            last = now
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += proc.stdout.read().splitlines(keepends=True)
    proc.stdout.close()
    return rc, "".join(lines)


def _check_every_file_is_whole(rd: Path) -> int:
    """Every file a reader would open parses; temporary leftovers are only `.*.tmp`. Returns the checkpoint epoch."""
    names = {p.name for p in rd.iterdir()}
    assert names <= {"config.json", "checkpoint.pt", "history.csv", "eval.json", "eval.csv", ".lock"} | {
        n for n in names if n.startswith(".") and n.endswith(".tmp")}, names
    json.loads((rd / "config.json").read_text())
    epoch = 0
    if "checkpoint.pt" in names:
        epoch = runs.load_checkpoint(rd / "checkpoint.pt")["epoch"]
    if "history.csv" in names:
        assert len(runs.read_csv(rd / "history.csv")) <= epoch
    if "eval.json" in names:
        assert json.loads((rd / "eval.json").read_text())["results"]
    return epoch


def _strip_seconds(doc):
    return {**doc, "results": {a: {k: v for k, v in r.items() if k != "seconds"} for a, r in doc["results"].items()}}


def test_sigkill_anywhere_then_resume_ends_like_an_uninterrupted_run(tmp_path, capsys):
    """`python -m lib train` killed with SIGKILL, `--resume` after each kill: between a checkpoint's temporary file
    and its rename; at seeded random moments of training (inside an epoch, its tracking or its checkpoint
    write); between eval.csv and eval.json; in the middle of the attack suite. Nothing is ever half-written,
    and the final weights, history, eval.json and eval.csv equal an uninterrupted run's, bit for bit."""
    rng = random.Random(int(os.environ.get("TAET_KIT_FAULT_SEED", "20250301")))  # another seed: other moments
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    assert main(TRAIN + EVALUATE + ["--out-dir", str(ref_out)]) == 0  # uninterrupted (same code, this process)
    capsys.readouterr()
    rd = out / "run"
    kills = []

    rc, log = _run_cli(out, fault="checkpoint_write:2")
    assert rc == -signal.SIGKILL, log
    assert _check_every_file_is_whole(rd) == 1  # the second checkpoint never replaced the first
    assert any(p.name.startswith(".checkpoint.pt.") for p in rd.iterdir())  # killed with the temp file complete
    kills.append("checkpoint write")

    epoch = 1
    for _ in range(2):  # random moments of the epoch after the first one this process finishes
        rc, log = _run_cli(out, "--resume", kill_after="epoch ", delay=lambda gap: rng.uniform(0.1, 0.8) * gap)
        now = _check_every_file_is_whole(rd)
        assert now > epoch, log  # it went on from the last checkpoint
        epoch = now
        if rc == -signal.SIGKILL:
            kills.append(f"training, after epoch {now}")
        else:  # the process finished training before the kill (the last epoch was its first line)
            assert rc == 0 and now == 4, log
            break
    assert any(k.startswith("training") for k in kills), kills

    rc, log = _run_cli(out, "--resume", *EVALUATE, fault="eval_write:2")  # eval.csv written, killed before eval.json
    assert rc == -signal.SIGKILL, log
    assert _check_every_file_is_whole(rd) == 4 and not (rd / "eval.json").exists()
    kills.append("eval.json write")
    rc, log = _run_cli(out, "--resume", *EVALUATE, kill_after="fgsm", delay=lambda gap: rng.uniform(0.0, 0.02))
    assert rc == -signal.SIGKILL and "pgd20" not in log, log  # killed during PGD-20 / CW-L2
    assert _check_every_file_is_whole(rd) == 4 and not (rd / "eval.json").exists()
    kills.append("evaluation")

    rc, log = _run_cli(out, "--resume", *EVALUATE)
    assert rc == 0, log
    assert not any(p.name.endswith(".tmp") for p in rd.iterdir())  # leftovers removed under the lock
    assert len(kills) >= 4, kills
    print("SIGKILLed:", "; ".join(kills))

    ref, got = runs.load_checkpoint(ref_out / "run" / "checkpoint.pt"), runs.load_checkpoint(rd / "checkpoint.pt")
    assert got["finished"] and got["epoch"] == 4
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), k
    assert [r["loss"] for r in ref["history"]] == [r["loss"] for r in got["history"]]
    assert len(runs.read_csv(rd / "history.csv")) == 4
    ref_eval = json.loads((ref_out / "run" / "eval.json").read_text())
    got_eval = json.loads((rd / "eval.json").read_text())
    assert set(got_eval["results"]) == set(ATTACKS.split(","))
    assert _strip_seconds(got_eval) == _strip_seconds(ref_eval)
    assert (rd / "eval.csv").read_text() == (ref_out / "run" / "eval.csv").read_text()


def _cfg(tmp_path, epochs=2):
    return override(profile_config("smoke", "at"), {"out_dir": str(tmp_path / "runs"), "name": "locked",
                                                     "train.epochs": epochs, "train.device": "cpu",
                                                     "train.progress": False, "train.track_every": 0})


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path):
    """While one process holds RUN_DIR/.lock, `python -m lib train` on that folder refuses, naming the run, the
    holder's pid and what to do, and touches nothing; evaluate refuses too. SIGKILL releases the lock."""
    cfg = _cfg(tmp_path)
    res = train_run(cfg, verbose=False, stop_after_epoch=1)
    rd = res.run_dir
    before = {p.name: p.stat().st_mtime_ns for p in rd.iterdir() if p.name != ".lock"}
    with runs.run_lock(rd, "train"):
        r = subprocess.run([sys.executable, "-m", "lib", "train", "--profile", "smoke", "--method", "at", "--epochs",
                            "2", "--device", "cpu", "--track-every", "0", "--out-dir", str(tmp_path / "runs"),
                            "--name", "locked", "--no-progress"], cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=90)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"run folder {rd} is in use" in r.stderr and f"pid {os.getpid()}" in r.stderr
        assert "Wait for it to finish" in r.stderr and "another --name" in r.stderr
        with pytest.raises(runs.RunLockedError, match=f"pid {os.getpid()} .*train"):
            train_run(cfg, verbose=False)
        with pytest.raises(runs.RunLockedError, match="is in use"):
            evaluate_run(rd, ["clean"], device="cpu", verbose=False)
    assert {p.name: p.stat().st_mtime_ns for p in rd.iterdir() if p.name != ".lock"} == before
    # a holder killed with SIGKILL leaves no stale lock: the kernel drops an flock with its process
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lib.core import runs\n"
                               f"with runs.run_lock({str(rd)!r}, 'train'):\n print('locked', flush=True); "
                               "time.sleep(60)"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runs.RunLockedError, match=f"pid {holder.pid} "):
            train_run(cfg, verbose=False)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.stdout.close()
    assert train_run(cfg, verbose=False).history[-1]["epoch"] == 2


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    """A write that fails with ENOSPC half way: a clear error naming the file and what to do, the previous
    checkpoint and history intact, no temporary file left; once space is back, --resume finishes the run."""
    cfg = _cfg(tmp_path)
    rd = train_run(cfg, verbose=False, stop_after_epoch=1).run_dir
    good = (rd / "checkpoint.pt").read_bytes()
    history = (rd / "history.csv").read_text()

    real_write = runs._write_fsync

    def full_disk(f, data):  # the disk fills up on the first large write: a checkpoint
        if len(data) < 100_000:
            return real_write(f, data)
        f.write(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "_write_fsync", full_disk)
    with pytest.raises(runs.DiskFullError, match=r"no space left on the device while writing .*checkpoint\.pt"
                                                 r".*previous checkpoint\.pt is intact.*--resume"):
        train_run(cfg, verbose=False)
    assert (rd / "checkpoint.pt").read_bytes() == good and (rd / "history.csv").read_text() == history
    assert not any(p.name.endswith(".tmp") for p in rd.iterdir())
    # the command line reports it as an error, not a traceback
    code = main(["train", "--profile", "smoke", "--method", "at", "--epochs", "2", "--device", "cpu",
                 "--track-every", "0", "--out-dir", str(tmp_path / "runs"), "--name", "locked", "--no-progress"])
    assert code == 3 and "no space left on the device" in capsys.readouterr().err
    assert (rd / "checkpoint.pt").read_bytes() == good
    monkeypatch.undo()
    res = train_run(cfg, resume=True, verbose=False)
    assert [r["epoch"] for r in res.history] == [1, 2]
