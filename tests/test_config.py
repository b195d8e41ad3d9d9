"""Settings and load_settings: one object, one set of defaults, validated at start-up."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from runwire import Settings
from runwire.config import Mode, load_settings, masked_settings, redacted_url
from runwire.exceptions import ConfigError

SECRET = "s" * 40
PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n"


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- defaults ------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()

    assert settings.host == "127.0.0.1"
    assert settings.port == 8765
    assert settings.public_url is None
    assert settings.mode is Mode.DEV
    assert settings.engine == "sqlite:///.runwire/runwire.db"
    assert settings.agent == "runwire.agents.demo:demo_agent"
    # Per user (conftest points XDG_CONFIG_HOME into tmp_path), not per folder.
    assert settings.state_dir == tmp_path / "config" / "runwire"
    assert settings.log_level == "info"
    assert settings.auth_secret is None
    assert settings.auth_public_key is None
    assert settings.auth_algorithm == "HS256"
    assert settings.auth_issuer is None
    assert settings.auth_audience is None
    assert settings.auth_leeway_s == 0.0
    assert settings.dev_token_ttl_s == 86_400
    assert settings.max_frame_bytes == 65_536
    assert settings.max_message_chars == 16_000
    assert settings.max_connections_per_user == 10
    assert settings.max_connections == 20_000
    assert settings.outbound_queue_events == 480
    assert settings.outbound_queue_bytes == 524_288
    assert settings.client_messages_per_s == 20.0
    assert settings.max_concurrent_runs_per_user == 3
    assert settings.max_active_runs == 10_000
    assert settings.run_timeout_s == 300.0
    assert settings.idempotency_keys == 100_000
    assert settings.history_max_events == 1_000
    assert settings.history_max_bytes == 1_048_576
    assert settings.history_ttl_s == 3_600.0
    assert settings.history_max_users == 100_000
    assert settings.heartbeat_interval_s == 20.0
    assert settings.heartbeat_timeout_s == 20.0
    assert settings.handshake_timeout_s == 5.0
    assert settings.shutdown_grace_s == 5.0


def test_every_field_has_a_default_and_a_description() -> None:
    # load_settings() with nothing configured must succeed: every field has its one default.
    settings = load_settings()
    for name, field in Settings.model_fields.items():
        assert not field.is_required(), name
        assert field.description, name
        assert hasattr(settings, name)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]
    assert settings.port == 8765


def test_base_url_derived_from_host_and_port_unless_public_url_set() -> None:
    assert load_settings(host="0.0.0.0", port=9000).base_url == "http://0.0.0.0:9000"
    assert load_settings(public_url="https://chat.example").base_url == "https://chat.example"


# -- environment -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("RUNWIRE_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("RUNWIRE_PORT", "9001", "port", 9001),
        ("RUNWIRE_ENGINE", "redis://localhost:6379/0", "engine", "redis://localhost:6379/0"),
        ("RUNWIRE_LOG_LEVEL", "debug", "log_level", "debug"),
        ("RUNWIRE_STATE_DIR", "/var/lib/runwire", "state_dir", Path("/var/lib/runwire")),
        ("RUNWIRE_HISTORY_TTL_S", "1.5", "history_ttl_s", 1.5),
        ("RUNWIRE_MAX_FRAME_BYTES", "2048", "max_frame_bytes", 2048),
        ("RUNWIRE_CLIENT_MESSAGES_PER_S", "0.5", "client_messages_per_s", 0.5),
        ("RUNWIRE_AUTH_ALGORITHM", "HS512", "auth_algorithm", "HS512"),
        ("RUNWIRE_AUTH_ISSUER", "issuer", "auth_issuer", "issuer"),
    ],
)
def test_environment_overrides_default(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(load_settings(), field) == expected


def test_environment_sets_mode_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWIRE_MODE", "production")
    monkeypatch.setenv("RUNWIRE_AUTH_SECRET", SECRET)

    settings = load_settings()

    assert settings.mode is Mode.PRODUCTION
    assert isinstance(settings.auth_secret, SecretStr)
    assert settings.auth_secret.get_secret_value() == SECRET
    assert settings.signing_secret() == SECRET


def test_environment_without_prefix_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9002")
    monkeypatch.setenv("HOST", "0.0.0.0")
    settings = load_settings()
    assert settings.port == 8765
    assert settings.host == "127.0.0.1"


# -- TOML file -----------------------------------------------------------------


def test_toml_file_via_argument(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "runwire.toml",
        'port = 9100\nhost = "0.0.0.0"\nhistory_max_events = 50\nlog_level = "warning"\n',
    )

    settings = load_settings(config_file=config)

    assert settings.port == 9100
    assert settings.host == "0.0.0.0"
    assert settings.history_max_events == 50
    assert settings.log_level == "warning"
    assert settings.engine == "sqlite:///.runwire/runwire.db"  # untouched fields keep their default


def test_toml_file_via_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_toml(tmp_path / "runwire.toml", "port = 9200\n")
    monkeypatch.setenv("RUNWIRE_CONFIG_FILE", str(config))

    assert load_settings().port == 9200


def test_config_file_argument_wins_over_environment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write_toml(tmp_path / "env.toml", 'port = 9300\nhost = "10.0.0.1"\n')
    from_arg = write_toml(tmp_path / "arg.toml", "port = 9400\n")
    monkeypatch.setenv("RUNWIRE_CONFIG_FILE", str(from_env))

    settings = load_settings(config_file=from_arg)

    assert settings.port == 9400
    assert settings.host == "127.0.0.1"  # the environment's file is not read at all


def test_toml_file_is_not_remembered_by_later_loads(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "runwire.toml", "port = 9500\n")
    assert load_settings(config_file=config).port == 9500
    assert load_settings().port == 8765
    assert Settings().port == 8765


def test_missing_toml_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RUNWIRE_CONFIG_FILE") as info:
        load_settings(config_file=tmp_path / "absent.toml")
    assert "absent.toml" in str(info.value)


def test_missing_toml_file_from_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWIRE_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="RUNWIRE_CONFIG_FILE"):
        load_settings()


def test_invalid_toml_names_the_variable(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "broken.toml", "port = = 1\n")
    with pytest.raises(ConfigError, match="RUNWIRE_CONFIG_FILE") as info:
        load_settings(config_file=config)
    assert "not valid TOML" in str(info.value)


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "runwire.toml", "prot = 9000\n")
    with pytest.raises(ConfigError, match="RUNWIRE_PROT"):
        load_settings(config_file=config)


def test_unknown_keyword_is_rejected() -> None:
    with pytest.raises(ConfigError, match="RUNWIRE_PROT"):
        load_settings(prot=9000)


# -- priority ------------------------------------------------------------------


def test_priority_kwargs_over_env_over_toml_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_toml(
        tmp_path / "runwire.toml",
        'port = 1001\nhost = "10.0.0.1"\nhistory_max_events = 11\n',
    )
    monkeypatch.setenv("RUNWIRE_CONFIG_FILE", str(config))
    monkeypatch.setenv("RUNWIRE_PORT", "1002")
    monkeypatch.setenv("RUNWIRE_HOST", "10.0.0.2")

    settings = load_settings(port=1003)

    assert settings.port == 1003  # kwargs beat env and TOML
    assert settings.host == "10.0.0.2"  # env beats TOML
    assert settings.history_max_events == 11  # TOML beats the default
    assert settings.history_max_bytes == 1_048_576  # the default when nothing is set


@pytest.mark.parametrize(
    ("use_toml", "use_env", "use_kwarg", "expected"),
    [
        (False, False, False, 8765),
        (True, False, False, 1001),
        (True, True, False, 1002),
        (False, True, False, 1002),
        (True, True, True, 1003),
        (True, False, True, 1003),
        (False, False, True, 1003),
    ],
)
def test_priority_per_source(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_toml: bool,
    use_env: bool,
    use_kwarg: bool,
    expected: int,
) -> None:
    if use_toml:
        monkeypatch.setenv(
            "RUNWIRE_CONFIG_FILE", str(write_toml(tmp_path / "c.toml", "port = 1001\n"))
        )
    if use_env:
        monkeypatch.setenv("RUNWIRE_PORT", "1002")
    kwargs: dict[str, Any] = {"port": 1003} if use_kwarg else {}

    assert load_settings(**kwargs).port == expected


# -- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("RUNWIRE_PORT", "not-a-number"),
        ("RUNWIRE_PORT", "70000"),
        ("RUNWIRE_PORT", "-1"),
        ("RUNWIRE_MODE", "staging"),
        ("RUNWIRE_LOG_LEVEL", "verbose"),
        ("RUNWIRE_AUTH_ALGORITHM", "none"),
        ("RUNWIRE_MAX_FRAME_BYTES", "10"),
        ("RUNWIRE_OUTBOUND_QUEUE_EVENTS", "1"),
        ("RUNWIRE_CLIENT_MESSAGES_PER_S", "0"),
        ("RUNWIRE_HISTORY_TTL_S", "-5"),
        ("RUNWIRE_AUTH_LEEWAY_S", "301"),
        ("RUNWIRE_DEV_TOKEN_TTL_S", "0"),
        ("RUNWIRE_TOKEN_REFRESH_WINDOW_S", "0"),
    ],
)
def test_invalid_env_value_raises_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("invalid configuration: ")
    assert f"{variable}:" in message


def test_invalid_kwarg_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="RUNWIRE_PORT"):
        load_settings(port=-1)


def test_invalid_toml_value_names_the_variable(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "runwire.toml", 'port = "abc"\n')
    with pytest.raises(ConfigError, match="RUNWIRE_PORT"):
        load_settings(config_file=config)


def test_every_invalid_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWIRE_PORT", "abc")
    monkeypatch.setenv("RUNWIRE_HISTORY_MAX_EVENTS", "0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "RUNWIRE_PORT" in str(info.value)
    assert "RUNWIRE_HISTORY_MAX_EVENTS" in str(info.value)


def test_config_error_does_not_leak_pydantic_validation_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(port="abc")
    assert not isinstance(info.value, ValidationError)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_production_without_secret_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWIRE_MODE", "production")
    with pytest.raises(ConfigError, match="RUNWIRE_AUTH_SECRET is required in production"):
        load_settings()


def test_production_with_secret_or_public_key_starts() -> None:
    with_secret = load_settings(mode="production", auth_secret=SECRET)
    assert with_secret.mode is Mode.PRODUCTION

    with_key = load_settings(mode="production", auth_algorithm="RS256", auth_public_key=PUBLIC_KEY)
    assert with_key.auth_secret is None
    assert with_key.auth_public_key == PUBLIC_KEY


@pytest.mark.parametrize("mode", ["dev", "production"])
def test_short_secret_fails(mode: str) -> None:
    with pytest.raises(ConfigError, match="RUNWIRE_AUTH_SECRET must be at least 32 characters"):
        load_settings(mode=mode, auth_secret="x" * 31)


def test_short_secret_from_env_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWIRE_AUTH_SECRET", "too-short")
    with pytest.raises(ConfigError, match="RUNWIRE_AUTH_SECRET"):
        load_settings()


def test_secret_of_exactly_32_characters_is_accepted() -> None:
    settings = load_settings(auth_secret="y" * 32)
    assert settings.signing_secret() == "y" * 32


@pytest.mark.parametrize("algorithm", ["RS256", "RS512", "ES256"])
def test_asymmetric_algorithm_without_public_key_fails(algorithm: str) -> None:
    with pytest.raises(ConfigError, match=f"RUNWIRE_AUTH_PUBLIC_KEY is required for {algorithm}"):
        load_settings(auth_algorithm=algorithm)


def test_config_error_message_does_not_contain_the_rejected_secret() -> None:
    short = "short-secret-value"
    with pytest.raises(ConfigError) as info:
        load_settings(auth_secret=short)
    assert short not in str(info.value)


# -- masking ---------------------------------------------------------------------


def test_masked_settings_masks_the_secret(tmp_path: Path) -> None:
    settings = load_settings(auth_secret=SECRET, port=9999)

    masked = masked_settings(settings)

    assert masked["auth_secret"] == "***"
    assert masked["port"] == 9999
    assert masked["mode"] == "dev"
    assert masked["state_dir"] == str(tmp_path / "config" / "runwire")
    assert set(masked) == set(Settings.model_fields)
    assert SECRET not in json.dumps(masked)
    assert SECRET not in repr(masked)


@pytest.mark.parametrize(
    "engine",
    [
        "redis://app:S3cr3t@10.0.0.1:6379/0",
        "redis+cluster://app:S3cr3t@10.0.0.1:7000,10.0.0.2:7000",
    ],
)
def test_masked_settings_mask_the_engine_password(engine: str) -> None:
    masked = masked_settings(load_settings(engine=engine))

    assert "S3cr3t" not in json.dumps(masked)
    assert masked["engine"] == engine.replace("S3cr3t", "***")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://token@h:1", "redis://***@h:1"),
        ("redis://u:p%40ss@h:1/2?x=1", "redis://u:***@h:1/2?x=1"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("memory://", "memory://"),
        ("sqlite:///state/events.db", "sqlite:///state/events.db"),
    ],
)
def test_redacted_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_masked_settings_leaves_unset_secret_as_none() -> None:
    masked = masked_settings(load_settings())
    assert masked["auth_secret"] is None


def test_secret_is_hidden_from_repr_and_str() -> None:
    settings = load_settings(auth_secret=SECRET)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


# -- dev secret --------------------------------------------------------------------


def test_dev_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    settings = load_settings(state_dir=state_dir)
    path = state_dir / "dev-secret"
    assert not path.exists()

    first = settings.signing_secret()

    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first
    assert len(first) >= 32
    mtime = path.stat().st_mtime_ns
    # Reused by the same settings and by freshly loaded ones (a restart).
    assert settings.signing_secret() == first
    assert load_settings(state_dir=state_dir).signing_secret() == first
    assert path.stat().st_mtime_ns == mtime


def test_dev_secret_differs_per_state_dir(tmp_path: Path) -> None:
    one = load_settings(state_dir=tmp_path / "a").signing_secret()
    two = load_settings(state_dir=tmp_path / "b").signing_secret()
    assert one != two


def test_dev_secret_is_per_user_and_the_same_in_every_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was `.runwire/dev-secret` under the current folder: a gateway started in one
    folder refused (4401) the tokens `runwire token` minted in another."""
    secret = load_settings().signing_secret()
    assert (tmp_path / "config" / "runwire" / "dev-secret").read_text().strip() == secret
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_settings().signing_secret() == secret
    assert not (tmp_path / ".runwire").exists() and not (elsewhere / ".runwire").exists()


