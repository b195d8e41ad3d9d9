"""One block of tests per rule: what fires, and the near misses that must not."""

from __future__ import annotations

from pathlib import Path

from ssotcheck.testing import BASE_FILES, MANAGER, hits, make_project, project_hits, run

BASE_CONFIG = BASE_FILES["src/wire/config.py"]

# -- SSOT001 duplicate-definition ----------------------------------------------


def test_ssot001_flags_pattern_and_exact_name_matches(tmp_path: Path) -> None:
    files = {
        "src/app/mod.py": """\
            class MyConnectionManager:
                pass


            class WebSocketManager:
                pass


            class Outer:
                class WebSocketSessionManager:
                    pass
            """,
    }
    assert project_hits(tmp_path, files, "SSOT001") == [
        ("src/app/mod.py", 1),
        ("src/app/mod.py", 5),
        ("src/app/mod.py", 10),
    ]


def test_ssot001_ignores_canonical_and_unrelated_names(tmp_path: Path) -> None:
    files = {
        "src/app/manager_utils.py": """\
            class ManagerUtils:
                pass


            class websocketmanager_lowercase:
                pass
            """,
    }
    assert project_hits(tmp_path, files, "SSOT001") == []


# -- SSOT002 near-duplicate ----------------------------------------------------

_COPY = """\
    class Pool:
        def __init__(self, size: int) -> None:
            '''Different docstring.'''
            self.size = size
            self.members: dict[str, object] = {}

        def join(self, who: str, what: object) -> None:
            if len(self.members) >= self.size:
                raise RuntimeError("another message entirely")
            self.members[who] = what
    {extra}
    """

_DIFFERENT = """
        def a(self, x: int) -> int:
            return sum(i * x for i in range(x) if i % 3)

        def b(self, y: str) -> list[str]:
            return [c.upper() for c in y if c.isalpha()]
"""


def test_ssot002_flags_renamed_copy(tmp_path: Path) -> None:
    files = {"src/app/pool.py": _COPY.replace("{extra}", "")}
    assert project_hits(tmp_path, files, "SSOT002") == [("src/app/pool.py", 1)]


def test_ssot002_needs_high_share_of_copied_methods(tmp_path: Path) -> None:
    files = {"src/app/pool.py": _COPY.replace("{extra}", _DIFFERENT)}
    assert project_hits(tmp_path, files, "SSOT002") == []


def test_ssot002_needs_two_copied_methods(tmp_path: Path) -> None:
    files = {
        "src/app/pool.py": """\
            class Pool:
                def join(self, who: str, what: object) -> None:
                    if len(self.members) >= self.size:
                        raise RuntimeError("full")
                    self.members[who] = what
            """,
    }
    assert project_hits(tmp_path, files, "SSOT002") == []


def test_ssot002_structural_change_is_not_a_copy(tmp_path: Path) -> None:
    source = _COPY.replace("{extra}", "").replace(">= self.size", "> self.size + 1")
    source = source.replace("self.members: dict[str, object] = {}", "self.members = []")
    assert project_hits(tmp_path, {"src/app/pool.py": source}, "SSOT002") == []


# -- SSOT003 alias -------------------------------------------------------------


def test_ssot003_flags_assignment_import_and_chained_aliases(tmp_path: Path) -> None:
    files = {
        "src/app/aliases.py": """\
            from wire import WebSocketManager
            from wire import WebSocketManager as WSM

            Mgr = WebSocketManager
            Again = WSM
            """,
        "src/app/user.py": """\
            from app.aliases import Mgr
            """,
    }
    assert project_hits(tmp_path, files, "SSOT003") == [
        ("src/app/aliases.py", 2),
        ("src/app/aliases.py", 4),
        ("src/app/aliases.py", 5),
        ("src/app/user.py", 1),
    ]


def test_ssot003_flags_dotted_import_alias(tmp_path: Path) -> None:
    files = {"src/app/x.py": "import wire.manager.WebSocketManager as M\n"}
    report = run(make_project(tmp_path, files))
    assert hits(report) == [("SSOT003", "src/app/x.py", 1), ("SSOT004", "src/app/x.py", 1)]


