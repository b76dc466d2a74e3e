"""The run cache: what enters a run's hash (everything that changes results) and what does not."""

from dataclasses import replace

import pytest

from lib.core import runs
from lib.core.config import ConfigError, override
from lib.core.methods import get_method_class
from lib.core.train import train_run, validate
from lib.profiles import profile_config


def base_cfg(method="taet"):
    return validate(profile_config("smoke", method))


def _one_quiet_cpu_epoch(tmp_path):
    return {"out_dir": str(tmp_path / "runs"), "train.epochs": 1, "train.device": "cpu", "train.progress": False,
            "train.track_every": 0}


RESULT_CHANGES = {
    "data seed": lambda c: replace(c, data=replace(c.data, seed=1)),
    "imbalance ratio": lambda c: replace(c, data=replace(c.data, imbalance_ratio=50.0)),
    "test protocol": lambda c: replace(c, data=replace(c.data, test_protocol="long_tailed")),
    "long-tail profile": lambda c: replace(c, data=replace(c.data, lt_profile="step")),
    "test-set cap": lambda c: replace(c, data=replace(c.data, max_test=100)),
    "augmentation": lambda c: replace(c, data=replace(c.data, augment=False)),
    "architecture": lambda c: replace(c, model=replace(c.model, arch="resnet18")),
    "training seed": lambda c: replace(c, train=replace(c.train, seed=1)),
    "learning rate": lambda c: replace(c, train=replace(c.train, lr=0.01)),
    "epochs": lambda c: replace(c, train=replace(c.train, epochs=3)),
    "tracking": lambda c: replace(c, train=replace(c.train, track_every=0)),
    "method": lambda c: validate(replace(c, method="atbsl", method_args={})),
    "HEL weight": lambda c: replace(c, method_args={**c.method_args, "alpha": 0.2}),
    "training attack eps": lambda c: replace(c, method_args={**c.method_args, "eps": 8 / 255}),
    "training attack steps": lambda c: replace(c, method_args={**c.method_args, "steps": 5}),
    "training attack start": lambda c: replace(c, method_args={**c.method_args, "start": "uniform"}),
    "tracking attack eps": lambda c: replace(c, train=replace(c.train, track_eps=16 / 255)),
    "precision": lambda c: replace(c, train=replace(c.train, amp="bf16")),
}
NO_RESULT_CHANGES = {
    "run name": lambda c: replace(c, name="elsewhere"),
    "output folder": lambda c: replace(c, out_dir="/tmp/other/runs"),
    "device": lambda c: replace(c, train=replace(c.train, device="cpu")),
    "progress bars": lambda c: replace(c, train=replace(c.train, progress=not c.train.progress)),
    "data folder": lambda c: replace(c, data=replace(c.data, data_dir="/somewhere/else")),
    "download flag": lambda c: replace(c, data=replace(c.data, download=True)),
    # eval settings are cached per attack in eval.json (with the settings), not through the run hash
    "eval attacks": lambda c: replace(c, eval=replace(c.eval, attacks=("clean",))),
    "eval eps": lambda c: replace(c, eval=replace(c.eval, eps=4 / 255)),
    "eval seed": lambda c: replace(c, eval=replace(c.eval, seed=3)),
    # how a run is computed, not what (lib.core.speed)
    "memory layout": lambda c: replace(c, train=replace(c.train, channels_last="on")),
    "threads": lambda c: replace(c, train=replace(c.train, threads=1)),
    "torch.compile": lambda c: replace(c, train=replace(c.train, compile=True)),
}


@pytest.mark.parametrize("change", sorted(RESULT_CHANGES))
def test_a_change_that_affects_results_gives_a_new_hash(change):
    cfg = base_cfg()
    assert runs.config_hash(RESULT_CHANGES[change](cfg)) != runs.config_hash(cfg)


@pytest.mark.parametrize("change", sorted(NO_RESULT_CHANGES))
def test_a_change_that_does_not_affect_results_keeps_the_hash(change):
    cfg = base_cfg()
    assert runs.config_hash(NO_RESULT_CHANGES[change](cfg)) == runs.config_hash(cfg)


def test_a_method_version_bump_invalidates_its_runs_only(tmp_path, monkeypatch):
    """Method.version enters the hash (above 1), so changed method code retrains instead of reusing old runs."""
    cfg = override(base_cfg("at"), _one_quiet_cpu_epoch(tmp_path))
    taet, at = base_cfg("taet"), cfg
    before = runs.config_hash(taet), runs.config_hash(at)
    first = train_run(cfg, verbose=False)
    assert train_run(cfg, verbose=False).reused
    monkeypatch.setattr(get_method_class("at"), "version", 2)
    assert runs.config_hash(at) != before[1] and runs.config_hash(taet) == before[0]
    bumped = train_run(cfg, verbose=False)
    assert not bumped.reused and bumped.run_dir != first.run_dir  # a new folder: the hash is in the name
    # a run folder pinned by --name refuses to mix the two versions (its checkpoint has the old hash)
    with pytest.raises(ConfigError, match="written for config"):
        train_run(replace(cfg, name=first.run_dir.name), verbose=False)
    monkeypatch.undo()
    assert runs.config_hash(at) == before[1] and train_run(cfg, verbose=False).reused


