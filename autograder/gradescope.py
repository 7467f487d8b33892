"""Build the Gradescope autograder bundle: `make gradescope SYDNEY_DIR=...` -> dist/autograder.zip.

Gradescope unpacks the zip in /autograder/source, runs `setup.sh` once when it builds the image,
then `run_autograder` for every submission (files in /autograder/submission), which must write
/autograder/results/results.json. The bundle holds this grader as it is (rubric, checks, reference,
calibrated thresholds, provided files), a copy of Sydney-Captions (the dataset is not public, so
the image cannot fetch it), and the two scripts from gradescope/. The zip is a private build
product: it holds the solution. The per-test isolation is the same as `make grade`'s; Gradescope's
container adds one container per submission around it.
"""

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
