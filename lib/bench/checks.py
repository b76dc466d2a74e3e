"""The benchmark's correctness checks: the kit's losses against the reference-style loop's on identical inputs
(:func:`numerical_check`, with the memory-layout check), and bf16 training against fp32 (:func:`bf16_check`)."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from lib.bench.harness import BenchSettings, Harness
from lib.core import losses, runs, speed
from lib.core.attacks import _strict_fp32, pgd, trusted_inputs  # attacks.py has no public name for it yet
from lib.core.data import iterate_batches
from lib.core.errors import ConfigError, check_seeds
from lib.core.methods import MethodContext, build_method
from lib.core.methods.common import train_pgd
from lib.profiles import profile_config
from lib.study.stats import Summary, paired_difference, summarize

CHECK_TOL = 1e-4


# ---------------------------------------------------------------------------------------------------
# Numerical check: the two loops compute the same losses (fp32, identical inputs)
# ---------------------------------------------------------------------------------------------------
def kit_clips_normal_start() -> bool:
    """Whether lib.core.attacks.pgd clips the start x + std·N(0,1) to [0, 1] before the first forward pass (the
    official code does not). Probed, so the check follows the kit if that changes."""
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(float(x.detach().min()))
            return x.flatten(1)[:, :2] * 1.0

    x = torch.zeros(1, 1, 2, 2)
    pgd(Probe(), x, torch.zeros(1, dtype=torch.long), eps=1.0, step_size=0.0, steps=1, start="normal", start_std=1.0,
        generator=torch.Generator().manual_seed(1))
    return seen[0] >= 0.0


def _clone_gen(gen: torch.Generator) -> torch.Generator:
    g = torch.Generator(device=gen.device)
    g.set_state(gen.get_state())
    return g


def numerical_check(h: Harness, st: BenchSettings) -> dict[str, Any]:
    """See :func:`_numerical_check`; run in true fp32 (no TF32) with deterministic cuDNN on a GPU."""
    det = torch.backends.cudnn.deterministic
    try:
        torch.backends.cudnn.deterministic = True
        with _strict_fp32(h.device):
            return _numerical_check(h, st)
    finally:
        torch.backends.cudnn.deterministic = det


def _numerical_check(h: Harness, st: BenchSettings) -> dict[str, Any]:
    """Kit vs reference on the same batch, same weights, same start noise, fp32:

    1. HEL: the official class loop vs ``lib.core.losses.hel_loss`` on identical per-sample losses (a batch with a
       class missing): value and gradient.
    2. TAET stage-2 loss: ``TAET.step`` (lib PGD + vectorised HEL, the kit's layout) vs the reference HARL
       given the kit's start noise; also the adversarial images themselves.
    3. AT-BSL loss, the same way.
    4. The official start rule: the reference with x + 0.001·N(0,1) not clipped before the first step,
       against the kit (reported; it is a rule difference, not a numerical one, when the kit clips).
    """
    ref, d, dev = h.ref, h.data, h.device
    # Loop against loop in one layout: PGD's sign() turns rounding-level differences (another convolution
    # algorithm) into whole steps on a few pixels, so the layout is checked on its own below (5.).
    sp = speed.plan(dev, amp="off", channels_last=False, compile=False)
    bs = min(h.spec.batch_size, 64)
    gen = torch.Generator().manual_seed(st.seed + 7)
    xb, yb = next(iterate_batches(h.train_x, h.train_y, bs, generator=gen, shuffle=True, augment=True,
                                  padding=d.padding, flip=d.flip))
    kit_model = speed.prepare_model(copy.deepcopy(h.base), sp)[0].train()
    ref_model = copy.deepcopy(h.base).train()
    out: dict[str, Any] = {"batch_size": bs, "tolerance": CHECK_TOL}

    # 1. HEL on identical per-sample losses, with the batch's most frequent class removed (absent class).
    drop = int(torch.bincount(yb, minlength=d.num_classes).argmax())
    keep = yb != drop
    with torch.no_grad():
        base_losses = F.cross_entropy(ref_model.eval()(xb[keep]), yb[keep], reduction="none")
    ref_model.train()
    ps1 = base_losses.clone().requires_grad_(True)
    ps2 = base_losses.clone().requires_grad_(True)
    v_ref = ref.hel_loop(ps1, yb[keep], d.num_classes)
    v_kit = losses.hel_loss(ps2, yb[keep], d.num_classes)  # looked up at call time (tests swap it)
    g_ref, = torch.autograd.grad(v_ref, ps1)
    g_kit, = torch.autograd.grad(v_kit, ps2)
    v_ref, v_kit = float(v_ref.detach()), float(v_kit.detach())
    out["hel"] = {"reference": v_ref, "kit": v_kit, "abs_diff": abs(v_ref - v_kit),
                  "grad_max_abs_diff": float((g_ref - g_kit).abs().max()), "absent_class": drop}

    clip = kit_clips_normal_start()
    out["kit_clips_normal_start"] = clip
    ctx = MethodContext(d.num_classes, list(d.class_counts), 2, dev)
    for name, margs in (("taet_stage2", {"ce_epochs": 1}), ("atbsl", {})):
        method_name = "taet" if name == "taet_stage2" else "atbsl"
        method = build_method(method_name, margs, ctx)
        a = method.args
        km, rm = copy.deepcopy(kit_model), copy.deepcopy(ref_model)
        g = torch.Generator().manual_seed(st.seed + 11)
        noise = torch.randn(xb.shape, generator=_clone_gen(g), device=g.device, dtype=torch.float32).to(dev)
        x_adv_kit = train_pgd(copy.deepcopy(km), xb, yb, a, _clone_gen(g))
        with trusted_inputs():
            kit_out = method.step(km, xb, yb, 1, g)
        x_adv_ref = ref.pgd_official(copy.deepcopy(rm).train(), xb, yb, eps=a.eps, step_size=a.step_size,
                                     steps=a.steps, noise=noise, clip_start=clip)

        def reference_loss(model, clip_start, a=a, noise=noise, name=name):
            """The reference loop's loss and logits for this workload on the batch (same weights and noise)."""
            if name == "taet_stage2":
                return ref.taet_stage2_loss(model, xb, yb, d.num_classes, eps=a.eps, step_size=a.step_size,
                                            steps=a.steps, noise=noise, clip_start=clip_start)
            return ref.atbsl_loss(model, xb, yb, d.class_counts, eps=a.eps, step_size=a.step_size, steps=a.steps,
                                  noise=noise, clip_start=clip_start)

        ref_loss, ref_logits = reference_loss(rm, clip)
        ref_v, kit_v = float(ref_loss.detach()), float(kit_out.loss.detach())
        res = {"reference": ref_v, "kit": kit_v, "abs_diff": abs(ref_v - kit_v),
               "logits_max_abs_diff": float((ref_logits - kit_out.logits.float()).detach().abs().max()),
               "x_adv_max_abs_diff": float((x_adv_ref - x_adv_kit).abs().max()),
               "x_adv_pixels_differing": int((x_adv_ref != x_adv_kit).sum())}
        if clip:  # what the official, unclipped start gives on the same batch and noise
            off, _ = reference_loss(copy.deepcopy(ref_model), False)
            res["official_unclipped_start"] = {"reference": float(off.detach()), "abs_diff_to_kit":
                                               abs(float(off.detach()) - kit_v)}
        out[name] = res
    out["layout"] = _layout_check(h, xb, yb, trains_channels_last=speed.resolve_channels_last(st.channels_last, dev))
    out["passed"] = bool(out["hel"]["abs_diff"] <= CHECK_TOL and out["hel"]["grad_max_abs_diff"] <= CHECK_TOL
                         and out["taet_stage2"]["abs_diff"] <= CHECK_TOL and out["atbsl"]["abs_diff"] <= CHECK_TOL
                         and out["layout"]["passed"])
    return out


def _layout_check(h: Harness, xb: torch.Tensor, yb: torch.Tensor, trains_channels_last: bool) -> dict[str, Any]:
    """channels_last against contiguous weights, fp32, on one batch (relative max differences).

    Gated: eval mode (the attack) logits and input gradient, train mode logits: same arithmetic up to
    summation order, so within the tolerance. The train-mode weight gradients' error against fp64 is reported
    for both layouts, and gated (channels_last within 10x NCHW's, or 1e-4) when the kit trains in channels_last
    on this device: PyTorch's CPU channels_last batch-norm backward is far less accurate (docs/performance.md)."""
    rel = lambda u, v: float((u - v).abs().max() / v.abs().max().clamp_min(1e-30))  # noqa: E731
    out: dict[str, Any] = {}
    for mode in ("eval", "train"):
        res = []
        for m in (copy.deepcopy(h.base), speed.to_channels_last(copy.deepcopy(h.base))):
            m.train(mode == "train")
            xr = xb.clone().requires_grad_(True)
            z = m(xr)
            g, = torch.autograd.grad(F.cross_entropy(z, yb, reduction="sum"), xr)
            res.append((z.detach(), g))
        out[mode] = {"logits_rel_diff": rel(res[1][0], res[0][0])}
        if mode == "eval":
            out[mode]["input_grad_rel_diff"] = rel(res[1][1], res[0][1])
    grads = {}
    for name, m, dtype in (("fp64", copy.deepcopy(h.base).double(), torch.float64),
                           ("contiguous", copy.deepcopy(h.base), torch.float32),
                           ("channels_last", speed.to_channels_last(copy.deepcopy(h.base)), torch.float32)):
        m.train()
        F.cross_entropy(m(xb.to(dtype)), yb, reduction="sum").backward()
        grads[name] = [p.grad.double() for p in m.parameters()]
    out["train_weight_grad_error_vs_fp64"] = {
        k: max(rel(a, b) for a, b in zip(grads[k], grads["fp64"])) for k in ("contiguous", "channels_last")}
    err = out["train_weight_grad_error_vs_fp64"]
    out["channels_last_training_ok"] = err["channels_last"] <= max(10 * err["contiguous"], CHECK_TOL)
    out["gates_training_layout"] = trains_channels_last
    out["passed"] = (all(v <= CHECK_TOL for mode in ("eval", "train") for v in out[mode].values())
                     and (out["channels_last_training_ok"] or not trains_channels_last))
    return out


# ---------------------------------------------------------------------------------------------------
# bf16 accuracy check: TAET trained in bf16 against the same runs in fp32
# ---------------------------------------------------------------------------------------------------
PRECISIONS = (("fp32", "off"), ("bf16", "bf16"))


def precision_runs(profile: str, variants: dict[str, dict[str, Any]], seeds: list[int], *, device: str,
                   out_dir: str, workers: int | None, evidence: bool = True) -> dict[str, dict[int, dict[str, Any]]]:
    """TAET under `profile` for each variant and seed, trained and evaluated (clean, PGD-20) through the run cache
    (`lib.study.seeded.sweep_seeds`): runs already in the cache or (`evidence`) in the profile's committed evidence
    (results/<profile>/) are read, not retrained. Evaluation is fp32 whatever the training precision."""
    from lib.study.seeded import sweep_seeds

    return sweep_seeds(profile, variants, seeds, method="taet", device=device, out_dir=out_dir, workers=workers,
                       attacks=("clean", "pgd20"), evidence="auto" if evidence else None)


def _run_summary(doc: dict[str, Any], amp: str) -> dict[str, Any]:
    return {"amp": amp, "train_seconds": round(runs.train_seconds(doc.get("history", [])), 1),
            "clean_balanced": doc["results"]["clean"]["balanced"],
            "pgd20_balanced": doc["results"]["pgd20"]["balanced"],
            "source": doc.get("source", "cache"), "run_dir": doc.get("run_dir")}


def bf16_verdict(diff: Summary, tolerance: float) -> str:
    """An equivalence reading of the paired bf16 − fp32 difference: "equivalent" when its whole interval lies within
    ±`tolerance`, "different" when it lies wholly outside that band, "inconclusive" otherwise (and for one seed)."""
    if diff.n < 2 or math.isnan(diff.low):
        return "inconclusive"
    if -tolerance <= diff.low and diff.high <= tolerance:
        return "equivalent"
    if diff.low > tolerance or diff.high < -tolerance:
        return "different"
    return "inconclusive"


def bf16_check(profile: str = "demo", device: str = "auto", epochs: int | None = None, seeds=(0, 1, 2),
               tolerance: float = 0.01, verbose: bool = True, out_dir: str = "outputs",
               workers: int | None = None, evidence: bool = True) -> dict[str, Any]:
    """TAET under `profile` trained in fp32 and in bf16 for each seed (same seed: same data, initialisation and
    batch order), each evaluated in fp32. bf16 − fp32 balanced PGD-20 robustness is a paired difference over the
    seeds (`lib.study.stats.paired_difference`, 95% t-interval); the check passes when that whole interval lies within
    ±`tolerance` (1 point; `bf16_verdict`). fp32's own seed-to-seed std is reported beside it for scale.

    Both precisions are ordinary runs of the run cache at the profile's own settings (`epochs` aside: then 40% of
    them clean), trained by `lib.orchestrate.sweep`'s workers: fp32 runs the cache or the profile's committed evidence
    already holds are read, not retrained, and the bf16 runs stay cached (and exportable, `python -m lib export`).
    `evidence=False` reads the run cache alone: both precisions trained on this machine (the committed runs may come
    from a CPU that rounds differently)."""
    seeds = check_seeds(seeds, "bf16 check seeds")
    if len(seeds) < 2:
        raise ConfigError(f"the bf16 check needs at least 2 seeds for an interval, got {seeds}; e.g. 0,1,2")
    cfg = profile_config(profile, "taet")
    common: dict[str, dict[str, Any]] = {"train": {}}
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"bf16 check epochs must be at least 1, got {epochs}")
        common = {"train": {"epochs": epochs}, "method_args": {
            "ce_epochs": max(0, min(cfg.method_args.get("ce_epochs", 0), int(round(epochs * 0.4))))}}
    variants = {name: {**common, "train": {**common["train"], "amp": amp}} for name, amp in PRECISIONS}
    docs = precision_runs(profile, variants, seeds, device=device, out_dir=out_dir, workers=workers,
                          evidence=evidence)
    log = print if verbose else (lambda *a, **k: None)
    n_epochs = epochs if epochs is not None else cfg.train.epochs
    runs_: dict[str, dict[int, dict[str, Any]]] = {name: {} for name, _ in PRECISIONS}
    for sd in seeds:
        for name, amp in PRECISIONS:
            r = runs_[name][sd] = _run_summary(docs[name][sd], amp)
            log(f"bf16 check ({profile}, {cfg.model.arch}, {n_epochs} epochs) seed {sd} {name}: clean "
                f"{r['clean_balanced']:.4f}, PGD-20 {r['pgd20_balanced']:.4f} ({r['train_seconds']:.0f} s training, "
                f"from the {r['source']})")
    fp32 = [runs_["fp32"][sd]["pgd20_balanced"] for sd in seeds]
    bf16 = [runs_["bf16"][sd]["pgd20_balanced"] for sd in seeds]
    diff = paired_difference(bf16, fp32)
    clean_diff = paired_difference([runs_["bf16"][sd]["clean_balanced"] for sd in seeds],
                                   [runs_["fp32"][sd]["clean_balanced"] for sd in seeds])
    verdict = bf16_verdict(diff, tolerance)
    spread = summarize(fp32).std
    out = {"profile": profile, "arch": cfg.model.arch, "dataset": cfg.data.dataset, "epochs": n_epochs,
           "seeds": seeds, "runs": runs_, "pgd20_balanced_diff": dataclasses.asdict(diff),
           "clean_balanced_diff": dataclasses.asdict(clean_diff), "fp32_seed_std": spread,
           "tolerance": tolerance, "verdict": verdict, "passed": verdict == "equivalent"}
    log(f"bf16 check: bf16 - fp32 balanced PGD-20 = {100 * diff.mean:+.2f} points, 95% CI "
        f"[{100 * diff.low:+.2f}, {100 * diff.high:+.2f}] over {diff.n} paired seeds (fp32 seed-to-seed std "
        f"{100 * spread:.2f}; clean {100 * clean_diff.mean:+.2f} [{100 * clean_diff.low:+.2f}, "
        f"{100 * clean_diff.high:+.2f}]) -> {verdict.upper()}: {'PASS' if out['passed'] else 'FAIL'} (the interval "
        f"must lie within ±{100 * tolerance:g} points)")
    return out
