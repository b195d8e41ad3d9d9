"""The frameworks stay optional: the core never imports them, nor depends on them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
FRAMEWORKS = ("langchain", "langgraph", "pydantic_ai", "pydantic-ai")


def test_the_core_dependencies_name_no_framework_and_the_extras_pin_lower_bounds() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith(FRAMEWORKS)]
    extras = project["optional-dependencies"]
    for requirement in extras["langgraph"] + extras["pydantic-ai"]:
        assert ">=" in requirement, requirement


def test_importing_runwire_and_loading_an_agent_imports_no_framework() -> None:
    code = (
        "import sys, runwire, runwire.app, runwire.cli, runwire.adapters\n"
        "runwire.app.load_agent('runwire.agents.demo:demo_agent')\n"
        f"print([m for m in sys.modules if m.startswith({FRAMEWORKS!r})])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
