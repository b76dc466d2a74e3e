"""The factorial "why": which of TAET's three departures from AT-BSL explains the gap between them.

TAET differs from AT-BSL in (a) its training attack (official ε 0.031, step 0.003, start x + 0.001·N(0,1), against
AT-BSL's 8/255, 2/255), (b) its loss scale (HEL with α = β = γ = 0.1 is about a tenth of a CE-sized gradient) and (c)
its clean first stage. The grid is 2 × 2 × 2 over TAET (attack {TAET's, AT-BSL's} × `hel_scale` {1, 10} × stage 1
{the profile's clean epochs, none}) plus AT-BSL, AT-BSL with TAET's attack (the official TAET repository's AT-BSL
baseline) and AT-BSL with TAET's clean stage, every cell over the same seeds. One more AT-BSL cell, with both TAET's
attack and its clean stage, differs from TAET's own setting (and from the HEL ×10 cell beside it) in the stage-2 loss
alone: HEL against AT-BSL's balanced-softmax CE, both on the same CE-driven PGD examples. It measures the loss
directly, where the TAET cell with all three factors at AT-BSL's levels cannot (it diverges on `fashion`).
A factor's main effect is, per seed, the mean of its four paired differences (level "AT-BSL-like" minus level
"TAET", the other two factors held), then summarised over seeds with `lib.study.stats` (paired: same seed = same data,
initialisation and batch order). A cell whose
training diverged (NaN/inf loss) has no value: its factors' effects average over the settings where both levels
trained, and say so.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from lib.core.config import ConfigError
from lib.profiles import profile_config
from lib.study.stats import Summary, paired_difference, summarize

ATTACK_FIELDS = ("eps", "step_size", "steps", "start", "start_std")

# Each factor: (name, TAET's level, the AT-BSL-like level). Main effects are "AT-BSL-like minus TAET".
FACTORS = (("attack", "TAET's", "AT-BSL's"), ("hel_scale", 1.0, 10.0), ("stage1", "clean", "none"))
FACTOR_TEXT = {"attack": "training attack (TAET's → AT-BSL's)", "hel_scale": "HEL scale (×1 → ×10)",
               "stage1": "clean first stage (kept → removed)"}


def attack_args(method: str, profile: str) -> dict[str, Any]:
    """`method`'s training-attack arguments in `profile` (ε, step, steps, start rule; scaled as the profile
    scales attacks): give them to another method to train it with this attack."""
    from lib.core.methods import resolve_method_args

    args = resolve_method_args(method, profile_config(profile, method).method_args, strict=False)
    return {k: args[k] for k in ATTACK_FIELDS}


def clean_epochs(profile: str) -> int:
    """TAET's stage-1 length in `profile` (paper: 40 of 100 epochs)."""
    return int(profile_config(profile, "taet").method_args.get("ce_epochs", 0))


@dataclasses.dataclass(frozen=True)
class Cell:
    label: str
    method: str
    method_args: dict[str, Any]
    levels: tuple | None = None  # (attack, hel_scale, stage1) for the 2 × 2 × 2 TAET cells, else None
    role: str = "grid"  # AT-BSL's cells: "atbsl" (itself), "single" (one of TAET's factors), "loss" (TAET's setting)


def cells(profile: str) -> list[Cell]:
    """The 8 TAET cells (TAET's own setting first), then AT-BSL, its two single changes and the loss cell (AT-BSL
    with TAET's attack and clean stage), with their method arguments."""
    atbsl_attack, taet_attack, ce = attack_args("atbsl", profile), attack_args("taet", profile), clean_epochs(profile)
    out = []
    for attack, hel, stage in itertools.product(*[(lo, hi) for _, lo, hi in FACTORS]):
        args: dict[str, Any] = {"ce_epochs": ce if stage == "clean" else 0}
        if attack == "AT-BSL's":
            args.update(atbsl_attack)
        if hel != 1.0:
            args["hel_scale"] = hel
        label = f"TAET · {attack} attack · HEL ×{hel:g} · stage 1 {f'{ce} clean' if stage == 'clean' else 'none'}"
        out.append(Cell(label, "taet", args, (attack, hel, stage)))
    out += [Cell("AT-BSL", "atbsl", {}, role="atbsl"),
            Cell("AT-BSL · TAET's attack", "atbsl", dict(taet_attack), role="single"),
            Cell(f"AT-BSL · stage 1 {ce} clean", "atbsl", {"clean_epochs": ce}, role="single"),
            Cell(f"AT-BSL · TAET's attack · stage 1 {ce} clean", "atbsl", {**taet_attack, "clean_epochs": ce},
                 role="loss")]
    return out


