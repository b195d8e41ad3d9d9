"""SSOT007 env-read-outside-config.

Fires for any access to the process environment (``os.environ`` in any form,
``os.getenv``/``putenv``/``unsetenv``, ``from os import environ``/``getenv``,
also through ``import os as o`` and ``from os import getenv as g`` -- the
latter flagged at the import) outside ``config_module`` and its submodules.
Disabled when ``config_module`` is not configured.
"""

from __future__ import annotations

from collections.abc import Iterator

from ssotcheck.config import Config
from ssotcheck.findings import Finding, make_finding
from ssotcheck.index import ProjectIndex


def in_module(module: str, owner: str) -> bool:
    """Whether ``module`` is ``owner`` or one of its submodules."""
    return module == owner or module.startswith(owner + ".")


def check_environment(index: ProjectIndex, config: Config) -> Iterator[Finding]:
    """Emit SSOT007 findings."""
    owner = config.config_module
    if owner is None:
        return
    for info in index.infos:
        if not info.file.report or in_module(info.name, owner):
            continue
        for rec in info.summary.env:
            yield make_finding(
                "SSOT007",
                info.file.relpath,
                rec.line,
                rec.col,
                f"environment access `{rec.what}` outside the config module {owner!r}",
                f"{rec.scope}:{rec.what}",
                f"read the value from `{owner}` instead",
            )
