"""`make demo`: train TAET, AT-BSL and AT on long-tailed digits (no download), evaluate, print one table."""

from __future__ import annotations

import time
from pathlib import Path

from lib.core import runs
from lib.core.config import override
from lib.core.evaluate import evaluate_run
from lib.core.train import train_run, validate
from lib.profiles import profile_config
from lib.study.seeded import robustness_table, seeds_label, tail_table
from lib.study.tables import format_table


def run_demo(profile: str = "demo", methods=("taet", "atbsl", "at"), device: str = "auto", force: bool = False,
             out_dir: str = "outputs") -> str:
    t_all = time.perf_counter()
    cfgs = []
    for m in methods:  # validate every config before training any
        cfg = override(profile_config(profile, m), {"out_dir": str(Path(out_dir) / "runs"), "train.device": device})
        cfgs.append(validate(cfg))
    docs, walls = {}, {}
    for cfg in cfgs:
        t0 = time.perf_counter()
        res = train_run(cfg, force=force)
        doc = evaluate_run(res.run_dir, device=device)
        walls[cfg.method] = time.perf_counter() - t0
        docs[cfg.method] = (doc, res.run_dir)
    attacks = list(cfgs[0].eval.attacks)
    by_seed = {m: {cfg.train.seed: d} for cfg, (m, (d, _)) in zip(cfgs, docs.items())}  # one seed: K = 1
    header, rows = robustness_table(by_seed, attacks, digits=1)
    tail_header, tail_rows = tail_table(by_seed, attacks=("pgd20",))
    header += tail_header[1:] + ["wall s"]
    for r, t in zip(rows, tail_rows):
        r += t[1:] + [f"{walls[r[0]]:.0f}"]
    table = format_table(header, rows)
    proto = next(iter(docs.values()))[0]["protocol"]
    title = (f"{profile} profile: {proto['dataset']}-LT IR {proto['imbalance_ratio']:g}, train counts "
             f"{proto['train_counts']}, {proto['test_protocol']} test set of {proto['n_test']}; "
             f"balanced accuracy / robustness in %, {seeds_label(1)}")
    tables = Path(out_dir) / "tables"
    runs.atomic_write_text(tables / f"demo_{profile}.md", title + "\n\n" + table + "\n")
    runs.atomic_write_csv(tables / f"demo_{profile}.csv", [dict(zip(header, r)) for r in rows])
    print()
    print(title)
    print(table)
    print()
    for m, (_, rd) in docs.items():
        print(f"  {m}: {rd}")
    print(f"table: {tables / f'demo_{profile}.md'}; total wall time {time.perf_counter() - t_all:.0f} s")
    return table