LOSS = "loss effect"


def loss_pairs(cs: list[Cell]) -> list[tuple[str, str, str]]:
    """(row name, minuend label, subtrahend label) for the loss: the loss cell (AT-BSL with TAET's attack and clean
    stage) minus each TAET cell at TAET's attack and clean stage, HEL ×1 (TAET's own setting) and HEL ×10 (HEL at
    about CE's scale): the same attack, clean stage and CE-driven PGD examples, only the stage-2 loss swapped."""
    loss = next(c for c in cs if c.role == "loss")
    by_levels = {c.levels: c for c in cs if c.levels is not None}
    out = []
    for hel in (FACTORS[1][1], FACTORS[1][2]):
        ref = by_levels[(FACTORS[0][1], hel, FACTORS[2][1])]
        out.append((f"{_loss_from(hel)}: {loss.label} − {ref.label}", loss.label, ref.label))
    return out


LOSS_LEFT = "gap left by the loss cell"


def loss_left(cs: list[Cell]) -> tuple[str, str, str]:
    """(row name, "AT-BSL", the loss cell's label): AT-BSL minus the loss cell, which differ in TAET's attack and
    clean stage together and not in the loss: what of the gap the loss swap leaves."""
    loss = next(c for c in cs if c.role == "loss")
    return f"{LOSS_LEFT}: AT-BSL − {loss.label}", "AT-BSL", loss.label


def _loss_from(hel: float) -> str:
    """The start of `loss_pairs`' row name for the TAET cell at HEL ×`hel`."""
    return f"{LOSS} (HEL ×{hel:g} → balanced-softmax CE)"


def _pairs(i: int, diverged=frozenset()) -> list[tuple[tuple, tuple]]:
    """Factor `i`'s paired cells (its AT-BSL-like level, its TAET level), one per setting of the other two factors,
    leaving out the settings where either cell is in `diverged`."""
    keys = list(itertools.product(*[(lo, hi) for _, lo, hi in FACTORS]))
    _, lo, hi = FACTORS[i]
    out = []
    for k in keys:
        if k[i] == lo:
            h = k[:i] + (hi,) + k[i + 1:]
            if k not in diverged and h not in diverged:
                out.append((h, k))
    return out


def settings_kept(diverged=frozenset()) -> dict[str, int]:
    """{factor: how many of the 4 settings of the other two factors have both of its levels trained}."""
    return {name: len(_pairs(i, set(diverged))) for i, (name, _, _) in enumerate(FACTORS)}


def main_effects(table: dict[tuple, list[float]], confidence: float = 0.95, diverged=frozenset()
                 ) -> dict[str, Summary]:
    """{factor: Summary of its main effect} from {(attack, hel_scale, stage1): [value per seed]} over all 8 cells.

    Per seed: the mean, over the four settings of the other two factors, of (the cell at the factor's AT-BSL-like
    level minus the cell at TAET's), which is the mean over the four AT-BSL-like cells minus the mean over the four
    TAET ones. `diverged`: cells (level tuples) whose training diverged, so they have no value: a factor's effect
    then averages over the settings where both its cells trained (`settings_kept`: conditional on those settings),
    and a factor left with none is omitted."""
    keys = list(itertools.product(*[(lo, hi) for _, lo, hi in FACTORS]))
    diverged = set(diverged)
    missing = [k for k in keys if k not in table and k not in diverged]
    if missing:
        raise ConfigError(f"the 2 × 2 × 2 table lacks the cell(s) {missing}; train every cell for the same seeds")
    sizes = {len(table[k]) for k in keys if k not in diverged}
    if len(sizes) != 1:
        raise ConfigError(f"every cell needs one value per seed, for the same seeds: got {sorted(sizes)} values")
    n = sizes.pop()
    out = {}
    for i, (name, _, _) in enumerate(FACTORS):
        pairs = _pairs(i, diverged)
        if pairs:
            per_seed = [sum(table[h][s] - table[lo][s] for h, lo in pairs) / len(pairs) for s in range(n)]
            out[name] = summarize(per_seed, confidence)
    return out


