"""The layering of the package is enforced, not only written down (.importlinter, docs/architecture.md)."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "evdistill_ros"


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("import-linter is not installed (requirements.txt installs it)")
    out = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and out.stdout.count("KEPT") >= 3


def test_function_level_imports_of_the_package_say_why():
    """An import of the package's own modules inside a function carries a comment with its reason."""
    silent = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.level > 0 or (sub.module or "").startswith("evdistill_ros")):
                    text = lines[sub.lineno - 1]
                    above = lines[sub.lineno - 2] if sub.lineno > 1 else ""
                    if "#" not in text and not above.strip().startswith("#"):
                        silent.append(f"{path.relative_to(ROOT)}:{sub.lineno}: {text.strip()}")
    assert not silent, "function-level imports without a reason:\n" + "\n".join(silent)


def test_one_definition_each():
    """The default event input, the atomic write, the sim topics and the frame conversion live once
    (looked for in code, not in docstrings)."""
    trees = {str(p.relative_to(ROOT)): ast.parse(p.read_text()) for p in PACKAGE.rglob("*.py")}

    def holders(match) -> list[str]:
        return sorted(name for name, tree in trees.items() if any(match(n) for n in ast.walk(tree)))

    def const(n, pred) -> bool:
        return isinstance(n, ast.Constant) and pred(n.value)

    def call(n, dotted: str) -> bool:
        return isinstance(n, ast.Call) and ast.unparse(n.func) == dotted

    assert holders(lambda n: call(n, "os.replace")) == ["evdistill_ros/atomic.py"]
    assert holders(lambda n: const(n, lambda v: v == 50_000_000 and not isinstance(v, bool))) == \
        ["evdistill_ros/events/spec.py"]
    assert holders(lambda n: const(n, lambda v: isinstance(v, str) and v.startswith("/davis/left/"))) == \
        ["evdistill_ros/io/presets.py"]
    assert holders(lambda n: const(n, lambda v: v == 0.299)) == ["evdistill_ros/frames.py"]
    assert holders(lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift)
                   and const(n.right, lambda v: v == 8)) == ["evdistill_ros/frames.py"]


def test_errors_are_typed_by_layer(tmp_path):
    """Callers tell a configuration, a data layout, a checkpoint and a wire-format error apart by
    type (each still a ValueError), not by the wording of its message."""
    import torch

    from evdistill_ros.distill import config as C
    from evdistill_ros.errors import CheckpointError, ConfigError, DataLayoutError, WireFormatError
    from evdistill_ros.io.pair_cache import open_cache
    from evdistill_ros.models import load_checkpoint
    from evdistill_ros.models.teacher_card import read_teacher_card
    from evdistill_ros.wire import CodecError, decode_event_array

    with pytest.raises(ConfigError):
        C.load_config(None, [{"train": {"steps": "abc"}}])
    card = tmp_path / "t.yaml"
    card.write_text("path: x.onnx\n")
    with pytest.raises(ConfigError):
        read_teacher_card(card)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "meta.json").write_text("{")
    with pytest.raises(DataLayoutError):
        open_cache(tmp_path / "cache")
    with pytest.raises(WireFormatError):
        decode_event_array(b"\x01" * 7)
    assert issubclass(CodecError, WireFormatError) and all(
        issubclass(e, ValueError) for e in (ConfigError, DataLayoutError, CheckpointError, WireFormatError))


def test_ruff_is_clean():
    """ruff with the repository's pyproject.toml settings finds nothing (undefined or unused names, ...)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    r = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


ABOVE_MODELS = ("eval", "distill", "ros", "sim")
CHECKPOINT_NAMES = ("meta", "metadata", "event_meta", "ckpt_meta", "network_meta")
SECTIONS = ("data", "model", "augment", "train", "teacher", "student", "compare")
CONFIG_NAMES = ("cfg", "config", "scfg", "mcfg", "run_cfg", "run_config", *(f"{s}_cfg" for s in SECTIONS),
                *(f"{s}_config" for s in SECTIONS))
# the file boundaries: where a checkpoint's or a config's plain form is read and checked
BOUNDARIES = ("distill/config.py",)


def _dict_typed(annotation: ast.expr | None) -> bool:
    text = "" if annotation is None else ast.unparse(annotation)
    return annotation is None or any(t in text for t in ("dict", "Dict", "Mapping", "Any"))


def test_no_function_above_models_takes_checkpoint_metadata_or_config_as_a_dict():
    """Above models/, a network's metadata travels as models.card.NetworkCard and a training config
    as distill.config.Config and its typed sections; the dict forms live at the file boundaries
    (checkpoint, .onnx and card files; the YAML config)."""
    found = []
    for pkg in ABOVE_MODELS:
        for path in (PACKAGE / pkg).rglob("*.py"):
            if str(path.relative_to(PACKAGE)) in BOUNDARIES:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                a = node.args
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                    named = arg.arg in CHECKPOINT_NAMES or arg.arg in CONFIG_NAMES
                    section = arg.arg in SECTIONS and arg.annotation is not None
                    if (named or section) and _dict_typed(arg.annotation):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({arg.arg})")
    assert not found, ("checkpoint metadata or config as a dict above models/ (take a NetworkCard, a Config or "
                       "a section):\n" + "\n".join(found))


def test_the_ast_check_sees_a_dict_parameter(tmp_path):
    tree = ast.parse("def f(meta: dict, card: NetworkCard, n: int): pass")
    args = tree.body[0].args.args
    assert [_dict_typed(a.annotation) for a in args] == [True, False, False]


def test_distill_functions_are_short():
    """The training code reads as small steps (distill.trainer.TrainingRun): no function of distill/
    is over 60 lines."""
    long = []
    for path in (PACKAGE / "distill").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "\n".join(long)
