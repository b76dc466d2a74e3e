"""Run the numbered notebooks with papermill, export HTML with nbconvert, and write outputs/index.html.

`python -m lib pipeline --profile smoke|demo|fashion|paper [--only 02,05]`. Notebooks run in order; a
failing notebook stops the batch with an error naming the notebook and the cell. Executed copies go to
outputs/notebooks/ (written through a temporary file, so an interrupted batch never leaves a half copy);
a notebook whose executed copy already exists for the same profile and source is skipped unless `force`.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
from pathlib import Path
from typing import Any

from lib.core import runs
from lib.core.config import ConfigError
from lib.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"


class PipelineError(RuntimeError):
    """A notebook failed; the message names it and the cell."""


def notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def select(only: str | list[str] | None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    nbs = notebooks(folder)
    if not only:
        return nbs
    keys = [k.strip() for k in (only.split(",") if isinstance(only, str) else only) if k.strip()]
    chosen = []
    for k in keys:
        match = [p for p in nbs if p.name.startswith(k.zfill(2) + "_") or p.stem == k]
        if not match:
            raise ConfigError(f"--only {k!r} matches no notebook; valid: {[p.name[:2] for p in nbs]}")
        chosen += match
    return [p for p in nbs if p in chosen]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _finished(out: Path, src: Path, params: dict[str, Any]) -> bool:
    """An executed copy exists, ran to the end without error, for this source and these parameters."""
    if not out.exists():
        return False
    try:
        nb = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    meta = nb.get("metadata", {}).get("taet_kit", {})
    if meta.get("source_digest") != _digest(src) or meta.get("parameters") != params:
        return False
    return not any(o.get("output_type") == "error" for c in nb.get("cells", []) for o in c.get("outputs", []))


_ADDED_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _failing_cell(nb_path: Path) -> tuple[int | None, str]:
    """(1-based index, in the source notebook, of the first cell with an error output; its first line).
    Cells papermill added (injected parameters, error banners) are not counted."""
    try:
        nb = json.loads(nb_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, ""
    cells = [c for c in nb.get("cells", []) if not _ADDED_TAGS & set(c.get("metadata", {}).get("tags", []))]
    for i, c in enumerate(cells, 1):
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            src = "".join(c.get("source", "")).strip().splitlines()
            return i, (src[0] if src else "")
    return None, ""


def run_notebook(src: Path, out_dir: Path, params: dict[str, Any], *, kernel: str = "python3",
                 timeout: int | None = None, html_export: bool = True) -> Path:
    import papermill as pm

    nb_out = out_dir / "notebooks"
    nb_out.mkdir(parents=True, exist_ok=True)
    final = nb_out / src.name
    tmp = nb_out / f".{src.stem}.running.ipynb"
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name=kernel, cwd=str(ROOT),
                            progress_bar=False, execution_timeout=timeout)
    except pm.PapermillExecutionError as e:
        cell, line = _failing_cell(tmp)
        where = f"cell {cell}" if cell else f"cell with execution count {e.exec_count}"
        raise PipelineError(
            f"notebook {src.name} failed in {where} ({line!r}): {e.ename}: {e.evalue}. "
            f"The partial copy is {tmp}"
        ) from None
    nb = json.loads(tmp.read_text())
    nb.setdefault("metadata", {})["taet_kit"] = {"source_digest": _digest(src), "parameters": params}
    runs.atomic_write_text(final, json.dumps(nb, indent=1) + "\n")
    tmp.unlink(missing_ok=True)
    if html_export:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_filename(str(final))
        runs.atomic_write_text(final.with_suffix(".html"), body)
    return final


def run_pipeline(profile: str = "demo", only=None, *, device: str = "auto", out_dir: str | None = None,
                 force: bool = False, kernel: str = "python3", html_export: bool = True,
                 folder: Path = NOTEBOOK_DIR, tiny: bool = False, data_dir: str = "data",
                 download: bool = False, allow_slow: bool = False) -> list[dict[str, Any]]:
    """Run the chosen notebooks in order. `tiny`: the profile with only its sizes shrunk (lib.orchestrate.tiny), into
    outputs/tiny/<profile>/ by default; `data_dir` and `download` reach every notebook as parameters."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {sorted(PROFILES)}")
    chosen = select(only, folder)
    from lib.orchestrate.preflight import check_pipeline

    check_pipeline(profile, tiny=tiny, data_dir=data_dir, download=download, device=device,
                   allow_slow=allow_slow)  # before any work
    if out_dir is None:
        out_dir = str(Path("outputs") / "tiny" / profile) if tiny else "outputs"
    out = Path(out_dir).resolve()
    params = {"profile": profile, "device": device, "out_dir": str(out)}
    if tiny:
        from lib.orchestrate.tiny import TINY_MARKER

        out.mkdir(parents=True, exist_ok=True)
        runs.atomic_write_text(out / TINY_MARKER, TINY_BANNER + "\n")
    if tiny or data_dir != "data" or download:  # today's parameters (and resume records) otherwise
        params.update(tiny=tiny, data_dir=str(Path(data_dir).resolve()), download=download)
    report = []
    for src in chosen:
        final = out / "notebooks" / src.name
        if not force and _finished(final, src, params):
            print(f"[pipeline] {src.name}: finished earlier for this profile, skipped")
            report.append({"notebook": src.name, "seconds": 0.0, "skipped": True})
            continue
        t0 = time.perf_counter()
        print(f"[pipeline] {src.name} ({profile}{', tiny' if tiny else ''}) ...", flush=True)
        run_notebook(src, out, params, kernel=kernel, html_export=html_export)
        dt = time.perf_counter() - t0
        print(f"[pipeline] {src.name} done in {dt:.0f} s", flush=True)
        report.append({"notebook": src.name, "seconds": round(dt, 1), "skipped": False})
    write_index(out, tiny=tiny)
    runs.atomic_write_json(out / "notebooks" / f"pipeline_{profile}{'-tiny' if tiny else ''}.json", report)
    print(f"[pipeline] index: {out / 'index.html'}")
    return report