def effects(values: dict[str, list[float]], profile: str, diverged=()) -> dict[str, Summary]:
    """Every effect on one metric from {cell label: [value per seed]}: the AT-BSL − TAET gap, the three main
    effects, AT-BSL's two single changes (each minus AT-BSL), the loss effects (`loss_pairs`) and the gap left at
    the TAET cells nearest AT-BSL's levels. `diverged`: labels of cells whose training diverged (no values): effects
    that need them are left out, and a main effect over fewer than the 4 settings of the other factors says so in
    its name."""
    cs, dead = cells(profile), set(diverged)
    table = {c.levels: values[c.label] for c in cs if c.levels is not None and c.label not in dead}
    dead_levels = {c.levels for c in cs if c.levels is not None and c.label in dead}
    out = {}
    if not {"AT-BSL", cs[0].label} & dead:
        out["gap: AT-BSL − TAET"] = paired_difference(values["AT-BSL"], values[cs[0].label])
    out.update(_main_effect_rows(table, dead_levels))
    for c in cs:
        if c.role == "single" and not {c.label, "AT-BSL"} & dead:
            out[f"{c.label} − AT-BSL"] = paired_difference(values[c.label], values["AT-BSL"])
    for name, a, b in loss_pairs(cs) + [loss_left(cs)]:
        if not {a, b} & dead:
            out[name] = paired_difference(values[a], values[b])
    if "AT-BSL" not in dead:
        for c in nearest_atbsl(profile, dead):
            out[f"{REMAINING} ({atbsl_like(c)} of 3 factors at AT-BSL's levels): AT-BSL − {c.label}"] = \
                paired_difference(values["AT-BSL"], values[c.label])
    return out


REMAINING = "remaining gap"


def _main_effect_rows(table: dict[tuple, list[float]], dead_levels: set) -> dict[str, Summary]:
    """{"main effect: <factor>[ (over the k of 4 settings ...)]": Summary} from the 2 × 2 × 2 table."""
    kept = settings_kept(dead_levels)
    out = {}
    for k, s in main_effects(table, diverged=dead_levels).items():
        where = "" if kept[k] == 4 else f" (over the {kept[k]} of 4 settings of the other factors that trained)"
        out[f"main effect: {FACTOR_TEXT[k]}{where}"] = s
    return out


def settled_main_effects(values: dict[str, dict[int, float]], profile: str, diverged=()) -> dict[str, Summary]:
    """The main effects as `effects` names them, once the 2 × 2 × 2 TAET grid has settled (each of its 8 cells run
    for the same seeds, or in `diverged`) even if AT-BSL's own cells have not run; {} while a TAET cell lacks a
    seed the others have. `values`: {cell label: {seed: value}}."""
    grid = [c for c in cells(profile) if c.levels is not None]
    dead = set(diverged)
    alive = [c for c in grid if c.label not in dead]
    seed_sets = {frozenset(values.get(c.label, {})) for c in alive}
    if len(seed_sets) != 1 or not (seeds := sorted(next(iter(seed_sets)))):
        return {}
    table = {c.levels: [values[c.label][x] for x in seeds] for c in alive}
    return _main_effect_rows(table, {c.levels for c in grid if c.label in dead})


def atbsl_like(c: Cell) -> int:
    """How many of the three factors `c` (a TAET cell) has at AT-BSL's level."""
    return sum(lv == hi for lv, (_, _, hi) in zip(c.levels, FACTORS))


