"""What a started gateway tells the person who started it.

One banner for ``runwire serve`` and for a :class:`~runwire.app.Gateway` embedded in
a script: the address it really listens on and, in dev mode, commands that work as
typed in this shell (the ``runwire`` of this environment, the real host and port).
The gateway logs it on the ``runwire.banner`` logger: at WARNING in dev mode with a
generated secret (Python's last-resort handler shows it even when logging is not
configured), else at INFO. ``runwire serve`` prints that logger on stdout.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from runwire.config import Mode, Settings

__all__ = ["BANNER_LOGGER", "banner", "dev_warning", "runwire_command"]

BANNER_LOGGER = "runwire.banner"
TRY_MESSAGE = '"what is 17 * 23?"'


def _as_typed(path: Path) -> str:
    """``path`` relative to the current folder when under it (``.venv/bin/runwire``),
    else absolute."""
    try:
        relative = path.absolute().relative_to(Path.cwd())
    except ValueError:
        return str(path.absolute())
    return str(relative) if relative.parent != Path(".") else f"./{relative}"


def runwire_command() -> str:
    """How to type this environment's ``runwire`` command here.

    ``runwire`` when the one found on the PATH is this environment's; else the path of
    this environment's script (``.venv/bin/runwire``); else ``python -m runwire``
    with this interpreter.
    """
    script = Path(sys.executable).with_name("runwire")
    found = shutil.which("runwire")
    if found is not None and script.exists() and Path(found).resolve() == script.resolve():
        return "runwire"
    if script.exists():
        return _as_typed(script)
    return f"{_as_typed(Path(sys.executable))} -m runwire"


def dev_warning(settings: Settings) -> str | None:
    """The dev-mode warning, naming the secret's file; None unless the gateway signs
    with a generated secret."""
    if settings.mode is not Mode.DEV or settings.auth_secret is not None:
        return None
    return (
        "WARNING: runwire is in DEV mode: tokens are signed with a generated secret kept in"
        f" {settings.state_dir / 'dev-secret'}. Never expose this gateway;"
        " set RUNWIRE_MODE=production and RUNWIRE_AUTH_SECRET."
    )


def banner(settings: Settings, url: str, ws_url: str) -> list[str]:
    """The lines announcing a gateway listening on ``url`` (``ws_url`` for sockets)."""
    lines = [
        f"runwire {settings.mode.value} gateway on {url}",
        f"  chat page:  {url}/",
        f"  WebSocket:  {ws_url}",
    ]
    if settings.mode is Mode.DEV:
        command = runwire_command()
        default = Settings.model_fields
        default_ws = f"ws://{default['host'].default}:{default['port'].default}/ws"
        # `runwire chat` derives its URL from the defaults: name it when it differs.
        target = "" if ws_url == default_ws else f" --url {ws_url}"
        lines.append(f"  dev token:  {command} token alice")
        lines.append(f"  try it:     {command} chat{target} --user alice {TRY_MESSAGE}")
    warning = dev_warning(settings)
    if warning is not None:
        lines.append(warning)
    return lines
