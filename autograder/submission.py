"""Load the Python files of a tree (the reference, the skeleton or a student's) as modules."""

import importlib.util
import sys
from pathlib import Path


def load_module(tree, filename):
    """Import `<tree>/<filename>` (e.g. `h2-q2.py`) under a fresh module name and return it.

    The tree's folder goes first on `sys.path` so that its own helpers (`import utils`) resolve.
    """
    path = Path(tree).resolve() / filename
    folder = str(path.parent)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    name = f"_tree_{abs(hash(str(path)))}_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
