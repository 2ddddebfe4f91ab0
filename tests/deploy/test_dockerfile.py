"""deploy/Dockerfile: its stages parse, the runtime stage is slim and unprivileged, and what the build
stage copies makes a package with everything the services load at run time (migrations, templates)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

from tests.deploy.test_settings_documented import readme_variables
from tests.deploy.tools import DEPLOY, ROOT, run

DOCKERFILE = DEPLOY / "Dockerfile"
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cc|make|python3?-dev)\b")


def stages() -> list[list[dict[str, Any]]]:
    """Instructions grouped by build stage (everything from one FROM to the next)."""
    out: list[list[dict[str, Any]]] = []
    for instr in DockerfileParser(path=str(DOCKERFILE)).structure:
        if instr["instruction"] == "FROM":
            out.append([])
        if out and instr["instruction"] != "COMMENT":
            out[-1].append(instr)
    return out


def _one(stage: list[dict[str, Any]], name: str) -> str:
    (value,) = [i["value"] for i in stage if i["instruction"] == name]
    return str(value)


def test_two_stages_and_a_slim_unprivileged_runtime():
    build, runtime = stages()
    build_from = _one(build, "FROM").split()
    assert build_from[-2].upper() == "AS"
    build_name = build_from[-1]
    assert "slim" in _one(runtime, "FROM")
    assert any(COMPILERS.search(i["value"]) for i in build if i["instruction"] == "RUN")
    for i in runtime:
        if i["instruction"] == "RUN":
            assert "apt-get install" not in i["value"] and not COMPILERS.search(i["value"]), i["value"]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert copies and all(c.startswith(f"--from={build_name} ") for c in copies)  # no source tree
    user = _one(runtime, "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so runAsNonRoot can check it
    assert json.loads(_one(runtime, "ENTRYPOINT")) == ["faultline"]


def test_image_settings_are_documented_variables():
    parser = DockerfileParser(path=str(DOCKERFILE))
    parser.env_replace = False
    env_lines = [i["value"] for i in parser.structure if i["instruction"] == "ENV"]
    set_here = set(re.findall(r"\b(FAULTLINE_[A-Z_]+)=", " ".join(env_lines)))
    assert set_here and set_here <= readme_variables()


def _sources(stage: list[dict[str, Any]]) -> list[str]:
    out = []
    for i in stage:
        if i["instruction"] == "COPY" and not i["value"].startswith("--from"):
            *srcs, _dest = i["value"].split()
            out += srcs
    return out


def test_what_the_build_stage_copies_makes_a_complete_package(tmp_path):
    build, _ = stages()
    sources = _sources(build)
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = tmp_path / "context"
    for src in sources:
        assert not any(fnmatch.fnmatch(src, pat) for pat in ignored), src
        origin = ROOT / src
        if origin.is_dir():
            shutil.copytree(origin, context / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / src).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, context / src)
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        str(tmp_path / "out"),
        str(context),
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "out").glob("faultline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pattern in ("shared/migrations/*.sql", "services/query/templates/*.html", "**/*.py"):
        for path in context.glob(pattern):
            rel = path.relative_to(context).as_posix()
            if rel.startswith(("shared/", "services/")):
                assert rel in names, f"{rel} would be missing from the image"
    assert any(n.startswith("shared/migrations/") and n.endswith(".sql") for n in names)
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"^faultline = shared\.cli:main$", text, re.M)


def test_the_worker_probe_runs_outside_the_source_tree(tmp_path):
    """What the probes run in the image (cwd /var/lib/faultline): fails, naming why, without a heartbeat."""
    missing = Path(tmp_path) / "none.json"
    out = run(sys.executable, "-m", "services.worker.health", "--file", str(missing), cwd=tmp_path)
    assert out.returncode == 1 and "no heartbeat" in out.stderr
