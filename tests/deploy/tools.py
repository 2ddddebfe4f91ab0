"""Finding the command-line checkers the deploy tests run, and the files they check."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
CI = os.environ.get("CI") == "true"


def need(command: str, install: str, ci: bool = True) -> str:
    """The command's path; missing: a failure on CI when `.ci/run` installs it (`ci`), else a skip."""
    path = shutil.which(command)
    if path:
        return path
    if CI and ci:
        pytest.fail(f"{command} is missing on CI: .ci/run installs it ({install})")
    pytest.skip(f"{command} is not installed ({install})")


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every object in deploy/kubernetes/*.yaml but the kustomization itself."""
    out = []
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path, d) for d in documents(path)]
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in manifests() if d["kind"] == kind]


def clean_env() -> dict[str, str]:
    """This process's environment without FAULTLINE_* (the suite's own must not leak into a check)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
