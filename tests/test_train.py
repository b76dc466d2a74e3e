"""Training: TAET's two stages, a measurable gain in robustness, exact resume, the run cache, divergence."""

from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F

from lib.core import runs
from lib.core.config import ConfigError, override
from lib.core.evaluate import evaluate_model, evaluate_run
from lib.core.methods import METHODS, Method, StepOutput, register_method
from lib.core.train import TrainingDiverged, train_run, validate
from lib.profiles import profile_config


def small_cfg(tmp_path, method="taet", epochs=4, **method_args):
    cfg = replace(profile_config("smoke", method), method_args={"ce_epochs": 1} if method == "taet" else {})
    return override(cfg, {"out_dir": str(tmp_path / "runs"), "train.epochs": epochs, "train.device": "cpu",
                          "train.progress": False, **{f"method_args.{k}": v for k, v in method_args.items()}})


def test_taet_switches_stage_and_lowers_loss(tmp_path):
    res = train_run(small_cfg(tmp_path, epochs=5, ce_epochs=2), verbose=False)
    stages = [r["stage"] for r in res.history]
    assert stages == ["clean", "clean", "adversarial", "adversarial", "adversarial"]
    adv = [r["loss"] for r in res.history if r["stage"] == "adversarial"]
    assert adv[-1] < adv[0]  # HEL goes down during stage 2
    clean = [r["loss"] for r in res.history if r["stage"] == "clean"]
    assert clean[-1] < clean[0]
    hist = runs.read_csv(res.run_dir / "history.csv")
    assert [int(r["epoch"]) for r in hist] == [1, 2, 3, 4, 5]


def test_taet_is_more_robust_than_standard_training(tmp_path):
    cfg_t = small_cfg(tmp_path, "taet", epochs=20, ce_epochs=6)
    cfg_c = small_cfg(tmp_path, "ce", epochs=20)
    ecfg = replace(cfg_t.eval, eps=0.1, pgd_step_size=0.01)
    rob = {}
    for cfg in (cfg_t, cfg_c):
        cfg = replace(cfg, data=replace(cfg.data, max_test=None))
        res = train_run(cfg, verbose=False)
        out = evaluate_model(res.model, res.data.test_x, res.data.test_y, res.data.num_classes, ecfg,
                             ["clean", "pgd20"], verbose=False)
        rob[cfg.method] = out["pgd20"]["balanced"]
    assert rob["taet"] > rob["ce"] + 0.1, rob


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    full = train_run(small_cfg(tmp_path / "a", epochs=4, ce_epochs=2), verbose=False)
    cfg = small_cfg(tmp_path / "b", epochs=4, ce_epochs=2)
    part = train_run(cfg, verbose=False, stop_after_epoch=3)  # interrupted after the first adversarial epoch
    assert len(part.history) == 3
    resumed = train_run(cfg, resume=True, verbose=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]


def test_run_cache_reuses_and_force_retrains(tmp_path):
    cfg = small_cfg(tmp_path, "at", epochs=1)
    first = train_run(cfg, verbose=False)
    mtime = (first.run_dir / "checkpoint.pt").stat().st_mtime_ns
    again = train_run(cfg, verbose=False)
    assert again.reused and (first.run_dir / "checkpoint.pt").stat().st_mtime_ns == mtime
    forced = train_run(cfg, force=True, verbose=False)
    assert not forced.reused and (first.run_dir / "checkpoint.pt").stat().st_mtime_ns != mtime
    # a different config lands in a different folder (its hash is in the name)
    other = train_run(replace(cfg, train=replace(cfg.train, lr=0.01)), verbose=False)
    assert other.run_dir != first.run_dir


def test_evaluate_run_writes_results_and_reuses_them(tmp_path):
    res = train_run(small_cfg(tmp_path, "atbsl", epochs=1), verbose=False)
    doc = evaluate_run(res.run_dir, ["clean", "fgsm"], device="cpu", verbose=False)
    assert set(doc["results"]) == {"clean", "fgsm"}
    r = doc["results"]["fgsm"]
    assert len(r["per_class"]) == 10 and 0 <= r["balanced"] <= 1
    assert r["settings"]["eps"] == pytest.approx(8 / 255)
    assert doc["protocol"]["test_protocol"] == "balanced" and doc["protocol"]["n_test"] == 200
    assert doc["results"]["clean"]["accuracy"] >= r["accuracy"]
    before = (res.run_dir / "eval.json").read_text()
    evaluate_run(res.run_dir, ["clean"], device="cpu", verbose=False)  # cached: nothing rewritten
    assert (res.run_dir / "eval.json").read_text() == before
    assert (res.run_dir / "eval.csv").read_text().startswith("attack,accuracy,balanced,n,class_0")