def nearest_atbsl(profile: str, diverged=()) -> list[Cell]:
    """The trained TAET cells with the most factors at AT-BSL's levels: the one with all three (it then differs from
    AT-BSL only in its loss, HEL against balanced-softmax CE), or, where that one diverged, those with two."""
    alive = [c for c in cells(profile) if c.levels is not None and c.label not in set(diverged)]
    if not alive:
        return []
    most = max(atbsl_like(c) for c in alive)
    return [c for c in alive if atbsl_like(c) == most]


def simple_effects(values: dict[str, dict[int, float]], profile: str, diverged=()) -> dict[str, Summary]:
    """The effects a partial grid can already give, each paired over the seeds its two cells share: the AT-BSL − TAET
    gap, each TAET cell that changes one factor from TAET's own setting minus that setting ("simple effect": the
    factor's effect there, interactions not separated), AT-BSL's two single changes minus AT-BSL, the loss effects
    (`loss_pairs`), and, once the 2 × 2 × 2 TAET grid has settled (`settled_main_effects`; `diverged`: labels of
    cells whose training diverged), the three main effects, which `reading` then reads instead of the simple effects.
    `values`: {cell label: {seed: value}}; effects with no shared seed are left out."""
    cs = cells(profile)
    base = cs[0]

    def diff(a: str, b: str) -> Summary | None:
        seeds = sorted(set(values.get(a, {})) & set(values.get(b, {})))
        return paired_difference([values[a][x] for x in seeds], [values[b][x] for x in seeds]) if seeds else None

    one_factor = {}  # factor index -> the cell that changes only that factor
    for c in cs[1:8]:
        changed = [i for i, (lv, bv) in enumerate(zip(c.levels, base.levels)) if lv != bv]
        if len(changed) == 1:
            one_factor[changed[0]] = c
    pairs = [("gap: AT-BSL − TAET", "AT-BSL", base.label)]
    pairs += [(f"simple effect: {FACTOR_TEXT[FACTORS[i][0]]}", one_factor[i].label, base.label)
              for i in sorted(one_factor)]  # in FACTORS' order: attack, HEL scale, stage 1
    pairs += [(f"{c.label} − AT-BSL", c.label, "AT-BSL") for c in cs if c.role == "single"]
    pairs += loss_pairs(cs) + [loss_left(cs)]
    out = {name: s for name, a, b in pairs if (s := diff(a, b)) is not None}
    out.update(settled_main_effects(values, profile, diverged))
    # the gap left once some factors sit at AT-BSL's levels: the run cells (two seeds or more shared with AT-BSL)
    # nearest AT-BSL, as `effects` does for the whole grid
    left = [(c, s) for c in cs[1:8] if (s := diff("AT-BSL", c.label)) is not None and s.n > 1]
    most = max((atbsl_like(c) for c, _ in left), default=0)
    out.update({f"{REMAINING} ({most} of 3 factors at AT-BSL's levels): AT-BSL − {c.label}": s
                for c, s in left if atbsl_like(c) == most})
    return out


def cell(s: Summary) -> str:
    """'m ± s [lo, hi]', or 'm (1 seed, no interval)'."""
    return s.format(1) if s.n > 1 else f"{s.mean:.1f} (1 seed, no interval)"


def effects_rows(by_metric: dict[str, dict[str, Summary]]) -> tuple[list[str], list[list[str]]]:
    """One row per effect, one column per metric (e.g. {"PGD-20": effects(...), "Clean": effects(...)})."""
    first = next(iter(by_metric.values()))
    header = ["effect (points)"] + [f"{m}: mean ± std [95% CI]" for m in by_metric] + ["n"]
    rows = [[k] + [cell(by_metric[m][k]) for m in by_metric] + [str(first[k].n)] for k in first]
    return header, rows


def _name(key: str) -> str:
    return key.split(": ", 1)[1]


