"""A capability whose optional package is not installed is a clear error naming the extra that installs it (the
package is hidden from the import system for the test, as a minimal installation would lack it)."""

from __future__ import annotations

import sys
import tomllib

import pytest

from crane_iac.extras import EXTRAS, MissingExtraError, require
from tests.conftest import REPO, ProjectDir, assert_clean_error


def hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """``import module`` raises ImportError from now on in this test (None in sys.modules means "not found")."""
    monkeypatch.setitem(sys.modules, module, None)


def test_crane_watch_without_watchdog_names_the_watch_extra(project: ProjectDir,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    project.write_stack("")
    hide(monkeypatch, "watchdog")
    assert_clean_error(project.crane("watch"), "crane watch needs the Python package 'watchdog'",
                       "pip install 'crane_iac[watch]'")


def test_postgresql_state_without_psycopg_names_the_postgres_extra(project: ProjectDir,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    project.write_stack("")
    hide(monkeypatch, "psycopg")
    monkeypatch.setenv("CRANE_STATE_URL", "postgresql://crane:secret@db.invalid/crane")
    result = project.crane("plan")
    assert_clean_error(result, "PostgreSQL state (postgresql://crane:***@db.invalid/crane) needs",
                       "pip install 'crane_iac[postgres]'")
    assert "secret" not in result.err


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_every_optional_package_names_an_extra_pyproject_declares(module: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert EXTRAS[module] in declared
    hide(monkeypatch, module)
    with pytest.raises(MissingExtraError, match=rf"pip install 'crane_iac\[{EXTRAS[module]}\]'"):
        require(module, "this")


def test_the_core_dependencies_leave_the_optional_packages_out() -> None:
    """The engine and the sandbox install without any extra: none of the optional packages is a core one."""
    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {dep.split("[")[0].split(">")[0].split("=")[0].strip().lower() for dep in core}
    assert not names & {"psycopg", "ansible-runner", "ansible-core", "prometheus-client", "watchdog"}
