"""SSOT001 tells a role from a copy: kinds, role suffixes, unrelated look-alikes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssotcheck.classes import ClassIndex, role_suffix
from ssotcheck.config import ConfigError, load_config
from ssotcheck.discovery import discover
from ssotcheck.engine import summarize_files
from ssotcheck.index import ProjectIndex
from ssotcheck.testing import make_project, project_hits, run

ROLES = """\
    import enum
    from abc import ABC, abstractmethod
    from collections import namedtuple
    from enum import Enum, IntFlag
    from typing import NamedTuple, Protocol, TypedDict, TypeVar

    T = TypeVar("T")


    class WebSocketManagerPhase(Enum):
        LIVE = "live"


    class WebSocketManagerFlags(IntFlag):
        A = 1


    class WebSocketManagerColour(enum.Enum):
        RED = 1


    class WebSocketManagerShape(Protocol):
        def add(self, key: str, conn: object) -> None: ...


    class WebSocketManagerGeneric(Protocol[T]):
        def get(self) -> T: ...


    class BaseWebSocketManager(ABC):
        @abstractmethod
        def add(self, key: str, conn: object) -> None:
            raise NotImplementedError

        def remove(self, key: str) -> object:
            '''Subclasses implement this.'''


    class WebSocketManagerCounts(TypedDict):
        connections: int


    class WebSocketManagerKey(NamedTuple):
        user: str


    WebSocketManagerPair = namedtuple("WebSocketManagerPair", "a b")


    class WebSocketManagerTuple(namedtuple("Base", "a b")):
        pass


    class WebSocketManagerFailure(RuntimeError):
        pass


    class WebSocketManagerTimeout(WebSocketManagerFailure):
        pass


    class WebSocketManagerFactory:
        def build(self) -> object:
            return object()
    """


def test_kinds_and_role_suffixes_are_not_duplicates(tmp_path: Path) -> None:
    assert project_hits(tmp_path, {"src/app/roles.py": ROLES}, "SSOT001") == []


def test_names_only_would_flag_every_role(tmp_path: Path) -> None:
    include = 'include = ["enum", "protocol", "typeddict", "namedtuple", "exception", "Factory"]\n'
    hits = project_hits(tmp_path, {"src/app/roles.py": ROLES}, "SSOT001", concept_config=include)
    assert len(hits) == 12  # every class above: the opt-in restores names-only matching


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        ("enum", {"WebSocketManagerPhase", "WebSocketManagerFlags", "WebSocketManagerColour"}),
        ("protocol", {"WebSocketManagerShape", "WebSocketManagerGeneric", "BaseWebSocketManager"}),
        ("typeddict", {"WebSocketManagerCounts"}),
        ("namedtuple", {"WebSocketManagerKey", "WebSocketManagerTuple"}),
        ("exception", {"WebSocketManagerFailure", "WebSocketManagerTimeout"}),
        ("Factory", {"WebSocketManagerFactory"}),
    ],
)
def test_a_concept_can_opt_a_kind_or_role_in(
    tmp_path: Path, include: str, expected: set[str]
) -> None:
    config = make_project(
        tmp_path, {"src/app/roles.py": ROLES}, concept_config=f'include = ["{include}"]\n'
    )
    symbols = {f.symbol for f in run(config).findings if f.rule == "SSOT001"}
    assert symbols == expected


def test_the_kind_of_each_class(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"src/app/roles.py": ROLES})
    report_index = _index(config)
    kinds = {e.record.name: report_index.kind(e) for e in report_index.entries}
    assert kinds["WebSocketManagerPhase"] == "enum"
    assert kinds["WebSocketManagerColour"] == "enum"
    assert kinds["WebSocketManagerFlags"] == "enum"
    assert kinds["WebSocketManagerShape"] == "protocol"
    assert kinds["WebSocketManagerGeneric"] == "protocol"
    assert kinds["BaseWebSocketManager"] == "protocol"
    assert kinds["WebSocketManagerCounts"] == "typeddict"
    assert kinds["WebSocketManagerKey"] == "namedtuple"
    assert kinds["WebSocketManagerTuple"] == "namedtuple"
    assert kinds["WebSocketManagerFailure"] == "exception"
    assert kinds["WebSocketManagerTimeout"] == "exception"
    assert kinds["WebSocketManagerFactory"] == "class"
    assert kinds["WebSocketManager"] == "class"


def _index(config: Path) -> ClassIndex:
    cfg = load_config(config)
    files = discover(cfg)
    summaries, _ = summarize_files(files, None)
    return ClassIndex(ProjectIndex(list(zip(files, summaries, strict=True)), cfg))


def test_an_implementation_of_a_protocol_is_not_a_protocol(tmp_path: Path) -> None:
    files = {
        "src/app/impl.py": """\
            from typing import Protocol


            class Sender(Protocol):
                def send(self) -> None: ...


            class StubbyWebSocketManager(Sender):
                def send(self) -> None:
                    pass
            """,
    }
    assert project_hits(tmp_path, files, "SSOT001") == [("src/app/impl.py", 8)]


def test_a_class_with_stub_methods_but_no_abc_is_still_a_copy(tmp_path: Path) -> None:
    files = {
        "src/app/degraded.py": """\
            class DegradedWebSocketManager:
                def add(self, key: str, conn: object) -> None:
                    pass

                def remove(self, key: str) -> None:
                    ...
            """,
    }
    assert project_hits(tmp_path, files, "SSOT001") == [("src/app/degraded.py", 1)]


def test_exact_name_always_fires_whatever_the_kind(tmp_path: Path) -> None:
    files = {
        "src/app/proto.py": """\
            from typing import Protocol


            class WebSocketManager(Protocol):
                def add(self) -> None: ...
            """,
    }
    assert project_hits(tmp_path, files, "SSOT001") == [("src/app/proto.py", 4)]


def test_role_suffixes_are_configurable(tmp_path: Path) -> None:
    files = {
        "src/app/more.py": """\
            class WebSocketManagerFactory:
                pass


            class WebSocketManagerRegistry:
                pass
            """,
    }
    assert project_hits(tmp_path, files, "SSOT001") == [("src/app/more.py", 5)]
    only_registry = 'roles = ["Registry"]\n'
    assert project_hits(tmp_path, files, "SSOT001", extra_config=only_registry) == [
        ("src/app/more.py", 1)
    ]


def test_a_pattern_ending_in_a_role_suffix_opts_it_in(tmp_path: Path) -> None:
    files = {"src/app/cfg.py": "class RedisWebSocketManagerConfig:\n    pass\n"}
    config = make_project(tmp_path, files)
    text = config.read_text().replace(
        '"*ConnectionManager*"]', '"*ConnectionManager*", "*ManagerConfig"]'
    )
    config.write_text(text)
    assert [(f.rule, f.line) for f in run(config).findings] == [("SSOT001", 1)]


def test_canonical_kind_is_included_implicitly(tmp_path: Path) -> None:
    files = {
        "src/wire/manager.py": """\
            from typing import Protocol


            class WebSocketManager(Protocol):
                def add(self, key: str) -> None: ...


            def create_manager() -> None:
                return None
            """,
        "src/app/other.py": """\
            from typing import Protocol


            class LegacyWebSocketManager(Protocol):
                def add(self, key: str) -> None: ...
            """,
    }
    assert project_hits(tmp_path, files, "SSOT001") == [("src/app/other.py", 4)]


def test_role_suffix_helper() -> None:
    roles = ("Factory", "Mode")
    assert role_suffix("WebSocketManagerFactory", roles) == "Factory"
    assert role_suffix("_WebSocketManagerMode", roles) == "Mode"
    assert role_suffix("Factory", roles) is None
    assert role_suffix("WebSocketManagerModel", roles) is None
    assert role_suffix("Commode", roles) is None


# -- unrelated look-alikes ------------------------------------------------------

MANAGER = """\
    class WebSocketManager:
        def __init__(self, limit: int) -> None:
            self.limit = limit
            self.connections: dict[str, object] = {}

        def add(self, key: str, conn: object) -> None:
            self.connections[key] = conn

        def remove(self, key: str) -> object | None:
            return self.connections.pop(key, None)

        def send_to_user(self, user: str, data: bytes) -> None:
            self.connections[user].send(data)

        def broadcast(self, data: bytes) -> None:
            for conn in self.connections.values():
                conn.send(data)

        def close(self) -> None:
            self.connections.clear()


    def create_manager(limit: int = 100) -> WebSocketManager:
        return WebSocketManager(limit)
    """

DATABASE = """\
    class DatabaseConnectionManager:
        def __init__(self, url: str) -> None:
            self.url = url

        def engine(self) -> object:
            return object()

        def session(self) -> object:
            return object()

        def migrate(self) -> None:
            pass

        def close(self) -> None:
            pass
    """


def test_unrelated_lookalike_with_its_own_interface_is_silent(tmp_path: Path) -> None:
    files = {"src/wire/manager.py": MANAGER, "src/app/db.py": DATABASE}
    assert project_hits(tmp_path, files, "SSOT001") == []
    assert project_hits(tmp_path, files, "SSOT002") == []


def test_lookalike_that_refers_to_the_concept_is_reported(tmp_path: Path) -> None:
    adapter = """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from wire import WebSocketManager


        class WebSocketManagerAdapter:
            def __init__(self, inner: "WebSocketManager") -> None:
                self._inner = inner

            def notify_started(self) -> None:
                pass

            def notify_done(self) -> None:
                pass

            def notify_failed(self) -> None:
                pass
        """
    files = {"src/wire/manager.py": MANAGER, "src/app/adapter.py": adapter}
    assert project_hits(tmp_path, files, "SSOT001") == [("src/app/adapter.py", 7)]


def test_lookalike_with_a_small_interface_is_reported(tmp_path: Path) -> None:
    files = {
        "src/wire/manager.py": MANAGER,
        "src/app/db.py": DATABASE.replace(
            "\n        def migrate(self) -> None:\n            pass\n", ""
        ).replace("\n        def session(self) -> object:\n            return object()\n", ""),
    }
    assert project_hits(tmp_path, files, "SSOT001") == [("src/app/db.py", 1)]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("similarity", "0", "expected a number in (0, 1]"),
        ("similarity", "1.5", "expected a number in (0, 1]"),
        ("similarity", '"high"', "expected a number in (0, 1], got str"),
        ("roles", '["Factory", "not a suffix"]', "roles[1]: expected a class-name suffix"),
    ],
)
def test_bad_top_level_options(tmp_path: Path, key: str, value: str, message: str) -> None:
    config = make_project(tmp_path, extra_config=f"{key} = {value}\n")
    with pytest.raises(ConfigError, match=re.escape(f"tool.ssotcheck.{key}")):
        run(config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(config)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('include = ["enum", "a-b"]', r"include\[1\]: expected a kind"),
        ("include = 3", "include: expected a list of strings"),
        ("similarity = -1", "similarity: expected a number"),
    ],
)
def test_bad_concept_options(tmp_path: Path, line: str, message: str) -> None:
    config = make_project(tmp_path, concept_config=line + "\n")
    with pytest.raises(ConfigError, match=r"concepts\[0\]\." + message):
        run(config)
