"""Build the Gradescope autograder bundle: `make gradescope SYDNEY_DIR=...` -> dist/autograder.zip.

Gradescope unpacks the zip in /autograder/source, runs `setup.sh` once when it builds the image,
then `run_autograder` for every submission (files in /autograder/submission), which must write
/autograder/results/results.json. The bundle holds this grader as it is (rubric, checks, reference,
calibrated thresholds, provided files), a copy of Sydney-Captions (the dataset is not public, so
the image cannot fetch it), and the two scripts from gradescope/. The zip is a private build
product: it holds the solution. The per-test isolation is the same as `make grade`'s; Gradescope's
container adds one container per submission around it.

`run_autograder` then rewrites results.json for Gradescope (`python -m autograder.gradescope results DIR`,
`for_gradescope`): the answers graded by hand (the proofs of 1.3, `manual = true` in the rubric) are
Gradescope's manual questions, not autograder tests, so they leave its list of tests (a test of 0/0 points
without a status would show as passed); the autograder's total there is then the autograded points.
"""

import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from autograder import ROOT

SCRIPTS = ("setup.sh", "run_autograder")
SOURCE_FOLDERS = ("autograder", "data", "solution", "assignment")
SOURCE_FILES = ("requirements.txt", "requirements-instructors.txt", "Makefile")
SKIP_PARTS = {"__pycache__", "cache"}


def _source_files():
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and not SKIP_PARTS & set(path.relative_to(ROOT).parts) and path.suffix != ".pyc":
                yield path, str(path.relative_to(ROOT))
    for name in SOURCE_FILES:
        yield ROOT / name, name


def _dataset_files(sydney_dir):
    sydney_dir = Path(sydney_dir) if sydney_dir else None
    if sydney_dir is None or not (sydney_dir / "dataset.json").is_file():
        raise FileNotFoundError(f"SYDNEY_DIR ({sydney_dir or 'not set'}) is not the Sydney-Captions folder: the bundle "
                                f"needs it (dataset.json + images/), e.g. `make gradescope SYDNEY_DIR=/path/to/it`")
    for path in sorted(sydney_dir.rglob("*")):
        if path.is_file():
            yield path, str(Path("sydney-captions") / path.relative_to(sydney_dir))


def build(zip_path, sydney_dir):
    """Write the bundle; returns the names it holds."""
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_suffix(".partial")
    names = []
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
        for script in SCRIPTS:
            info = zipfile.ZipInfo(script)
            info.external_attr = 0o755 << 16  # executable once unpacked
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, (ROOT / "gradescope" / script).read_bytes())
            names.append(script)
        for path, name in [*_source_files(), *_dataset_files(sydney_dir)]:
            # images are already compressed
            bundle.write(path, name, zipfile.ZIP_STORED if path.suffix in (".jpg", ".tif", ".png") else None)
            names.append(name)
    partial.replace(zip_path)
    return names


def for_gradescope(results):
    """results.json (parsed) as Gradescope is to show it: the tests graded by hand left out of `tests` (they are
    the assignment's manual questions there), named in extra_data's `graded_by_hand` instead."""
    by_hand = [t for t in results["tests"] if t.get("extra_data", {}).get("manual")]
    named = [{"id": t["extra_data"]["id"], "name": t["name"], "number": t["number"]} for t in by_hand]
    return dict(results, tests=[t for t in results["tests"] if t not in by_hand],
                extra_data=dict(results.get("extra_data", {}), graded_by_hand=named))


def rewrite_results(results_dir):
    """Rewrite `results_dir`/results.json for Gradescope (for_gradescope), atomically."""
    path = Path(results_dir) / "results.json"
    text = json.dumps(for_gradescope(json.loads(path.read_text(encoding="utf-8"))), indent=2) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".results.json.", delete=False,
                                     encoding="utf-8") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "results":
        sys.exit("usage: python -m autograder.gradescope results <folder of results.json>")
    rewrite_results(sys.argv[2])
