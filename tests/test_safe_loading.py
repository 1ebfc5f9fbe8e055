"""Safe loading: an audit of the source tree (checkpoints only with ``weights_only=True``, NumPy
files only with ``allow_pickle=False``, no pickle, YAML only through the safe loader, no
eval/exec), and checks that files built to run code when unpickled or constructed are refused
without running it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from utils.config import ConfigError, read_mapping_file
from utils.errors import UserError
from utils.runs import RunDirectory

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_FOLDERS = {"tests", "runs", "data", "results", ".ci-venv", ".venv", ".git"}
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load",
               "full_load_all", "Loader", "UnsafeLoader", "FullLoader"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
# Meta-World's own API carries a task as pickled bytes made in memory by the installed library
# (metaworld.ML1); nothing read from a user's file is ever unpickled.
ALLOWED = {("environments/metaworld/ml1.py", "import pickle")}


def dotted_name(node: ast.AST) -> str:
    """``torch.load`` for the expression ``torch.load`` (empty if not a plain dotted name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(keyword.arg == name and isinstance(keyword.value, ast.Constant)
               and keyword.value.value is value for keyword in call.keywords)


def unsafe_uses(source: str) -> list[str]:
    """Every unsafe loading construct in ``source``, as ``line N: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"line {line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            names = {alias.name for alias in node.names}
            if module in UNSAFE_MODULES:
                found.append(f"line {line}: from {node.module} import ...")
            elif module == "yaml" and names & UNSAFE_YAML:
                found.append(f"line {line}: from yaml import {sorted(names & UNSAFE_YAML)}")
            elif module in ("torch", "numpy") and "load" in names:
                found.append(f"line {line}: from {module} import load")
        elif isinstance(node, ast.Call):
            name = dotted_name(node.func)
            if name == "torch.load" and not keyword_is(node, "weights_only", True):
                found.append(f"line {line}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and not keyword_is(node, "allow_pickle",
                                                                       False):
                found.append(f"line {line}: {name} without allow_pickle=False")
            elif name in ("torch.jit.load", "torch.package.PackageImporter"):
                found.append(f"line {line}: {name}")
            elif name in UNSAFE_BUILTINS:
                found.append(f"line {line}: {name}()")
        elif isinstance(node, ast.Attribute) and dotted_name(node.value) == "yaml" and (
                node.attr in UNSAFE_YAML):
            found.append(f"line {line}: yaml.{node.attr}")
    return found


def source_files() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py")
                  if not SKIPPED_FOLDERS & set(path.relative_to(ROOT).parts))


def test_the_source_tree_loads_nothing_unsafely():
    files = source_files()
    assert ROOT / "utils/runs.py" in files and ROOT / "launch_focal.py" in files
    problems = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        for use in unsafe_uses(path.read_text()):
            if (relative, use.split(": ", 1)[1]) not in ALLOWED:
                problems.append(f"{relative} {use}")
    assert problems == []


@pytest.mark.parametrize(("source", "expected"), [
    ("import torch\ntorch.load('x.pt')", "torch.load without weights_only=True"),
    ("import torch\ntorch.load('x.pt', weights_only=False)", "without weights_only=True"),
    ("import numpy as np\nnp.load('x.npz', allow_pickle=True)", "np.load without allow_pickle"),
    ("import pickle", "import pickle"),
    ("from pickle import loads", "from pickle import"),
    ("import dill", "import dill"),
    ("import yaml\nyaml.load(text)", "yaml.load"),
    ("import yaml\nyaml.load(text, Loader=yaml.FullLoader)", "yaml.FullLoader"),
    ("from yaml import unsafe_load", "from yaml import"),
    ("eval('1 + 1')", "eval()"),
    ("exec('x = 1')", "exec()"),
])
def test_the_audit_finds_each_unsafe_construct(source, expected):
    assert any(expected in use for use in unsafe_uses(source)), unsafe_uses(source)


def test_the_audit_passes_safe_constructs():
    source = ("import torch, yaml, numpy as np\ntorch.load(p, weights_only=True)\n"
              "np.load(p, allow_pickle=False)\nyaml.safe_load(t)\nyaml.safe_dump(d)\n"
              "model.eval()\n")
    assert unsafe_uses(source) == []


class CreatesAFileWhenUnpickled:
    """An object whose unpickling would create the file ``unpickled`` in the working folder."""

    def __reduce__(self):
        return (open, ("unpickled", "w"))


def test_a_checkpoint_holding_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunDirectory(tmp_path / "run")
    run.checkpoint_dir.mkdir(parents=True)
    torch.save({"step": 1, "payload": CreatesAFileWhenUnpickled()},
               run.checkpoint_dir / "latest.pt")
    with pytest.raises(UserError, match="latest.pt cannot be loaded"):
        run.load_checkpoint()
    assert not (tmp_path / "unpickled").exists()


def test_a_yaml_file_holding_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text("num_iters: !!python/object/apply:builtins.open ['unpickled', 'w']\n")
    with pytest.raises(ConfigError, match="is not valid yaml: could not determine a "
                                          "constructor"):
        read_mapping_file(path)
    assert not (tmp_path / "unpickled").exists()