def _markdown_renderer():
    """Markdown (title + GFM table) -> HTML with mistune, the renderer nbconvert itself uses; raw HTML escaped."""
    import mistune

    return mistune.create_markdown(escape=True, plugins=["table"])


TINY_BANNER = ("TINY RUN: the profile's code paths at tiny sizes (a few images and epochs, synthetic data where "
               "the real set is absent). These numbers check that everything runs; they are not results.")


def write_index(out: Path, tiny: bool = False) -> Path:
    """outputs/index.html linking every executed notebook, table (rendered as HTML; the claims table first) and
    figure (a tiny run says so at the top)."""
    out = Path(out)

    def rel(p: Path) -> str:
        return html.escape(os.path.relpath(p, out))

    parts = ["<!doctype html><meta charset='utf-8'><title>TAET kit outputs</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "pre{background:#f6f6f6;padding:8px;overflow:auto}table{border-collapse:collapse;margin:8px 0}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f0f0f0}</style>",
             "<h1>TAET kit outputs" + (" (tiny)" if tiny else "") + "</h1>"]
    if tiny:
        parts[0] = parts[0].replace("<title>TAET kit outputs", "<title>TAET kit outputs (tiny)")
        parts.append(f"<p style='background:#fdd;padding:8px'><b>{html.escape(TINY_BANNER)}</b></p>")
    parts.append("<h2>Notebooks</h2><ul>")
    for nb in sorted((out / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        h = nb.with_suffix(".html")
        link = f"<a href='{rel(h)}'>{html.escape(nb.stem)}</a>" if h.exists() else html.escape(nb.stem)
        parts.append(f"<li>{link} (<a href='{rel(nb)}'>ipynb</a>)</li>")
    parts.append("</ul><h2>Tables</h2>")
    render = _markdown_renderer()
    for md in sorted((out / "tables").glob("*.md"), key=lambda p: (not p.stem.startswith("claims"), p.stem)):
        csv = md.with_suffix(".csv")
        parts.append(f"<h3>{html.escape(md.stem)} (<a href='{rel(csv)}'>csv</a>)</h3>\n{render(md.read_text())}")
    parts.append("<h2>Figures</h2>")
    for png in sorted((out / "figures").glob("*.png")):
        pdf = png.with_suffix(".pdf")
        parts.append(f"<h3>{html.escape(png.stem)} (<a href='{rel(pdf)}'>pdf</a>)</h3><img src='{rel(png)}'>")
    path = out / "index.html"
    runs.atomic_write_text(path, "\n".join(parts) + "\n")
    return path
