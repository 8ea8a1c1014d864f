"""The documentation builds, its generated pages are current, and the README stays a front door."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_pages_are_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_site_builds_strictly(tmp_path):
    exe = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    if not Path(exe).exists():
        pytest.fail("mkdocs is not installed (requirements.txt installs it)")
    out = subprocess.run([exe, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "make demo" in text and "make test" in text
    for target in [line.split("](", 1)[1].split(")", 1)[0] for line in text.splitlines() if "](docs/" in line]:
        assert (ROOT / target.split("#")[0]).exists(), target


def test_every_node_parameter_is_declared_and_every_declaration_read():
    from evdistill_ros.ros.params import PARAMS

    read = set()
    for path in (ROOT / "evdistill_ros" / "ros").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("param", "declared"):
                if node.args and isinstance(node.args[0], ast.Constant):
                    assert len(node.args) == 1, f"{path.name}: {ast.unparse(node)} passes its own default"
                    read.add(node.args[0].value)
    window = {"representation", "representation_params", "window_ms", "stride_ms", "window_events",
              "stride_events"}  # read in a loop over common.WINDOW_SETTINGS
    assert read | window == set(PARAMS), (sorted(read | window - set(PARAMS)), sorted(set(PARAMS) - read - window))
