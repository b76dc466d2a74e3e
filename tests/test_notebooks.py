"""Notebooks: stored clean, parameterized, and executed end to end by the real pipeline (papermill + kernel)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from lib.orchestrate.pipeline import NOTEBOOK_DIR, PipelineError, notebooks, run_pipeline

EXPECTED = ["01_atbsl_analysis", "02_taet_training", "03_ir_sweep", "04_ablations", "05_tsne", "06_dermamnist",
            "07_efficiency", "08_claims_check"]


def test_the_numbered_notebooks_exist():
    assert [p.stem for p in notebooks()] == EXPECTED


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs_and_has_parameters(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} is stored with outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} is stored with execution counts"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "profile" in tagged[0].source


def _code(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_notebooks_reach_the_kit_through_the_facade_and_its_all_is_what_they_call():
    """Each notebook imports `lib.study.notebook` as `kit` and calls `kit.<name>`; the facade's `__all__` is exactly
    those names: the notebooks import nothing else of the kit."""
    import ast
    import re

    import lib.study.notebook as kit

    used = set()
    for p in notebooks():
        src = _code(p)
        kit_imports = set()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                kit_imports |= {a.name for a in node.names if a.name.split(".")[0] == "lib"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lib":
                kit_imports |= {f"{node.module}.{a.name} as {a.asname}" if a.asname else f"{node.module}.{a.name}"
                                for a in node.names}
        assert kit_imports == {"lib.study.notebook as kit"}, p.name
        assert "nb = kit.setup(profile, tiny=tiny, device=device, out_dir=out_dir, data_dir=data_dir, " \
               "download=download)" in src, p.name
        used |= set(re.findall(r"\bkit\.(\w+)", src))
    assert sorted(kit.__all__) == sorted(used)
    assert all(callable(getattr(kit, name)) for name in kit.__all__)


def test_setup_names_the_profile_its_settings_and_prints_one_line(capsys):
    from lib.profiles import notebook_settings
    from lib.study import notebook as kit

    nb = kit.setup("smoke", device="cpu", out_dir="elsewhere")
    assert (nb.profile, nb.device, nb.out_dir, nb.data_dir, nb.download, nb.tiny) == (
        "smoke", "cpu", "elsewhere", "data", False, False)
    assert nb.settings == notebook_settings("smoke")
    assert capsys.readouterr().out == "profile 'smoke', device 'cpu', outputs in 'elsewhere'\n"


def test_setup_of_a_tiny_profile_runs_its_tiny_copy(monkeypatch, tmp_path, capsys):
    import tempfile

    from lib import profiles
    from lib.study import notebook as kit

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # synthetic data, if any, under tmp_path
    saved = dict(profiles.PROFILES)
    try:
        nb = kit.setup("smoke", tiny=True)
        assert nb.profile == "smoke-tiny" and nb.tiny and nb.settings == profiles.notebook_settings("smoke-tiny")
        last = capsys.readouterr().out.splitlines()[-1]  # after any "[tiny] ... synthetic stand-in" line
        assert last == "profile 'smoke-tiny', device 'auto', outputs in 'outputs'"
    finally:
        profiles.PROFILES.clear()
        profiles.PROFILES.update(saved)


def _make_nb(folder: Path, name: str, sources: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell('profile = "smoke"\ndevice = "cpu"\nout_dir = "outputs"')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_failing_cell_stops_the_batch_naming_notebook_and_cell(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    _make_nb(src, "01_fine", ["x = 1"])
    _make_nb(src, "02_broken", ["y = 2", "raise ValueError('boom in the third cell')"])  # cells: parameters, y, raise
    _make_nb(src, "03_never", ["z = 3"])
    out = tmp_path / "out"
    with pytest.raises(PipelineError) as err:
        run_pipeline("smoke", folder=src, out_dir=str(out), html_export=False)
    msg = str(err.value)
    assert "02_broken.ipynb" in msg and "cell 3" in msg and "boom in the third cell" in msg
    assert (out / "notebooks" / "01_fine.ipynb").exists()
    assert not (out / "notebooks" / "02_broken.ipynb").exists()  # no finished copy of a failed notebook
    assert not (out / "notebooks" / "03_never.ipynb").exists()
    # a rerun resumes: the finished notebook is skipped, the broken one runs (and fails) again
    with pytest.raises(PipelineError):
        report = run_pipeline("smoke", folder=src, out_dir=str(out), html_export=False)
    (src / "02_broken.ipynb").unlink()
    report = run_pipeline("smoke", folder=src, out_dir=str(out), html_export=False)
    assert [(r["notebook"], r["skipped"]) for r in report] == [("01_fine.ipynb", True), ("03_never.ipynb", False)]


def test_a_killed_batch_resumes_at_the_first_notebook_without_a_finished_copy(tmp_path):
    """SIGKILL the pipeline (and its kernel) in the middle of the second notebook: the first one's finished copy
    is kept and skipped on the rerun; the second, which left no finished copy, runs again, then the third."""
    src, out, marker = tmp_path / "nbs", tmp_path / "out", tmp_path / "02_started"
    src.mkdir()
    _make_nb(src, "01_first", ["x = 1"])
    _make_nb(src, "02_slow", [f"import pathlib, time\nm = pathlib.Path({str(marker)!r})\n"
                              "if not m.exists():\n    m.write_text('started')\n    time.sleep(120)"])
    _make_nb(src, "03_last", ["z = 3"])
    code = ("from pathlib import Path\nfrom lib.orchestrate.pipeline import run_pipeline\n"
            f"run_pipeline('smoke', folder=Path({str(src)!r}), out_dir={str(out)!r}, html_export=False)")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the pipeline never reached the second notebook"
        os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and its kernel, mid-notebook
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done = out / "notebooks"
    assert (done / "01_first.ipynb").exists() and not (done / "02_slow.ipynb").exists()
    assert not (done / "03_last.ipynb").exists()
    first_mtime = (done / "01_first.ipynb").stat().st_mtime_ns
    report = run_pipeline("smoke", folder=src, out_dir=str(out), html_export=False)
    assert [(r["notebook"], r["skipped"]) for r in report] == [
        ("01_first.ipynb", True), ("02_slow.ipynb", False), ("03_last.ipynb", False)]
    assert (done / "01_first.ipynb").stat().st_mtime_ns == first_mtime
    assert json.loads((done / "02_slow.ipynb").read_text())["metadata"]["taet_kit"]["parameters"]["profile"] == "smoke"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_all_notebooks_run_in_the_smoke_profile(tmp_path):
    from lib.profiles import table_methods

    out = tmp_path / "outputs"
    report = run_pipeline("smoke", out_dir=str(out), device="cpu")
    assert [r["notebook"] for r in report] == [f"{n}.ipynb" for n in EXPECTED]
    for n in EXPECTED:
        assert (out / "notebooks" / f"{n}.ipynb").stat().st_size > 0
        assert (out / "notebooks" / f"{n}.html").stat().st_size > 0
    figures = ["fig1_fig2_atbsl_per_class", "table5_ir_sweep", "fig6b_components", "fig7_ce_epochs", "fig3_tsne",
               "fig5_dermamnist_per_class", "fig6a_efficiency"]
    for f in figures:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{f}.{ext}").stat().st_size > 1000, f
    # smoke exercises the fashion profile's reduced scale: the claims' methods at the profile's size over its two
    # seeds, every method at 150 train images and one seed in a table of its own (and Table 4's grid, 05's t-SNE)
    methods = table_methods(include_reference=True)
    main = ["ce", "at", "atbsl", "taet"]
    t1 = _rows(out / "tables" / "table1_balanced.csv")
    assert [r["method"] for r in t1] == main
    assert list(t1[0]) == ["method", "Clean", "FGSM", "PGD-20", "CW-L2"]
    assert all(0 <= float(r["PGD-20"].split(" ± ")[0]) <= 100 and " ± " in r["PGD-20"] for r in t1)  # 2 seeds
    assert "mean ± std [95% t-interval], n = 2 seeds" in (out / "tables" / "table1_balanced.md").read_text()
    small = _rows(out / "tables" / "table1_all_methods_reduced.csv")
    assert [r["method"] for r in small] == methods and list(small[0]) == list(t1[0])
    assert all(" ± " not in r["PGD-20"] for r in small)  # one seed: single values
    small_md = (out / "tables" / "table1_all_methods_reduced.md").read_text()
    assert "1 seed, no interval" in small_md and "150 train images" in small_md
    t2 = _rows(out / "tables" / "table2_tail_classes.csv")
    assert len(t2) == len(main) and len(t2[0]) == 1 + 2 * 3
    wall = _rows(out / "tables" / "table1_wall_time.csv")
    assert [r["method"] for r in wall] == main and all(float(r["train s"].split()[0]) > 0 for r in wall)
    t5 = _rows(out / "tables" / "table5_ir_sweep.csv")
    assert [r["method"] for r in t5] == ["atbsl @ IR 10", "atbsl @ IR 50", "taet @ IR 10", "taet @ IR 50"]
    assert len(_rows(out / "tables" / "table4_hel_weights.csv")) == 2
    assert "150 train images" in (out / "tables" / "table4_hel_weights.md").read_text()
    assert "150 train images" not in (out / "tables" / "fig6b_components.md").read_text()  # only Table 4 reduced
    assert "150 train images" not in (out / "tables" / "fig7_ce_epochs.md").read_text()  # Fig. 6b, 7 at full size
    assert [r["method"] for r in _rows(out / "tables" / "fig6b_components.csv")] == [
        "BCL", "BCL+HDL", "BCL+RCEL", "HEL (all)", "HEL, no stage 1"]
    assert len(_rows(out / "tables" / "fig7_ce_epochs.csv")) == 2
    assert len(_rows(out / "tables" / "table3_dermamnist.csv")) == 3
    assert [r["method"] for r in _rows(out / "tables" / "fig6a_efficiency.csv")] == table_methods()
    for n in EXPECTED[:6]:  # their runs went through lib.orchestrate.sweep, every seed (its log is in the outputs)
        assert "grid point(s)" in (out / "notebooks" / f"{n}.ipynb").read_text(), n
    claims = _rows(out / "tables" / "claims.csv")  # 08 over the smoke profile's two seeds: every row has its interval
    assert len(claims) >= 10 and all(r["n"] == "2" and "95% CI" in r["measured"] for r in claims)
    assert {r["verdict"] for r in claims} <= {"supported", "contradicted", "inconclusive"}
    assert _rows(out / "tables" / "factorial.csv")[0]["effect (points)"] == "gap: AT-BSL − TAET"
    dyn = _rows(out / "tables" / "atbsl_per_class_dynamics.csv")
    assert len(dyn) == 10
    index = (out / "index.html").read_text()
    assert all(f"{f}.png" in index for f in figures) and "table1_balanced" in index and "<table>" in index
    # notebooks share runs: 02's AT-BSL run is the one 01 trained (one folder per config and seed; 08's factorial
    # adds AT-BSL variants of its own, each in its own folder)
    from lib.core import runs
    from lib.core.config import override
    from lib.core.train import validate
    from lib.profiles import run_config

    atbsl_runs = [p for p in (out / "runs").iterdir() if p.name.startswith("atbsl-digits-ir10-")]
    hashes = [json.loads((p / "config.json").read_text())["hash"] for p in atbsl_runs]
    assert len(hashes) == len(set(hashes))
    default = {runs.config_hash(validate(override(run_config("smoke", "atbsl"), {"train.seed": s}))) for s in (0, 1)}
    assert default <= set(hashes)
    meta = json.loads((out / "notebooks" / "02_taet_training.ipynb").read_text())["metadata"]["taet_kit"]
    assert meta["parameters"]["profile"] == "smoke"


def test_index_renders_tables_as_html_with_the_claims_table_first(tmp_path):
    from lib.orchestrate.pipeline import write_index

    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "table1_balanced.md").write_text(
        "**Table 1 (2 seeds)**\n\n| method | PGD-20 |\n|---|---|\n| taet | 50.0 ± 1.0 |\n")
    (tables / "claims.md").write_text("**Claims**\n\n| claim | verdict |\n|---|---|\n| a <b> | supported |\n")
    index = write_index(tmp_path).read_text()
    assert "<pre>" not in index and index.count("<table>") == 2
    assert "<td>50.0 ± 1.0</td>" in index and "a &lt;b&gt;" in index  # rendered, with raw HTML escaped
    assert index.index("Claims") < index.index("Table 1 (2 seeds)")