def test_eval_results_are_cached_per_attack_with_their_settings(tmp_path):
    """Eval settings stay out of the run hash: each attack's result carries its settings and seed, and only
    the attacks whose settings changed are recomputed (the trained run is reused as it is)."""
    from lib.core.evaluate import evaluate_run, with_eval_overrides

    cfg = override(base_cfg("at"), _one_quiet_cpu_epoch(tmp_path))
    rd = train_run(cfg, verbose=False).run_dir
    first = evaluate_run(rd, ["clean", "fgsm"], device="cpu", verbose=False)
    again = evaluate_run(rd, ["clean", "fgsm"], device="cpu", verbose=False)
    assert again["results"] == first["results"]  # nothing recomputed (same timings)
    wider = evaluate_run(rd, ["clean", "fgsm"], device="cpu", verbose=False,
                         ecfg=with_eval_overrides(cfg.eval, eps=16 / 255))
    assert wider["results"]["clean"] == first["results"]["clean"]  # clean has no eps: kept
    assert wider["results"]["fgsm"]["settings"]["eps"] == pytest.approx(16 / 255)
    assert wider["results"]["fgsm"]["accuracy"] <= first["results"]["fgsm"]["accuracy"]
    reseeded = evaluate_run(rd, ["fgsm"], device="cpu", verbose=False, ecfg=replace(cfg.eval, seed=5))
    assert reseeded["results"]["fgsm"]["seed"] == 5 and reseeded["results"]["fgsm"]["settings"]["eps"] == cfg.eval.eps


def test_a_profile_attack_scale_multiplies_every_attack_size():
    from lib.core.methods import resolve_method_args

    assert profile_config("demo", "taet").eval.eps == pytest.approx(32 / 255)  # demo: 4x the paper's 8/255
    assert profile_config("demo", "taet").eval.pgd_step_size == pytest.approx(4 / 255)
    assert profile_config("demo", "atbsl").train.track_eps == pytest.approx(32 / 255)  # Fig. 1-2's tracking attack
    for method in ("taet", "atbsl", "trades", "robal", "las_at", "adt"):
        paper, demo = resolve_method_args(method, {}), profile_config("demo", method).method_args
        for k in ("eps", "step_size", "init_eps"):
            if k in paper:
                assert demo[k] == pytest.approx(4 * paper[k]), (method, k)
    assert profile_config("demo", "las_at").method_args["eps_types"] == tuple(range(12, 61, 4))
    smoke = profile_config("smoke", "taet")  # no scale: the paper's sizes
    assert "eps" not in smoke.method_args and smoke.eval.eps == pytest.approx(8 / 255)
    assert profile_config("demo", "taet").method_args["ce_epochs"] == 16  # the profile's own args still apply


def test_a_switch_at_its_neutral_value_leaves_the_hash_of_cached_runs_unchanged(monkeypatch):
    from lib.core.config import RunConfig
    from lib.core.runs import HASH_NEUTRAL, config_hash

    before = config_hash(RunConfig(method="taet", method_args={"alpha": 0.1}))
    monkeypatch.setitem(HASH_NEUTRAL, ("method_args", "new_switch"), False)
    at_neutral = RunConfig(method="taet", method_args={"alpha": 0.1, "new_switch": False})
    switched = RunConfig(method="taet", method_args={"alpha": 0.1, "new_switch": True})
    assert config_hash(at_neutral) == before
    assert config_hash(switched) != before


def test_export_copies_the_evidence_files_of_finished_runs_and_no_weights(tmp_path, capsys):
    from lib.cli.main import main

    done, unfinished = tmp_path / "runs" / "taet-a-s0-1", tmp_path / "runs" / "taet-a-s1-2"
    for d in (done, unfinished):
        d.mkdir(parents=True)
        (d / "config.json").write_text('{"method": "taet"}')
        (d / "checkpoint.pt").write_bytes(b"weights")
    (done / "eval.json").write_text('{"results": {}}')
    (done / "history.csv").write_text("epoch\n1\n")
    results = tmp_path / "results"
    # an unfinished run among them: refused, naming it, before anything is copied
    assert main(["export", str(done), str(unfinished), "--profile", "smoke", "--results-dir", str(results)]) == 2
    assert "taet-a-s1-2" in capsys.readouterr().err and not results.exists()
    assert main(["export", str(done), "--profile", "smoke", "--results-dir", str(results)]) == 0
    dest = results / "smoke" / done.name
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "eval.json", "history.csv"]
    assert (dest / "eval.json").read_text() == '{"results": {}}'
    assert main(["export", str(done), "--profile", "nope", "--results-dir", str(results)]) == 2