def reading(pgd: dict[str, Summary], clean: dict[str, Summary] | None = None) -> str:
    """Which factor explains the gap on PGD-20: those whose effect's interval excludes 0 and points the way of the gap,
    largest first, with the share of the gap; the rest named as ties (interval includes 0) or as working against the
    gap. Main effects when the whole grid ran, else the simple effects (`simple_effects`) measured so far."""
    if "gap: AT-BSL − TAET" not in pgd:
        return "The gap cannot be measured: the AT-BSL run or TAET's own run diverged."
    gap = pgd["gap: AT-BSL − TAET"]
    full = any(k.startswith("main effect: ") for k in pgd)
    mains = {k: s for k, s in pgd.items() if k.startswith("main effect: " if full else "simple effect: ")}
    kind = "main effect" if full else "simple effect"
    n = gap.n
    head = (f"AT-BSL − TAET on balanced PGD-20: {gap.format(1)} points (n = {n}"
            f"{', 1 seed, no interval' if n < 2 else ''}).")
    if n < 2:
        return head + " With one seed no factor can be named: every effect is inconclusive."
    loss = {k: s for k, s in pgd.items() if k.startswith(LOSS)}
    left = next((s for k, s in pgd.items() if k.startswith(LOSS_LEFT)), None)
    loss_text = " " + _loss_reading(loss, gap, left) if loss else ""
    if not mains:
        return head + (" No factor is measured yet: no cell that changes one factor from TAET's own setting has"
                       " run.") + loss_text
    sign = 1 if gap.mean >= 0 else -1
    ns = (lambda s: "") if full else (lambda s: f", n = {s.n}")
    found = sorted(((s.mean, k) for k, s in mains.items()
                    if s.n > 1 and (s.low > 0 if sign > 0 else s.high < 0)), reverse=sign > 0)
    against = [k for k, s in mains.items() if s.n > 1 and (s.high < 0 if sign > 0 else s.low > 0)]
    ties = [k for k in mains if k not in against and k not in {k2 for _, k2 in found}]
    parts = []
    for mean, k in found:
        share = f", {100 * mean / gap.mean:.0f}% of the gap" if gap.mean != 0 else ""
        parts.append(f"{_name(k)} ({mean:+.1f} points{share}{ns(mains[k])})")
    if parts:
        text = head + f" Factors whose {kind} moves robustness the way of the gap, interval excluding 0: " + \
            "; ".join(parts) + "."
    else:
        text = head + f" Which factor explains it: **none conclusively** (no {kind} excludes 0 on the gap's side)."
    if against:
        text += " Working against the gap (interval excluding 0): " + "; ".join(
            f"{_name(k)} ({mains[k].mean:+.1f} points{ns(mains[k])})" for k in against) + "."
    if ties:
        text += " No conclusive effect (interval includes 0, or one seed): " + "; ".join(
            f"{_name(k)} ({mains[k].mean:+.1f} points{ns(mains[k])})" for k in ties) + "."
    if clean is not None and found:
        costs = [f"{_name(k)} {clean[k].format(1)}" for _, k in found if k in clean]
        text += " Their effect on balanced clean accuracy: " + "; ".join(costs) + "."
    left = {k: s for k, s in pgd.items() if k.startswith(REMAINING)}
    if left:
        text += " " + _remaining_reading(left, gap, full)
    text += loss_text
    if not full:
        text += (" These are simple effects (one factor changed from TAET's own setting), not main effects: the"
                 " 2 × 2 × 2 grid is not complete, so interactions are not separated.")
    return text


