"""Every FAULTLINE_* variable the code reads is in README.md's settings table and in the compose
file's documented set, and neither lists one the code does not read."""

from __future__ import annotations

import re

from tests.deploy.test_compose import SERVICES
from tests.deploy.tools import ROOT

NAME = re.compile(r"\bFAULTLINE_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def code_variables() -> set[str]:
    """The names in the services' and shared code (settings, logging set-up, messages naming them)."""
    found: set[str] = set()
    for top in ("shared", "services"):
        for path in (ROOT / top).rglob("*.py"):
            found |= set(NAME.findall(path.read_text()))
    return found


def readme_variables() -> set[str]:
    """The names in the first cell of README.md's table rows (`| \\`FAULTLINE_X\\` / ... |`)."""
    found: set[str] = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `FAULTLINE_"):
            found |= set(NAME.findall(line.split("|")[1]))
    return found


def compose_variables() -> set[str]:
    return {
        name for service in SERVICES.values() for name in service.get("environment", {}) if NAME.match(name)
    }


def test_the_code_reads_the_variables_we_expect_to_find():
    found = code_variables()
    assert {"FAULTLINE_DATABASE_URL", "FAULTLINE_SHUTDOWN_GRACE", "FAULTLINE_LOG_FORMAT"} <= found


def test_every_variable_the_code_reads_is_in_the_readme_table():
    missing = code_variables() - readme_variables()
    assert not missing, f"add to README.md's settings table: {sorted(missing)}"
    stale = readme_variables() - code_variables()
    assert not stale, f"README.md documents variables nothing reads: {sorted(stale)}"


def test_every_variable_the_code_reads_is_in_the_compose_file():
    missing = code_variables() - compose_variables()
    assert not missing, f"add to deploy/compose.yaml (x-faultline-env): {sorted(missing)}"
    assert compose_variables() <= code_variables()