def test_ssot003_same_name_reexport_and_unrelated_aliases_are_silent(tmp_path: Path) -> None:
    files = {
        "src/wire/api.py": """\
            from wire.manager import WebSocketManager as WebSocketManager
            from wire.config import Settings as Config

            WebSocketManager = WebSocketManager
            Alias = Config
            __all__ = ["WebSocketManager", "Alias"]
            """,
    }
    assert project_hits(tmp_path, files, "SSOT003") == []


def test_ssot003_mentions_all_reexport(tmp_path: Path) -> None:
    files = {
        "src/wire/compat.py": """\
            from wire.manager import WebSocketManager as Legacy

            __all__ = ["Legacy"]
            """,
    }
    report = run(make_project(tmp_path, files))
    [finding] = report.findings
    assert finding.rule == "SSOT003"
    assert "__all__" in finding.message
    assert finding.symbol == "<module>:Legacy=manager"


# -- SSOT004 non-canonical import ----------------------------------------------


def test_ssot004_flags_imports_from_non_public_modules(tmp_path: Path) -> None:
    files = {
        "src/wire/reexport.py": "from wire.manager import WebSocketManager\n",
        "src/app/a.py": """\
            from typing import TYPE_CHECKING

            from wire.manager import WebSocketManager
            from wire.reexport import WebSocketManager as W2

            if TYPE_CHECKING:
                from wire.manager import WebSocketManager as W3
            """,
    }
    assert project_hits(tmp_path, files, "SSOT004") == [
        ("src/app/a.py", 3),
        ("src/app/a.py", 4),
        ("src/app/a.py", 7),
    ]


def test_ssot004_silent_for_public_path_and_canonical_within_package(tmp_path: Path) -> None:
    files = {
        "src/wire/inner.py": """\
            '''Import like ``from wire.reexport import WebSocketManager`` is prose.'''
            from .manager import WebSocketManager
            from wire.manager import WebSocketManager as WebSocketManager
            from wire import WebSocketManager as WebSocketManager
            """,
        "src/app/b.py": """\
            from wire import WebSocketManager
            import wire
            from wire.manager import create_manager
            """,
    }
    assert project_hits(tmp_path, files, "SSOT004") == []


# -- SSOT005 construction outside factory ---------------------------------------


def test_ssot005_flags_calls_through_imports_aliases_and_modules(tmp_path: Path) -> None:
    files = {
        "src/app/c.py": """\
            import wire
            import wire.manager as wm
            from wire import WebSocketManager

            Alias = WebSocketManager


            def make() -> object:
                a = WebSocketManager(1)
                b = wire.WebSocketManager(2)
                c = wm.WebSocketManager(3)
                return a, b, c, Alias(4)
            """,
    }
    assert project_hits(tmp_path, files, "SSOT005") == [
        ("src/app/c.py", 9),
        ("src/app/c.py", 10),
        ("src/app/c.py", 11),
        ("src/app/c.py", 12),
    ]


def test_ssot005_silent_for_isinstance_annotations_subclasses_and_factory(
    tmp_path: Path,
) -> None:
    files = {
        "src/app/d.py": """\
            from wire import WebSocketManager, create_manager


            class Custom(WebSocketManager):
                pass


            def use(m: WebSocketManager) -> WebSocketManager:
                '''``WebSocketManager(1)`` in prose is fine.'''
                assert isinstance(m, WebSocketManager)
                Custom(3)
                return create_manager(2)
            """,
    }
    assert project_hits(tmp_path, files, "SSOT005") == []


def test_ssot005_flags_calls_in_canonical_module_outside_factory(tmp_path: Path) -> None:
    files = {"src/wire/manager.py": MANAGER + "\n\nDEFAULT = WebSocketManager(1)\n"}
    found = project_hits(tmp_path, files, "SSOT005")
    assert found == [("src/wire/manager.py", MANAGER.count("\n") + 3)]


# -- SSOT006 import cycle ------------------------------------------------------


def test_ssot006_reports_each_cycle_once_at_first_edge(tmp_path: Path) -> None:
    files = {
        "src/app/__init__.py": "",
        "src/app/a.py": "import os\nfrom app import b\n",
        "src/app/b.py": "from . import c\n",
        "src/app/c.py": "import app.a\n",
    }
    report = run(make_project(tmp_path, files))
    [finding] = [f for f in report.findings if f.rule == "SSOT006"]
    assert (finding.path, finding.line) == ("src/app/a.py", 2)
    assert "app.a -> app.b -> app.c -> app.a" in finding.message
    assert finding.symbol == "cycle:app.a,app.b,app.c"