def _remaining_reading(left: dict[str, Summary], gap: Summary, full: bool = True) -> str:
    """What the gap is once the factors sit at AT-BSL's levels (`nearest_atbsl`, or in a partial grid the run cells
    nearest them, `full` False): each such cell's AT-BSL − cell difference, whether it still excludes 0, and what
    the cell still differs from AT-BSL in."""
    k = int(next(iter(left)).split("(", 1)[1][0])  # "remaining gap (k of 3 factors ...): AT-BSL − label"
    if k == 3:
        where = "with all three factors at AT-BSL's levels"
    elif full:
        where = f"nearest AT-BSL's levels that trained ({k} of 3 factors; the cell with all three diverged)"
    else:
        where = f"nearest AT-BSL's levels run so far ({k} of 3 factors)"
    parts, trailing = [], 0
    for key, s in left.items():
        lbl = key.split("AT-BSL − ", 1)[1]
        share = f", {100 * s.mean / gap.mean:.0f}% of the gap" if gap.mean and s.n > 1 else ""
        parts.append(f"{lbl}: {cell(s)}{share}")
        trailing += s.n > 1 and (s.low > 0 if gap.mean >= 0 else s.high < 0)
    text = f"AT-BSL − the TAET cell(s) {where}: " + "; ".join(parts) + "."
    if trailing == len(left):
        rest = "its loss (HEL against AT-BSL's balanced-softmax CE)" + (
            "" if k == 3 else " and the one factor left at TAET's level" if k == 2 else
            f" and the {3 - k} factors left at TAET's levels")
        verb = "trails" if gap.mean >= 0 else "leads"
        text += (f" {'It' if len(left) == 1 else 'Each'} still {verb} AT-BSL with an interval"
                 f" excluding 0: moving {'the three factors' if k == 3 else f'{k} of the 3 factors'} to AT-BSL's"
                 f" levels does not close the gap; what remains lies in what "
                 f"{'the cell' if len(left) == 1 else 'each cell'} still differs in, {rest}.")
    else:
        text += " Not every such difference excludes 0: the factors may close the gap there (a tie is not a proof)."
    return text


def _loss_reading(rows: dict[str, Summary], gap: Summary, left: Summary | None = None) -> str:
    """What swapping HEL for balanced-softmax CE does with TAET's attack and clean stage held (`loss_pairs`): each
    difference with its share of the gap, and whether its interval excludes 0 the way of the gap; then what the swap
    leaves of the gap (`loss_left`), read the same way."""
    parts, toward, against, rest = [], [], [], []
    labels = {_loss_from(h): f"HEL ×{h:g}" for h in FACTORS[1][1:]}
    for key, s in rows.items():
        hel = labels[key.split(": ", 1)[0]]
        share = f", {100 * s.mean / gap.mean:.0f}% of the gap" if gap.mean and s.n > 1 else ""
        parts.append(f"from {hel}: {cell(s)}{share}{f', n = {s.n}' if s.n != gap.n else ''}")
        if s.n > 1 and (s.low > 0 if gap.mean >= 0 else s.high < 0):
            toward.append(hel)
        elif s.n > 1 and (s.high < 0 if gap.mean >= 0 else s.low > 0):
            against.append(hel)
        else:
            rest.append(hel)
    text = ("The loss alone (AT-BSL trained with TAET's attack and clean stage, minus the TAET cell with that attack"
            " and stage; balanced PGD-20, points): " + "; ".join(parts) + ".")
    if toward:
        text += (f" Swapping {' and '.join(toward)} for balanced-softmax CE moves robustness the way of the gap,"
                 " interval excluding 0: with TAET's attack and clean stage held, the loss explains that share of it.")
    if against:
        text += f" Swapping {' and '.join(against)} works against the gap (interval excluding 0)."
    if rest and not toward and not against:
        text += " No interval excludes 0: the loss is not shown to explain the gap (a tie is not a proof)."
    elif rest:
        text += " The other comparison's interval includes 0."
    if left is not None:
        share = f", {100 * left.mean / gap.mean:.0f}% of the gap" if gap.mean and left.n > 1 else ""
        text += (" What the swap leaves, AT-BSL − the loss cell (AT-BSL's attack and no clean stage against TAET's,"
                 f" together): {cell(left)}{share}{f', n = {left.n}' if left.n != gap.n else ''}")
        if left.n > 1 and (left.low > 0 if gap.mean >= 0 else left.high < 0):
            text += ", interval excluding 0: the attack and clean stage together explain that share."
        elif left.n > 1 and (left.high < 0 if gap.mean >= 0 else left.low > 0):
            text += ", interval excluding 0 against the gap: with the loss swapped, they work against it."
        else:
            text += "; its interval includes 0: a tie (not a proof that they add nothing)."
    return text
