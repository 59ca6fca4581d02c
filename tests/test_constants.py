"""The task notebooks stand alone, so they copy a few constants of hw2/data.py; the copies must agree."""
import ast
import re
from pathlib import Path

from hw2 import data

ROOT = Path(__file__).resolve().parents[1]


def assigned(task: str) -> dict:
    """Every module-level NAME = <literal> in the code of a task source."""
    tree = ast.parse((ROOT / "experiments" / f"{task}.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def test_magic_constants_match_the_package():
    t2 = assigned("task2_magic_mlp")
    assert t2["MAGIC_URL"] == data.MAGIC_URL
    assert t2["MAGIC_SHA256"] == data.MAGIC_SHA256


def test_imagenette_constants_match_the_package():
    t3 = assigned("task3_imagenette_cnn")
    assert t3["WNIDS"] == data.IMAGENETTE_WNIDS
    assert t3["COUNTS"] == data.IMAGENETTE_COUNTS
    source = (ROOT / "experiments" / "task3_imagenette_cnn.py").read_text()
    suffixes = {ast.literal_eval(m) for m in re.findall(r"\.lower\(\)\.endswith\((\([^)]*\)|\"[^\"]*\")\)", source)}
    assert suffixes == {data.IMAGE_SUFFIXES}, suffixes