@dataclass
class _NanArgs:
    bad_epoch: int = 1


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    @register_method
    class Exploding(Method):
        name = "exploding_test"
        Args = _NanArgs
        fixed = False

        def step(self, model, x, y, epoch, generator):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if epoch == self.args.bad_epoch and not self.fixed:
                loss = loss * float("nan")
            return StepOutput(loss, logits)

    try:
        cfg = replace(small_cfg(tmp_path, "exploding_test", epochs=3), method_args={"bad_epoch": 1})
        with pytest.raises(TrainingDiverged, match=r"epoch 2, batch 1"):
            train_run(cfg, verbose=False)
        rd = runs.run_dir(cfg)
        ckpt = runs.load_checkpoint(rd / "checkpoint.pt")
        assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values()
                                           if v.is_floating_point())
        # the divergence is recorded: a second attempt (same config, same seed) says so and trains nothing
        rec = runs.read_diverged(rd, cfg)
        assert (rec["epoch"], rec["batch"], rec["config_hash"]) == (2, 1, runs.config_hash(cfg))
        stamp = (rd / "checkpoint.pt").stat().st_mtime_ns
        with pytest.raises(TrainingDiverged, match="recorded by an earlier attempt") as err:
            train_run(cfg, verbose=False)
        assert (err.value.epoch, err.value.batch) == (2, 1) and (rd / "checkpoint.pt").stat().st_mtime_ns == stamp
        # force=True trains again; once it finishes, the record is gone
        Exploding.fixed = True
        train_run(cfg, force=True, verbose=False)
        assert runs.read_diverged(rd, cfg) is None and runs.load_checkpoint(rd / "checkpoint.pt")["finished"]
        # a loss that is NaN in the first epoch: no checkpoint exists, and the message does not claim one
        Exploding.fixed = False
        first = replace(cfg, method_args={"bad_epoch": 0})
        with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 1 \(no epoch had finished, so there is no "):
            train_run(first, verbose=False)
        assert not (runs.run_dir(first) / "checkpoint.pt").exists() and runs.read_diverged(runs.run_dir(first))
    finally:
        METHODS.pop("exploding_test", None)


def test_truncated_checkpoint_and_foreign_config_are_refused(tmp_path):
    cfg = small_cfg(tmp_path, "at", epochs=2)
    res = train_run(cfg, verbose=False, stop_after_epoch=1)
    ck = res.run_dir / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        train_run(cfg, resume=True, verbose=False)
    ck.write_bytes(data)
    # same folder, different config: refused without --force
    other = replace(cfg, name=res.run_dir.name, train=replace(cfg.train, lr=0.02))
    with pytest.raises(ConfigError, match="different config"):
        train_run(other, verbose=False)
    # a checkpoint from another config copied in: refused by hash
    ckpt = runs.load_checkpoint(ck)
    ckpt["config_hash"] = "0" * 16
    torch.save(ckpt, ck)
    with pytest.raises(ConfigError, match="written for config"):
        train_run(cfg, resume=True, verbose=False)
    # a checkpoint of another method copied in: refused, naming both methods; nothing is overwritten
    other_method = train_run(replace(small_cfg(tmp_path, "atbsl", epochs=2), name="bsl"), verbose=False,
                             stop_after_epoch=1)
    foreign = (other_method.run_dir / "checkpoint.pt").read_bytes()
    ck.write_bytes(foreign)
    for attempt in (lambda: train_run(cfg, verbose=False), lambda: train_run(cfg, resume=True, verbose=False)):
        with pytest.raises(ConfigError, match="written by method 'atbsl', not 'at'"):
            attempt()
    assert ck.read_bytes() == foreign and (res.run_dir / "config.json").exists()


def test_corrupt_eval_json_is_refused_and_good_files_are_kept(tmp_path):
    """A corrupt or foreign eval.json stops evaluate with a clear error and stays as it is (so does the
    checkpoint); a truncated checkpoint stops evaluate without touching a good eval.json."""
    res = train_run(small_cfg(tmp_path, "at", epochs=1), verbose=False)
    rd = res.run_dir
    evaluate_run(rd, ["clean"], device="cpu", verbose=False)
    good_eval, good_ckpt = (rd / "eval.json").read_bytes(), (rd / "checkpoint.pt").read_bytes()
    for bad, message in [(good_eval[: len(good_eval) // 2], "is corrupt"), (b"[1, 2]", "not an eval.json"),
                         (b"\xff\xfe\x00", "is corrupt")]:
        (rd / "eval.json").write_bytes(bad)
        with pytest.raises(ConfigError, match=message):
            evaluate_run(rd, ["clean", "fgsm"], device="cpu", verbose=False)
        assert (rd / "eval.json").read_bytes() == bad and (rd / "checkpoint.pt").read_bytes() == good_ckpt
    (rd / "eval.json").write_bytes(good_eval)
    (rd / "checkpoint.pt").write_bytes(good_ckpt[:1000])
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        evaluate_run(rd, ["clean", "fgsm"], device="cpu", verbose=False)
    assert (rd / "eval.json").read_bytes() == good_eval
    assert not any(p.name.endswith(".tmp") for p in rd.iterdir())


def test_speed_settings_reach_training_and_only_precision_enters_the_hash(tmp_path):
    base = small_cfg(tmp_path, epochs=2)
    fp32 = train_run(base, verbose=False)
    assert fp32.config.train.amp == "off"  # "auto" resolves to fp32 on CPU, recorded as such
    off = replace(base, train=replace(base.train, amp="off"))
    assert runs.config_hash(validate(off)) == runs.config_hash(validate(base)) == runs.config_hash(fp32.config)
    # Layout and threads change how the run is computed, never what: same hash, same cached run.
    same = replace(base, train=replace(base.train, channels_last="on", threads=1))
    assert runs.config_hash(validate(same)) == runs.config_hash(fp32.config)
    bf16 = train_run(replace(base, train=replace(base.train, amp="bf16")), verbose=False)
    assert bf16.run_dir != fp32.run_dir and bf16.config.train.amp == "bf16"
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in bf16.history)
    diffs = [(a - b).abs().max().item() for a, b in zip(fp32.model.state_dict().values(),
                                                       bf16.model.state_dict().values()) if a.is_floating_point()]
    assert max(diffs) > 0  # bf16 autocast really ran: different arithmetic, different weights
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # fp32 master weights


def test_compiled_training_saves_the_plain_state_dict(tmp_path, monkeypatch):
    calls = []

    class Wrapped(torch.nn.Module):  # what torch.compile returns: a wrapper whose state dict keys gain a prefix
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

        def forward(self, x):
            calls.append(x.shape[0])
            return self._orig_mod(x)

    monkeypatch.setattr(torch, "compile", lambda m, **kw: Wrapped(m))
    cfg = small_cfg(tmp_path, epochs=2)
    res = train_run(replace(cfg, train=replace(cfg.train, compile=True)), verbose=False)
    assert calls, "method.step did not go through the compiled module"
    ckpt = torch.load(res.run_dir / "checkpoint.pt", weights_only=False)
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])
    assert runs.config_hash(res.config) == runs.config_hash(validate(cfg))  # compile is not a result field


