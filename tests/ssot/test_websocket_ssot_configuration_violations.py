"""One configuration source: the environment is read in one module, each default is
defined once, and the documented table is the Settings class."""

from __future__ import annotations

import re
from pathlib import Path

from runwire import Settings
from runwire.config import ENV_PREFIX
from tests.ssot._support import (
    DOCS,
    PACKAGE,
    after_future_import,
    assert_none,
    broken_tree,
    config_table_problems,
    repo_findings,
    ssot_findings,
)

CONFIG_MODULE = "runwire/config.py"
ENV_ACCESS = re.compile(r"\bos\.environ|\benviron\b|\bgetenv\b|\bputenv\b")


def environment_mentions(package: Path) -> list[str]:
    """Files of the package whose text touches the process environment."""
    return sorted(
        path.relative_to(package.parent).as_posix()
        for path in package.rglob("*.py")
        if ENV_ACCESS.search(path.read_text(encoding="utf-8"))
    )


def test_websocket_configuration_source_consistency(tmp_path: Path) -> None:
    assert_none(repo_findings(tmp_path, ["SSOT007"], [PACKAGE]))
    assert environment_mentions(PACKAGE) == [CONFIG_MODULE]


def test_configuration_source_checks_fail_on_an_environment_read(tmp_path: Path) -> None:
    config = broken_tree(
        tmp_path,
        {
            "src/runwire/server.py": after_future_import(
                'import os\nDEBUG = os.getenv("RUNWIRE_DEBUG")'
            )
        },
    )
    [hit] = ssot_findings(config, ["SSOT007"])
    assert hit.startswith("SSOT007 src/runwire/server.py:") and hit.endswith(" <module>:os.getenv")
    assert environment_mentions(tmp_path / "src" / "runwire") == [
        CONFIG_MODULE,
        "runwire/server.py",
    ]


def configuration_doc() -> str:
    path = DOCS / "configuration.md"
    assert path.is_file(), "docs/configuration.md is missing (run python docs/_gen_config.py)"
    return path.read_text(encoding="utf-8")


def test_websocket_default_configuration_consistency(tmp_path: Path) -> None:
    assert_none(repo_findings(tmp_path, ["SSOT008"], [PACKAGE]))
    assert Settings.model_config.get("env_prefix") == ENV_PREFIX
    assert_none(config_table_problems(configuration_doc(), Settings, ENV_PREFIX))


def test_default_configuration_checks_fail_on_a_second_default(tmp_path: Path) -> None:
    heartbeat = Settings.model_fields["heartbeat_interval_s"].default
    config = broken_tree(
        tmp_path,
        {"src/runwire/server.py": after_future_import(f"HEARTBEAT_INTERVAL_S = {heartbeat!r}")},
    )
    [hit] = ssot_findings(config, ["SSOT008"])
    assert hit.startswith("SSOT008 src/runwire/server.py:")
    assert hit.endswith(f" <module>:{heartbeat!r}")
    # A stale table: a wrong default, a wrong variable, a missing row, an unknown row.
    doc = configuration_doc()
    port, host = (Settings.model_fields[n].default for n in ("port", "host"))
    stale = doc.replace(f"| `{port}` |", "| `8080` |", 1)
    stale = stale.replace(f"`{ENV_PREFIX}HOST`", "`HOST`", 1)
    stale = "\n".join(line for line in stale.splitlines() if not line.startswith("| `mode` |"))
    stale += "\n| `colour` | `RUNWIRE_COLOUR` | str | `blue` |  | Not a setting. |\n"
    # A computed default is checked against its rule (the factory's docstring).
    rule = "`$XDG_CONFIG_HOME/runwire`, else `~/.config/runwire`"
    stale = stale.replace(f"| {rule} |", "| `.runwire` |", 1)
    assert config_table_problems(stale, Settings, ENV_PREFIX) == [
        "host: environment variable `HOST`",
        f"port: default `8080` (Settings: {port!r})",
        "mode: missing from the table",
        f"state_dir: default `.runwire` (Settings: {rule!r})",
        "colour: not a field of Settings",
    ]
    assert host  # the table row for host stayed, only its variable changed
