"""No code outside a modality's or family's own package compares a value with that modality's or family's name,
and only mmtok.contract compares with an id layout's name: everything else asks the Modality, the Family or the
TokenSpec. (Comparisons: ==, !=, in, not in with a string constant on either side.)"""
from __future__ import annotations

import ast
from pathlib import Path

from mmtok import families, modalities
from mmtok.contract import LAYOUTS

ROOT = Path(__file__).resolve().parents[1]
# (file, name): why the name is that code's own
ALLOWED = {("cli/lm.py", "image"): "`mmtok lm generate` draws images (PNG files): an image command, as encode / decode"}


def _owner_dirs(kind: str, name: str) -> tuple[Path, ...]:
    return (ROOT / "mmtok" / kind / name,)


def _compared_strings(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                for v in values:
                    if isinstance(v, ast.Constant) and isinstance(v.value, str):
                        yield node.lineno, v.value


def find_branches(sources) -> list[str]:
    """"file:line: NAME" for every comparison with a modality, family or layout name outside the name's owner, in
    `sources`: (path, text) pairs."""
    owners = {name: _owner_dirs("modalities", name) for name in modalities.names()}
    owners.update({name: _owner_dirs("families", name) for name in families.names()})
    owners.update({name: (ROOT / "mmtok" / "contract.py",) for name in LAYOUTS})
    found = []
    for path, text in sources:
        for line, value in _compared_strings(ast.parse(text)):
            if (str(path.relative_to(ROOT)), value) in ALLOWED:
                continue
            if value in owners and not any(path == o or o in path.parents for o in owners[value]):
                found.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    return found


def test_no_modality_family_or_layout_name_is_compared_outside_its_own_package():
    files = sorted((ROOT / "mmtok").rglob("*.py")) + sorted((ROOT / "cli").rglob("*.py"))
    assert len(files) > 100
    assert find_branches((f, f.read_text()) for f in files) == []


def test_the_check_finds_a_branch():
    probe = ROOT / "mmtok" / "lm" / "probe.py"  # a path outside every owner (never written)
    text = 'def f(meta):\n    return meta["modality"] == "audio" or meta["layout"] in ("residual", "x")\n'
    assert find_branches([(probe, text)]) == ["mmtok/lm/probe.py:2: 'audio'", "mmtok/lm/probe.py:2: 'residual'"]
    inside = ROOT / "mmtok" / "modalities" / "audio" / "probe.py"
    assert find_branches([(inside, text)]) == ["mmtok/modalities/audio/probe.py:2: 'residual'"]