@pytest.mark.parametrize("field,value,message", [
    ("amp", "fp16", "amp must be one of"),
    ("channels_last", "yes", "channels_last must be one of"),
    ("threads", 0, "threads must be a positive integer"),
])
def test_bad_speed_settings_fail_before_any_work(tmp_path, field, value, message):
    cfg = small_cfg(tmp_path)
    with pytest.raises(ConfigError, match=message):
        train_run(replace(cfg, train=replace(cfg.train, **{field: value})), verbose=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_per_epoch_tracking_leaves_the_trained_weights_unchanged(tmp_path, method):
    """Tracking (Fig. 1-2) attacks a test subset after each epoch with its own generator, in eval mode: the weights
    and losses must be those of the same run untracked, which is why profiles can track only where a figure reads
    it (notebook 01) without changing any other result."""
    args = {"ce_epochs": 1} if method in ("taet", "robustlt_taet") else {}
    base = small_cfg(tmp_path, method, epochs=2, **args)
    tracked = train_run(override(base, {"out_dir": str(tmp_path / "t"), "train.track_every": 1,
                                        "train.track_size": 60}), verbose=False)
    plain = train_run(override(base, {"out_dir": str(tmp_path / "p"), "train.track_every": 0}), verbose=False)
    assert "track_pgd_bal" in tracked.history[-1] and "track_pgd_bal" not in plain.history[-1]
    for (k, a), b in zip(tracked.model.state_dict().items(), plain.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["loss"] for r in tracked.history] == [r["loss"] for r in plain.history]