def test_ssot006_ignores_type_checking_function_level_and_parent_imports(
    tmp_path: Path,
) -> None:
    files = {
        "src/app/__init__.py": "from app.a import VALUE\n",
        "src/app/a.py": """\
            import typing

            import app.b

            VALUE = 1
            """,
        "src/app/b.py": """\
            import typing

            if typing.TYPE_CHECKING:
                import app.a


            def lazy() -> int:
                from app import a

                return a.VALUE
            """,
    }
    assert project_hits(tmp_path, files, "SSOT006") == []


# -- SSOT007 environment access ------------------------------------------------


def test_ssot007_flags_every_form_of_env_access(tmp_path: Path) -> None:
    files = {
        "src/app/env.py": """\
            import os
            import os as o
            from os import environ
            from os import getenv as g

            A = os.environ["A"]
            B = os.environ.get("B")
            C = o.getenv("C")
            os.putenv("D", "1")
            E = dict(os.environ)
            F = g("F")
            """,
    }
    assert [line for _, line in project_hits(tmp_path, files, "SSOT007")] == [
        3,
        4,
        6,
        7,
        8,
        9,
        10,
    ]


def test_ssot007_silent_in_config_module_and_for_lookalikes(tmp_path: Path) -> None:
    files = {
        "src/wire/config.py": BASE_CONFIG + "\nX = os.getenv('X')\n",
        "src/app/paths.py": """\
            '''Never call ``os.getenv("X")`` outside config.'''
            import os.path

            environ = {"A": "1"}
            value = environ.get("A")
            joined = os.path.join("a", "b")
            """,
    }
    assert project_hits(tmp_path, files, "SSOT007") == []


def test_ssot007_disabled_without_config_module(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"src/app/e.py": "import os\nX = os.getenv('X')\n"})
    text = config.read_text().replace('config_module = "wire.config"\n', "")
    config.write_text(text)
    assert hits(run(config), "SSOT007") == []


# -- SSOT008 duplicated config default -----------------------------------------


def test_ssot008_flags_ints_floats_strings_and_negatives(tmp_path: Path) -> None:
    files = {
        "src/app/lits.py": """\
            PORT = 8765
            TIMEOUT = 30
            HOST = "example.internal"
            OFFSET = -40
            ALSO = 8765.0
            """,
    }
    assert [line for _, line in project_hits(tmp_path, files, "SSOT008")] == [1, 2, 3, 4, 5]


def test_ssot008_silent_for_docstrings_bools_small_values_and_config(
    tmp_path: Path,
) -> None:
    files = {
        "src/app/lits.py": """\
            '''Default port is 8765 on "example.internal".'''
            DEBUG = True
            SMALL = 3
            NOT_NEGATED = 40
            TEXT = f"example.internal{1}"


            def f() -> None:
                '''Timeout 30.'''


            class Doc:
                '''example.internal'''
            """,
        "src/wire/config.py": BASE_CONFIG + "\nPORT_AGAIN = 8765\n",
    }
    assert project_hits(tmp_path, files, "SSOT008") == []


def test_ssot008_respects_ignore_literals(tmp_path: Path) -> None:
    files = {"src/app/lits.py": 'PORT = 8765\nHOST = "example.internal"\n'}
    extra = 'ignore_literals = [8765, "example.internal", true]'
    assert project_hits(tmp_path, files, "SSOT008", extra) == []


def test_ssot008_reads_field_default_keyword(tmp_path: Path) -> None:
    files = {
        "src/wire/config.py": """\
            from pydantic import BaseModel, Field


            class Settings(BaseModel):
                retry_delay: float = Field(default=12.5, ge=0)
                name: str = Field("service-name")
            """,
        "src/app/lits.py": 'DELAY = 12.5\nNAME = "service-name"\n',
    }
    assert project_hits(tmp_path, files, "SSOT008") == [
        ("src/app/lits.py", 1),
        ("src/app/lits.py", 2),
    ]
