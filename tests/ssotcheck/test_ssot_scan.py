"""Per-file summary extraction, fingerprints, discovery and graph helpers."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from ssotcheck.config import load_config
from ssotcheck.discovery import discover, module_name
from ssotcheck.graph import cycle_through, strongly_connected
from ssotcheck.normalize import fingerprint
from ssotcheck.scan import summarize
from ssotcheck.summary import FileSummary
from ssotcheck.testing import make_project, write


def _summary(source: str) -> FileSummary:
    return summarize(textwrap.dedent(source).encode())


def _func(source: str) -> ast.FunctionDef:
    node = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def test_fingerprint_ignores_names_constants_and_docstrings() -> None:
    a = _func('''\
        def f(self, x):
            """Doc."""
            if x > 10:
                return self.items.get(x, "a")
            return None
        ''')
    b = _func("""\
        def other(me, key):
            if key > 99:
                return me.things.get(key, "zzz")
            return None
        """)
    c = _func("""\
        def f(self, x):
            if x > 10:
                return self.items.get(x)
            return None
        """)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a)[0] != fingerprint(c)[0]


def test_fingerprint_keeps_identifier_identity() -> None:
    same = _func("def f(a, b):\n    return a + a\n")
    mixed = _func("def f(a, b):\n    return a + b\n")
    assert fingerprint(same)[0] != fingerprint(mixed)[0]


def test_summary_records_imports_with_context() -> None:
    s = _summary("""\
        from __future__ import annotations
        import a.b as c
        from ..pkg import thing as other
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from x import Y

        def f():
            import lazy
        """)
    rows = [
        (i.module, i.name, i.asname, i.level, i.type_checking, i.in_function) for i in s.imports
    ]
    assert rows == [
        ("a.b", None, "c", 0, False, False),
        ("pkg", "thing", "other", 2, False, False),
        ("typing", "TYPE_CHECKING", None, 0, False, False),
        ("x", "Y", None, 0, True, False),
        ("lazy", None, None, 0, False, True),
    ]


def test_summary_literals_skip_docstrings_fstrings_and_bools() -> None:
    s = _summary('''\
        """Module doc with 12345 and a long string."""
        X = 12345
        Y = -12.5
        Z = True
        W = f"text-part {X}"
        "a bare string statement"
        V = "kept string"
        def f(a=99):
            """Function doc."""
        ''')
    assert [(lit.value, lit.line) for lit in s.literals] == [
        (12345, 2),
        (-12.5, 3),
        ("kept string", 7),
        (99, 8),
    ]


def test_summary_env_detection_follows_os_bindings() -> None:
    s = _summary("""\
        import os.path
        import os as system
        from os import environ as env_map
        environ = {}
        a = os.environ
        b = system.getenv("X")
        c = environ.get("Y")
        d = os.path.join("a")
        """)
    assert [(e.what, e.line) for e in s.env] == [
        ("from os import environ", 3),
        ("os.environ", 5),
        ("os.getenv", 6),
    ]


def test_summary_calls_are_limited_to_bound_roots() -> None:
    s = _summary("""\
        from m import Thing
        Alias = Thing
        Thing(1)
        Alias(2)
        print(3)
        local.method(4)
        """)
    assert [c.func for c in s.calls] == ["Thing", "Alias"]


def test_summary_class_defaults_and_exports() -> None:
    s = _summary("""\
        class Settings:
            a: int = 30
            b: str = Field(default="hello")
            c = 40
            d: float = field(default_factory=list)
        __all__ = ["Settings"]
        __all__ += ["extra"]
        """)
    assert s.classes[0].defaults == (("a", 30), ("b", "hello"), ("c", 40))
    assert [e.name for e in s.exports] == ["Settings", "extra"]


def test_syntax_error_is_captured() -> None:
    s = summarize(b"x = 1\nclass :\n")
    assert s.error is not None and s.error.line == 2
    assert s.lines == 2 and s.classes == ()


def test_module_names(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    write(tmp_path, "tools/pkg/__init__.py", "")
    write(tmp_path, "tools/pkg/mod.py", "")
    roots = load_config(config).paths
    assert module_name(tmp_path / "src/wire/__init__.py", roots) == ("wire", True)
    assert module_name(tmp_path / "src/wire/manager.py", roots) == ("wire.manager", False)
    assert module_name(tmp_path / "tools/pkg/mod.py", roots) == ("pkg.mod", False)
    package_root = ((tmp_path / "src" / "wire").resolve(),)
    assert module_name(tmp_path / "src/wire/manager.py", package_root) == (
        "wire.manager",
        False,
    )
    found = discover(load_config(config), [tmp_path / "tools"])
    reported = sorted(f.module for f in found if f.report)
    assert reported == ["pkg", "pkg.mod"]
    assert "wire.manager" in {f.module for f in found}


def test_strongly_connected_components() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": ["e"], "e": ["d"], "f": []}
    assert strongly_connected(graph) == [["a", "b", "c"], ["d", "e"], ["f"]]
    assert cycle_through(graph, "a", "b", {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_strongly_connected_handles_deep_chains() -> None:
    n = 5000
    graph = {str(i): [str(i + 1)] for i in range(n)}
    graph[str(n)] = ["0"]
    [comp] = strongly_connected(graph)
    assert len(comp) == n + 1


def test_fingerprint_renames_consistently_across_signature_and_body() -> None:
    uses_arg = _func("def f(self, x):\n    return x + 1\n")
    uses_other = _func("def f(self, x):\n    return y + 1\n")
    assert fingerprint(uses_arg)[0] != fingerprint(uses_other)[0]
