"""ssotcheck: a static single-source-of-truth guard for Python code bases.

Public API: :func:`check` runs every rule for a ``pyproject.toml`` and returns a
:class:`Report`; :class:`ConfigError` signals a bad configuration.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ssotcheck.config import Config, ConfigError, load_config
from ssotcheck.engine import check
from ssotcheck.findings import RULES, FileError, Finding, Report, StaleEntry

__all__ = [
    "RULES",
    "Config",
    "ConfigError",
    "FileError",
    "Finding",
    "Report",
    "StaleEntry",
    "__version__",
    "check",
    "load_config",
]
