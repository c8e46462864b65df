"""Behaviour preserved: the sha256 of what fixed commands write, to compare two versions.

A refactor must leave every artifact byte-identical. This runs a fixed list of commands
through the installed ``dream-cl`` (the user's entry point, so the check survives any
internal reshuffle), hashes ``images.pt``, ``checkpoint.pt``, ``model.pt`` and the
evaluation JSON's accuracies, and writes ``results/artifact-hashes-LABEL.json``.
``--compare A B`` prints the two labels' table and exits 1 when a hash differs.

    python benchmarks/artifact_hashes.py --label before --data-root DATA
    python benchmarks/artifact_hashes.py --label after --data-root DATA
    python benchmarks/artifact_hashes.py --compare before after

Cases whose folder already holds its artifacts are not run again (``--work-dir``), so an
interrupted check resumes; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, load_json, source_line, write_result  # noqa: E402

DIGITS_DISTILL = ["distill", "digits", "--preset", "cpu", "--ipc", "2", "--iterations", "4"]
CASES: dict[str, list[str]] = {
    **{
        f"distill-digits-{fw}": [*DIGITS_DISTILL, "--framework", fw]
        for fw in ("idc", "dc", "dsa", "dm")
    },
    "distill-mnist-dream": [
        *["distill", "mnist", "--preset", "cpu", "--ipc", "1", "--iterations", "4"]
    ],
    "distill-digits-k2": [*DIGITS_DISTILL, "--nproc", "2"],
    "coreset-digits-herding": ["coreset", "digits", "--method", "herding", "--ipc", "2"],
    "run-digits-5step": ["run", "digits-5step", "--epochs", "2", "--distill-iterations", "2"],
}
EVALUATE = ["--repeats", "2", "--epochs", "40"]
"""Evaluated after it is made (the JSON's accuracies are part of what must not change)."""
EVALUATED = ("distill-digits-idc", "distill-digits-dm", "coreset-digits-herding")
ARTIFACTS = ("images.pt", "checkpoint.pt", "model.pt")


def _dream_cl(args: list[str], data_root: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dream_cl.cli", *args, "--data-root", str(data_root)]
    if args[0] in ("distill", "run", "evaluate"):
        cmd.append("--quiet")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every artifact under ``folder`` and of each evaluation's accuracies."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.name in ARTIFACTS:
            found[rel] = _sha(path)
        elif path.name.startswith("eval_") and path.suffix == ".json":
            accs = json.loads(path.read_text())["accuracies"]
            found[rel + ":accuracies"] = hashlib.sha256(json.dumps(accs).encode()).hexdigest()
    return found


def run_case(name: str, work: Path, data_root: Path) -> dict[str, str]:
    """Run one case (once: a folder marked done is kept) and evaluate it (again whenever
    the evaluation settings changed)."""
    out, done = work / name, work / name / "done"
    if not done.is_file():
        shutil.rmtree(out, ignore_errors=True)
        _dream_cl([*CASES[name], "--out", str(out)], data_root)
        done.write_text("")
    if name in EVALUATED and done.read_text() != json.dumps(EVALUATE):
        _dream_cl(["evaluate", str(out), *EVALUATE], data_root)
        done.write_text(json.dumps(EVALUATE))
    return hashes(out)


def compare(a: str, b: str) -> int:
    rows = {}
    for label in (a, b):
        record = json.loads((RESULTS_DIR / f"artifact-hashes-{label}.json").read_text())
        for case, files in record["results"].items():
            for rel, digest in files.items():
                rows.setdefault(f"{case}/{rel}", {})[label] = digest
    print(f"| artifact | {a} | {b} | same |\n|---|---|---|---|")
    differ = 0
    for key, by in sorted(rows.items()):
        same = by.get(a) == by.get(b)
        differ += not same
        row = [key, by.get(a, "-")[:12], by.get(b, "-")[:12], "yes" if same else "NO"]
        print("| " + " | ".join(row) + " |")
    print(f"{len(rows) - differ} of {len(rows)} identical")
    return 1 if differ else 0


# -- RESULTS.md section ------------------------------------------------------------------------
METHOD = (
    "Each case runs through the installed `dream-cl` command (so the check does not depend on "
    "the code's inner layout), once with the code before a change and once after, on one "
    "machine; the table compares the sha256 of every `images.pt`, `checkpoint.pt` and "
    "`model.pt` it wrote and of each evaluation's accuracies (`eval_*.json`, {evaluate})."
)


def _rows(before: dict, after: dict) -> list[str]:
    rows = ["| case | artifacts | identical |", "|---|---|---|"]
    for case, files in before["results"].items():
        now = after["results"].get(case, {})
        same = sum(now.get(rel) == digest for rel, digest in files.items())
        rows.append(f"| `{' '.join(before['settings']['cases'][case])}` | {len(files)} | {same} |")
    return rows


def section(results: Path) -> str:
    """RESULTS.md's section: the last before/after comparison (``artifact-hashes-before``
    and ``-after``), one row per case."""
    paths = [results / f"artifact-hashes-{label}.json" for label in ("before", "after")]
    if not all(p.is_file() for p in paths):
        return ""
    before, after = (load_json(p) for p in paths)
    evaluate = "`dream-cl evaluate " + " ".join(before["settings"]["evaluate"]) + "`"
    lines = ["## Behaviour preserved: artifacts before and after a change", ""]
    lines += [METHOD.format(evaluate=evaluate), ""]
    lines += [source_line(before, paths[0], results).replace("Source:", "Before:", 1)]
    lines += [source_line(after, paths[1], results).replace("Source:", "After:", 1), ""]
    return "\n".join([*lines, *_rows(before, after), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="now")
    data = Path(os.environ.get("DREAM_CL_DATA", "data"))
    parser.add_argument("--data-root", type=Path, default=data)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/artifact-hashes"))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        raise SystemExit(compare(*args.compare))
    work = args.work_dir / args.label
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    results = {}
    for name in args.cases.split(","):
        results[name] = run_case(name, work, args.data_root)
        print(f"{name}: {len(results[name])} artifact(s)", flush=True)
    settings = {"cases": {n: CASES[n] for n in results}, "evaluate": EVALUATE}
    path = write_result(f"artifact-hashes-{args.label}", torch.device("cpu"), settings, results)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
