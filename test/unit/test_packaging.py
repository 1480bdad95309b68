"""setup.py installs every Python package of src/ (an install space misses what it does not list)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_setup_lists_every_package():
    tree = ast.parse((ROOT / "setup.py").read_text())
    listed = next(node for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "packages")
    packages = {element.value for element in listed.value.elts}
    found = {".".join(init.parent.relative_to(ROOT / "src").parts) for init in (ROOT / "src").rglob("__init__.py")}
    assert packages == found
