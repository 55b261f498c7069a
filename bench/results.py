"""Every benchmark's headline figures in one table: the benches record rows, `make bench` prints.

    from bench.results import record          (in a bench script; see below)
    record("sim arena", "physics real-time factor", "412x", goal=">= 100x", ok=True)

    .venv/bin/python bench/results.py           print the recorded rows as one table
    .venv/bin/python bench/results.py --reset   empty the results file (`make bench` starts so)

Each bench keeps printing its own detailed tables; :func:`record` also appends its
headline figures, one JSON object per line, to ``build/bench/results.jsonl``::

    {"part": "...", "metric": "...", "value": "...", "goal": "...", "ok": true | false | null}

``value`` and ``goal`` are display text (units included), ``ok`` is whether the goal was
met (null: no goal). The C++ decoder bench writes the same lines itself
(``bench_decoder --results FILE``). A bench run on its own appends too; `make bench`
empties the file first (its ``bench-start`` step), so its table shows that run only.

The scripts run as files (``python bench/x.py``), so ``bench/`` and not the repository
is on ``sys.path``; each puts the repository root first to import ``bench.results`` by
the name mypy knows it by.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "build" / "bench" / "results.jsonl"
COLUMNS: Final = ("part", "metric", "figure", "goal", "pass")


def record(part: str, metric: str, value: str, goal: str = "", ok: bool | None = None, *,
           path: Path = RESULTS) -> None:
    """Append one row (``part`` e.g. "protocol", ``value`` as shown, units included)."""
    if not part or not metric:
        raise ValueError(f"a result needs a part and a metric, got {part!r}, {metric!r}")
    if ok is not None and not goal:
        raise ValueError(f"{part}: {metric}: a pass/fail mark needs the goal it refers to")
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"part": part, "metric": metric, "value": value, "goal": goal, "ok": ok}
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def load(path: Path = RESULTS) -> list[tuple[str, str, str, str, str]]:
    """The recorded rows as table cells, in the order they were recorded."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = row.get("ok")
            mark = "" if ok is None else ("pass" if ok else "FAIL")
            rows.append((str(row["part"]), str(row["metric"]), str(row["value"]),
                         str(row.get("goal", "")), mark))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a result row ({exc}): {line!r}") from exc
    return rows


def table(rows: list[tuple[str, str, str, str, str]]) -> str:
    """``rows`` under the COLUMNS header, columns padded to their widest cell."""
    cells = [COLUMNS, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for index, row in enumerate(cells):
        padded = [cell.rjust(w) if i == 2 else cell.ljust(w)  # figures right-aligned
                  for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(padded).rstrip())
        if index == 0:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reset", action="store_true", help="empty the results file")
    parser.add_argument("--file", type=Path, default=RESULTS, help="results file (JSON lines)")
    args = parser.parse_args()
    if args.reset:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text("", encoding="utf-8")
        return
    rows = load(args.file)
    if not rows:
        print(f"no benchmark results in {args.file}")
        return
    failed = sum(row[4] == "FAIL" for row in rows)
    print(f"\nall benchmarks ({len(rows)} figures, {failed} below their goal)")
    print(table(rows))


if __name__ == "__main__":
    main()
