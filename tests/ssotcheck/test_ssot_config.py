"""Configuration validation: every error names the offending key, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssotcheck import ConfigError, check
from ssotcheck.cli import main
from ssotcheck.config import DEFAULT_IGNORE_LITERALS, load_config
from ssotcheck.testing import make_project, write


def _edit(config: Path, old: str, new: str) -> Path:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    return config


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('paths = ["src"]', 'paths = ["src"]\ncolour = "blue"', "tool.ssotcheck.colour"),
        ('paths = ["src"]\n', "", "tool.ssotcheck.paths"),
        ('paths = ["src"]', 'paths = "src"', "tool.ssotcheck.paths"),
        ('paths = ["src"]', 'paths = ["nope"]', "tool.ssotcheck.paths"),
        ('name = "manager"\n', "", "tool.ssotcheck.concepts[0].name"),
        (
            'canonical = "wire.manager:WebSocketManager"\n',
            "",
            "tool.ssotcheck.concepts[0].canonical",
        ),
        ('public = "wire"', 'public = "wire"\nowner = "me"', "tool.ssotcheck.concepts[0].owner"),
        (
            'patterns = ["*WebSocket*Manager*", "*ConnectionManager*"]',
            "patterns = [1]",
            "tool.ssotcheck.concepts[0].patterns[0]",
        ),
        (
            'canonical = "wire.manager:WebSocketManager"',
            'canonical = "wire.manager"',
            "tool.ssotcheck.concepts[0].canonical",
        ),
        ('config_module = "wire.config"', "config_module = 3", "tool.ssotcheck.config_module"),
        (
            'paths = ["src"]',
            'paths = ["src"]\nignore_literals = [[1]]',
            "tool.ssotcheck.ignore_literals[0]",
        ),
    ],
)
def test_static_config_errors_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    config = _edit(make_project(tmp_path), old, new)
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert str(err.value).startswith(key + ":")
    assert main(["--config", str(config), "--no-cache"]) == 2


@pytest.mark.parametrize(
    ("old", "new", "key", "detail"),
    [
        (
            'canonical = "wire.manager:WebSocketManager"',
            'canonical = "wire.missing:WebSocketManager"',
            "tool.ssotcheck.concepts[0].canonical",
            "not found",
        ),
        (
            'canonical = "wire.manager:WebSocketManager"',
            'canonical = "wire.manager:Nope"',
            "tool.ssotcheck.concepts[0].canonical",
            "Nope",
        ),
        (
            'factory = "wire.manager:create_manager"',
            'factory = "wire.manager:make"',
            "tool.ssotcheck.concepts[0].factory",
            "make",
        ),
        (
            'public = "wire"',
            'public = "wire.config"',
            "tool.ssotcheck.concepts[0].public",
            "does not expose",
        ),
        (
            'config_module = "wire.config"',
            'config_module = "wire.cfg"',
            "tool.ssotcheck.config_module",
            "wire.cfg",
        ),
        (
            'config_defaults = "wire.config:Settings"',
            'config_defaults = "wire.config:Nope"',
            "tool.ssotcheck.config_defaults",
            "Nope",
        ),
    ],
)
def test_targets_must_exist(
    tmp_path: Path, old: str, new: str, key: str, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _edit(make_project(tmp_path), old, new)
    with pytest.raises(ConfigError) as err:
        check(config, use_cache=False)
    assert str(err.value).startswith(key + ":")
    assert detail in str(err.value)
    assert main(["--config", str(config), "--no-cache"]) == 2
    assert key in capsys.readouterr().err


def test_missing_table_and_bad_toml(tmp_path: Path) -> None:
    config = write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"^tool\.ssotcheck: missing table"):
        load_config(config)
    write(tmp_path, "pyproject.toml", "[tool.ssotcheck\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(config)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_valid_config_is_resolved_relative_to_its_directory(tmp_path: Path) -> None:
    config = make_project(tmp_path, extra_config='ignore_literals = [12345]\nexclude = ["*/gen/*"]')
    cfg = load_config(config)
    assert cfg.root == tmp_path.resolve()
    assert cfg.paths == ((tmp_path / "src").resolve(),)
    assert cfg.concepts[0].canonical.dotted == "wire.manager.WebSocketManager"
    assert cfg.concepts[0].class_name == "WebSocketManager"
    assert 12345 in cfg.ignore_literals and DEFAULT_IGNORE_LITERALS <= cfg.ignore_literals
    assert cfg.exclude == ("*/gen/*",)


def test_exclude_patterns_skip_files(tmp_path: Path) -> None:
    files = {"src/gen/dup.py": "class ConnectionManager:\n    pass\n"}
    config = make_project(tmp_path, files)
    assert len(check(config, use_cache=False).findings) == 1
    _edit(config, 'paths = ["src"]', 'paths = ["src"]\nexclude = ["src/gen"]')
    assert check(config, use_cache=False).findings == []
