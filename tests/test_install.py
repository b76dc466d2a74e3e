"""Installation routes README names (conda's environment.yml, pip's extras) install every module the pipeline
and the notebooks import; the Colab setup holds the repository URL once and stops on the placeholder."""

from __future__ import annotations

import ast
import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Not imported by name but needed to run the pipeline: papermill starts this kernel, nbconvert exports HTML.
RUNTIME_MODULES = {"ipykernel", "nbconvert", "papermill"}
OPTIONAL = {"submitit", "torchattacks", "tomli"}  # imported only under `except ImportError` with a message


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0])


def imported_modules() -> set[str]:
    """Top-level third-party modules imported anywhere in lib/ and in the notebooks' code cells."""
    sources = [p.read_text() for p in (ROOT / "lib").rglob("*.py")]
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        sources += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    mods = set()
    for src in sources:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m not in {"lib", "__future__"}} - OPTIONAL


def route_requirements(extras: set[str]) -> set[str]:
    """Distribution names `pip install -e ".[extras]"` asks for, from pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(proj["dependencies"])
    for e in extras:
        reqs += proj["optional-dependencies"][e]
    return {_req_name(r) for r in reqs}


def conda_extras() -> set[str]:
    """The extras environment.yml's pip section installs the kit with (`-e ".[a,b]"`)."""
    text = (ROOT / "environment.yml").read_text()
    m = re.search(r'-e\s+"?\.(?:\[([^\]]*)\])?"?', text)
    assert m, "environment.yml does not install the kit (`-e .`)"
    return {e.strip() for e in (m.group(1) or "").split(",") if e.strip()}


def pip_extras() -> set[str]:
    """The extras README's pip command installs."""
    m = re.search(r'pip install -e "\.\[([^\]]*)\]"', (ROOT / "README.md").read_text())
    assert m, "README names no `pip install -e \".[...]\"` command"
    return {e.strip() for e in m.group(1).split(",")}


def closure(dists: set[str]) -> set[str]:
    """`dists` and everything they require, as installed here (their markers evaluated for this Python)."""
    from packaging.requirements import Requirement

    seen, todo = set(), list(dists)
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        try:
            reqs = metadata.requires(d) or []
        except metadata.PackageNotFoundError:
            continue
        for r in reqs:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen


def missing(modules: set[str], extras: set[str]) -> list[str]:
    """Modules no distribution of the route (with what it pulls in) provides."""
    installed = closure(route_requirements(extras))
    providers = {m: {_norm(d) for d in ds} for m, ds in metadata.packages_distributions().items()}
    out = []
    for m in sorted(modules):
        if m not in providers:
            out.append(f"{m} (not installed here at all)")
        elif not providers[m] & installed:
            out.append(f"{m} (from {sorted(providers[m])})")
    return out


@pytest.mark.parametrize("route", ["conda environment.yml", "pip README"])
def test_each_route_installs_what_the_pipeline_and_notebooks_import(route):
    extras = conda_extras() if route.startswith("conda") else pip_extras()
    modules = imported_modules() | RUNTIME_MODULES
    assert {"torch", "papermill", "IPython", "matplotlib"} <= modules
    assert missing(modules, extras) == [], f"{route} installs the kit with extras {sorted(extras)}"


def test_the_check_catches_a_route_without_the_notebook_extras():
    # what environment.yml installed before: `.[dev]` alone cannot run `python -m lib pipeline`
    gaps = missing(imported_modules() | RUNTIME_MODULES, {"dev"})
    assert any(g.startswith("papermill") for g in gaps) and any(g.startswith("nbconvert") for g in gaps)


# Colab ------------------------------------------------------------------------------------------------
def test_every_copy_of_the_repository_url_is_lib_colab_s():
    from lib.orchestrate import colab

    found = colab.copies()
    notebooks = [f for f in found if f.endswith(".ipynb")]
    assert len(notebooks) >= 7
    for f, urls in found.items():
        assert urls, f"{f} names no repository"
        assert set(urls) == {colab.REPO_URL}, f"{f}: {sorted(set(urls))}; run `python -m lib.orchestrate.colab URL`"
    for f in notebooks:
        assert len(found[f]) == 2  # the setup cell's KIT_REPO and the badge


def test_set_repo_rewrites_every_copy(tmp_path):
    import shutil

    from lib.orchestrate import colab

    for sub in ("lib/orchestrate", "notebooks"):
        (tmp_path / sub).mkdir(parents=True)
    shutil.copy(ROOT / "lib" / "orchestrate" / "colab.py", tmp_path / "lib" / "orchestrate" / "colab.py")
    for nb in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    changed = colab.set_repo("https://github.com/someone/taet-kit.git", root=tmp_path)
    assert len(changed) >= 9
    found = colab.copies(tmp_path)
    assert {u for urls in found.values() for u in urls} == {"https://github.com/someone/taet-kit"}
    module = tmp_path / "lib" / "orchestrate" / "colab.py"
    assert 'REPO_URL = "https://github.com/someone/taet-kit"' in module.read_text()
    for nb in (tmp_path / "notebooks").glob("*.ipynb"):
        json.loads(nb.read_text())  # still valid JSON
    with pytest.raises(SystemExit, match="not a GitHub repository URL"):
        colab.set_repo("git@github.com:someone/taet-kit", root=tmp_path)


def _setup_cell(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    return next("".join(c["source"]) for c in cells if "KIT_REPO" in "".join(c["source"]))


def test_colab_setup_cell_stops_on_the_placeholder_in_one_line(monkeypatch, tmp_path):
    import types

    src = _setup_cell(ROOT / "notebooks" / "02_taet_training.ipynb")
    assert 'device = "cuda"' not in src  # device stays "auto" (a CPU runtime works)
    colab_part = src.split("\nfrom IPython")[0]  # the part before the kit's imports
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: calls.append(a))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        exec(compile(colab_part, "setup", "exec"), {"download": False})
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "set KIT_REPO" in msg
    assert calls == []  # no clone was tried


def test_colab_setup_cell_clones_once_and_downloads(monkeypatch, tmp_path):
    import types

    src = _setup_cell(ROOT / "notebooks" / "06_dermamnist.ipynb")
    colab_part = src.split("\nfrom IPython")[0].replace("github.com/OWNER/", "github.com/someone/")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    root = tmp_path / "content" / "taet-kit"
    colab_part = colab_part.replace("/content/taet-kit", str(root))
    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        if cmd[:2] == ["git", "clone"]:
            (root / "lib").mkdir(parents=True)
            (root / "lib" / "__init__.py").write_text("")

    monkeypatch.setattr("subprocess.run", fake_run)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # run twice: one clone, never taet-kit/taet-kit
        ns = {"download": False}
        exec(compile(colab_part, "setup", "exec"), ns)
        assert ns["download"] is True and Path.cwd() == root
    assert [c[:2] for c in calls].count(["git", "clone"]) == 1
    assert not (root / "taet-kit").exists()


def test_readme_promises_match_the_defaults():
    from lib.core.config import DataConfig

    text = (ROOT / "README.md").read_text()
    if DataConfig().dataset != "cifar10":
        assert "Defaults are the paper's setting (CIFAR" not in text
