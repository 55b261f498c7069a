"""Lays out the `zima` package as mypy must see it, under build/typecheck/.

pyproject.toml maps the repository's top-level folders onto subpackages (`onboard/` is
`zima.onboard`). At run time setuptools' editable install resolves that mapping with an
import hook, which static checkers cannot follow, so this builds the same tree from
symbolic links: build/typecheck/zima/ holds links to everything in zima/ plus one link per
mapped subpackage. Links to folders keep new files visible without rerunning it.
"""

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(out: Path) -> Path:
    """Create (afresh) the link tree under ``out`` and return the ``zima`` folder in it."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-dir"]
    pkg = out / "zima"
    if out.exists():
        shutil.rmtree(out)
    pkg.mkdir(parents=True)
    for entry in (ROOT / mapping["zima"]).iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        if name != "zima":
            (pkg / name.removeprefix("zima.")).symlink_to(ROOT / folder)
    return pkg


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "typecheck")
