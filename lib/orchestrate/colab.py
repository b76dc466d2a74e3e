"""The kit's repository URL, held here once, and the command that writes it into every place Colab needs it.

A notebook opened in Colab has nothing of the kit but itself, so its setup cell must name the repository to
clone, and its "Open in Colab" badge (and README's table) must name the repository to open. All of those are
copies of :data:`REPO_URL`; ``python -m lib.orchestrate.colab https://github.com/you/taet-kit`` sets it here and
rewrites
them, and tests/test_install.py fails when any copy differs from it. While it is the placeholder, the setup
cell stops on Colab with one line saying what to set.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO_URL = "https://github.com/OWNER/taet-kit"
PLACEHOLDER_OWNER = "OWNER"

ROOT = Path(__file__).resolve().parents[2]
_REPO_RE = r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+"
_SETUP_RE = re.compile(r'^(KIT_REPO = ")(' + _REPO_RE + r')(")', re.M)
_BADGE_RE = re.compile(r"(https://colab\.research\.google\.com/github/)([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)(/blob/)")


def _owner_name(url: str) -> str:
    return url.rstrip("/").removeprefix("https://github.com/")


def copies(root: Path = ROOT) -> dict[str, list[str]]:
    """Every repository URL a notebook's setup cell, a Colab badge or README holds: {file: [url, ...]}."""
    found: dict[str, list[str]] = {}
    files = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")) + [root / "README.md"]
    for f in files:
        text = f.read_text()
        if f.suffix == ".ipynb":
            text = "".join("".join(c.get("source", "")) + "\n" for c in json.loads(text)["cells"])
        urls = [m.group(2) for m in _SETUP_RE.finditer(text)]
        urls += ["https://github.com/" + m.group(2) for m in _BADGE_RE.finditer(text)]
        found[str(f.relative_to(root))] = urls
    return found


def set_repo(url: str, root: Path = ROOT) -> list[Path]:
    """Write `url` into this module and into every copy (notebook setup cells, badges, README); return the
    files changed."""
    url = url.rstrip("/").removesuffix(".git")
    if not re.fullmatch(_REPO_RE, url):
        raise SystemExit(f"error: {url!r} is not a GitHub repository URL like https://github.com/you/taet-kit")
    changed = []
    me = root / "lib" / "orchestrate" / "colab.py"
    files = [me] + sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")) + [root / "README.md"]
    for f in files:
        text = f.read_text()
        new = text.replace(f'REPO_URL = "{REPO_URL}"', f'REPO_URL = "{url}"') if f == me else text
        new = re.sub(r'(KIT_REPO = \\?")' + _REPO_RE + r'(\\?")', lambda m: m.group(1) + url + m.group(2), new)
        new = _BADGE_RE.sub(lambda m: m.group(1) + _owner_name(url) + m.group(3), new)
        if new != text:
            f.write_text(new)
            changed.append(f)
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m lib.orchestrate.colab https://github.com/<owner>/taet-kit")
    for f in set_repo(sys.argv[1]):
        print(f"updated {f.relative_to(ROOT)}")
