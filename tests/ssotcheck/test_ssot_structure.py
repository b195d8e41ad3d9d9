"""SSOT002 by structure: a class with the concept's interface, whatever its name."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ssotcheck.normalize import class_digests
from ssotcheck.scan import summarize
from ssotcheck.testing import make_project, project_hits, run

MANAGER = """\
    class WebSocketManager:
        def __init__(self, limit: int) -> None:
            self.limit = limit
            self.connections: dict[str, object] = {}

        def add_connection(self, key: str, conn: object) -> None:
            self.connections[key] = conn

        def remove_connection(self, key: str) -> object | None:
            return self.connections.pop(key, None)

        def send_to_user(self, user: str, data: bytes) -> None:
            self.connections[user].send(data)

        def send_to_thread(self, thread: str, data: bytes) -> None:
            for key, conn in self.connections.items():
                if key.startswith(thread):
                    conn.send(data)

        def broadcast(self, data: bytes) -> None:
            for conn in self.connections.values():
                conn.send(data)

        def close(self) -> None:
            self.connections.clear()


    def create_manager(limit: int = 100) -> WebSocketManager:
        return WebSocketManager(limit)
    """

# Same interface, bodies written differently: no method has the canonical's structure.
HUB = """\
    class SessionHub:
        def __init__(self, limit: int) -> None:
            self.limit = limit
            self.connections = []

        def add_connection(self, key: str, conn: object) -> None:
            self.connections.append((key, conn))

        def remove_connection(self, key: str) -> None:
            self.connections = [c for c in self.connections if c[0] != key]

        def send_to_user(self, user: str, data: bytes) -> None:
            for key, conn in self.connections:
                if key == user:
                    conn.send(data)

        def send_to_thread(self, thread: str, data: bytes) -> None:
            pass

        def broadcast(self, data: bytes) -> None:
            [conn.send(data) for _, conn in self.connections]

        def close(self) -> None:
            self.connections = []
    """


def _hits(tmp_path: Path, files: dict[str, str], **kwargs: str) -> list[tuple[str, int]]:
    return project_hits(tmp_path, {"src/wire/manager.py": MANAGER, **files}, "SSOT002", **kwargs)


def test_renamed_structural_copy_is_reported_with_the_overlap(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"src/wire/manager.py": MANAGER, "src/app/hub.py": HUB})
    [finding] = [f for f in run(config).findings if f.rule == "SSOT002"]
    assert (finding.path, finding.line, finding.symbol) == (
        "src/app/hub.py",
        1,
        "SessionHub~manager",
    )
    assert "has the interface of concept 'manager'" in finding.message
    assert "8 shared public members, overlap 1.00 >= 0.60" in finding.message
    assert "add_connection, broadcast, close, connections, limit" in finding.message


def test_threshold_is_configurable_globally_and_per_concept(tmp_path: Path) -> None:
    partial = HUB.replace(
        "        def close(self) -> None:\n            self.connections = []\n", ""
    )
    partial = partial.replace("self.limit = limit", "self.size = limit")
    partial += textwrap.indent(
        textwrap.dedent("""
            def flush(self) -> None:
                pass

            def resize(self, n: int) -> None:
                pass
        """),
        "    ",
    )
    files = {"src/app/hub.py": partial}
    assert _hits(tmp_path, files) == [("src/app/hub.py", 1)]
    assert _hits(tmp_path, files, extra_config="similarity = 0.95\n") == []
    assert _hits(tmp_path, files, concept_config="similarity = 0.95\n") == []
    assert _hits(
        tmp_path, files, extra_config="similarity = 0.95\n", concept_config="similarity = 0.5\n"
    ) == [("src/app/hub.py", 1)]


def test_sharing_only_generic_members_is_not_a_copy(tmp_path: Path) -> None:
    generic = "\n\n".join(
        f"class Thing{i}:\n    def add_connection(self):\n        pass\n\n"
        f"    def remove_connection(self):\n        pass\n\n    def close(self):\n        pass\n\n"
        f"    def own_{i}(self):\n        pass\n"
        for i in range(12)
    )
    assert _hits(tmp_path, {"src/app/things.py": generic}) == []


def test_rare_members_weigh_more_than_common_ones(tmp_path: Path) -> None:
    common = "\n\n".join(
        f"class Thing{i}:\n    def add_connection(self):\n        pass\n\n"
        f"    def close(self):\n        pass\n"
        for i in range(12)
    )
    generic_three = (
        "class Pool:\n    def add_connection(self): ...\n    def remove_connection(self): ...\n"
        "    def close(self): ...\n    def stats(self): ...\n    def drain(self): ...\n"
    )
    rare_three = (
        "class Relay:\n    def send_to_user(self): ...\n    def send_to_thread(self): ...\n"
        "    def broadcast(self): ...\n    def stats(self): ...\n    def drain(self): ...\n"
    )
    files = {
        "src/app/common.py": common,
        "src/app/pool.py": generic_three,
        "src/app/relay.py": rare_three,
    }
    assert _hits(tmp_path, files) == [("src/app/relay.py", 1)]


def test_two_shared_methods_are_never_enough(tmp_path: Path) -> None:
    two = "class Relay:\n    def send_to_user(self): ...\n    def send_to_thread(self): ...\n"
    assert _hits(tmp_path, {"src/app/relay.py": two}) == []


def test_subclasses_wrappers_and_roles_are_not_copies(tmp_path: Path) -> None:
    files = {
        "src/app/sub.py": "from wire import WebSocketManager\n\n\n"
        + textwrap.dedent(HUB).replace("class SessionHub:", "class Tracing(WebSocketManager):"),
        "src/app/wrap.py": """\
            from wire import WebSocketManager, create_manager


            class Facade:
                def __init__(self) -> None:
                    self.inner: WebSocketManager = create_manager()

                def add_connection(self, key, conn):
                    self.inner.add_connection(key, conn)

                def remove_connection(self, key):
                    return self.inner.remove_connection(key)

                def send_to_user(self, user, data):
                    self.inner.send_to_user(user, data)

                def broadcast(self, data):
                    self.inner.broadcast(data)
            """,
        "src/app/proto.py": "from typing import Protocol\n\n\n"
        + textwrap.dedent(HUB).replace("class SessionHub:", "class Sending(Protocol):"),
    }
    assert _hits(tmp_path, files) == []


def test_implementations_of_a_protocol_concept_are_not_copies(tmp_path: Path) -> None:
    proto = "from typing import Protocol\n\n\n" + textwrap.dedent(MANAGER).replace(
        "class WebSocketManager:", "class WebSocketManager(Protocol):"
    )
    files = {"src/wire/manager.py": proto, "src/app/hub.py": HUB}
    assert project_hits(tmp_path, files, "SSOT002") == []


def test_a_name_match_is_reported_once_under_ssot001(tmp_path: Path) -> None:
    files = {
        "src/wire/manager.py": MANAGER,
        "src/app/hub.py": HUB.replace("SessionHub", "LegacyWebSocketManager"),
    }
    report = run(make_project(tmp_path, files))
    assert [(f.rule, f.path) for f in report.findings] == [("SSOT001", "src/app/hub.py")]


# -- the facts behind it -------------------------------------------------------


def test_summary_records_bases_attributes_refs_and_method_kinds() -> None:
    source = textwrap.dedent("""\
        import abc
        from typing import TYPE_CHECKING, Generic, TypeVar
        from wire import WebSocketManager as WSM

        if TYPE_CHECKING:
            from app import Other

        T = TypeVar("T")


        class Thing(Generic[T], abc.ABC, metaclass=abc.ABCMeta):
            kind: str = "thing"
            _hidden = 1
            count = 0

            def __init__(self, manager: "WSM", other: "Other | None" = None) -> None:
                self.manager = manager
                self._private = other
                self.size: int = 3

            @abc.abstractmethod
            def run(self) -> None:
                '''Run.'''

            def stop(self) -> None:
                raise NotImplementedError()

            @staticmethod
            def helper(x):
                x.ignored = 1
                return local_only
        """)
    [cls] = summarize(source.encode()).classes
    assert cls.bases == ("Generic", "abc.ABC")
    assert cls.metaclass == "abc.ABCMeta"
    assert cls.attrs == ("count", "kind", "manager", "size")
    assert set(cls.refs) >= {"WSM", "Other", "abc.ABC", "abc.ABCMeta", "abc.abstractmethod"}
    assert "local_only" not in cls.refs
    methods = {m.name: (m.stub, m.abstract) for m in cls.methods}
    assert methods == {
        "__init__": (False, False),
        "run": (True, True),
        "stop": (True, False),
        "helper": (False, False),
    }
    assert cls.members == {"run", "stop", "helper", "count", "kind", "manager", "size"}


def test_shapes_survive_renaming_and_digests_are_exact() -> None:
    a = b"class A:\n    def f(self, x):\n        '''Doc.'''\n        return self.items.get(x, 1)\n"
    b = b"class B:\n    def g(me, key):\n        return me.things.get(key, 99)\n"
    c = b"class C:\n    def f(self, x):\n        return self.items.get(x, x)\n"
    [ma], [mb], [mc] = (summarize(s).classes[0].methods for s in (a, b, c))
    assert ma.shape == mb.shape == mc.shape  # same counts ...
    da = class_digests(a, ["A"])["A"]["f"]
    db = class_digests(b, ["B"])["B"]["g"]
    dc = class_digests(c, ["C"])["C"]["f"]
    assert da == db and da != dc  # ... but only the true copy has the same digest


def test_class_digests_finds_nested_classes_and_tolerates_broken_files() -> None:
    source = b"def outer():\n    class Inner:\n        def m(self):\n            return 1\n"
    assert set(class_digests(source, ["outer.Inner"])["outer.Inner"]) == {"m"}
    assert class_digests(b"def (:\n", ["X"]) == {}