def test_without_xdg_config_home_the_dev_secret_is_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings().state_dir == tmp_path / "home" / ".config" / "runwire"


# -- unknown variables ---------------------------------------------------------------


def test_an_unknown_variable_is_a_warning_naming_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("runwire.config._warned", set())
    monkeypatch.setenv("RUNWIRE_PROT", "9999")
    monkeypatch.setenv("RUNWIRE_XYZZY_QUUX_PLUGH", "1")
    with caplog.at_level("WARNING", logger="runwire.config"):
        settings = load_settings()
        load_settings()  # once per process, not per load
    assert settings.port == 8765
    assert [r.getMessage() for r in caplog.records] == [
        "runwire: ignoring RUNWIRE_PROT: no such setting; did you mean RUNWIRE_PORT?",
        "runwire: ignoring RUNWIRE_XYZZY_QUUX_PLUGH: no such setting; see docs/configuration.md",
    ]


def test_known_variables_and_the_config_file_variable_raise_no_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("runwire.config._warned", set())
    monkeypatch.setenv("RUNWIRE_PORT", "9999")
    monkeypatch.setenv("runwire_host", "127.0.0.2")  # matched case-insensitively
    monkeypatch.setenv("RUNWIRE_CONFIG_FILE", str(write_toml(tmp_path / "c.toml", "")))
    with caplog.at_level("WARNING", logger="runwire.config"):
        settings = load_settings()
    assert (settings.port, settings.host) == (9999, "127.0.0.2")
    assert caplog.records == []


def test_configured_secret_never_touches_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    settings = load_settings(auth_secret=SECRET, state_dir=state_dir)
    assert settings.signing_secret() == SECRET
    assert not state_dir.exists()


def test_production_signing_secret_never_generates(tmp_path: Path) -> None:
    # Bypass validation to reach the defensive check in signing_secret().
    settings = Settings.model_construct(
        mode=Mode.PRODUCTION, auth_secret=None, state_dir=tmp_path / "state"
    )
    with pytest.raises(ConfigError, match="RUNWIRE_AUTH_SECRET"):
        settings.signing_secret()
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("content", ["", "\n", "truncated-secret\n", "z" * 31])
def test_empty_or_short_dev_secret_file_is_replaced(tmp_path: Path, content: str) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    path = state_dir / "dev-secret"
    path.write_text(content)

    secret = load_settings(state_dir=state_dir).signing_secret()

    assert len(secret) >= 32
    assert path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings(state_dir=state_dir).signing_secret() == secret
