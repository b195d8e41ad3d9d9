"""The Node harness: the official front-end clients (``@ag-ui/client``, ``ai``), unmodified.

:func:`harness` installs them once per session (``npm ci`` into
``tests/frontends/node_modules``, pinned by ``package.json`` and its lockfile) and fails
the calling test, saying why, when Node or npm is missing (``make test`` installs
them). :func:`run_node` and :func:`arun_node` run one harness script with a JSON
options object and return the JSON result it prints (the async one for tests whose
server runs on the event loop).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

HARNESS = Path(__file__).parent
LOCKFILE = HARNESS / "package-lock.json"
INSTALLED = HARNESS / "node_modules" / ".package-lock.json"
"""npm's record of what it installed: newer than the lockfile when it is up to date."""


@dataclass(frozen=True, slots=True)
class Harness:
    """Where the clients are installed and the Node binary that runs the scripts."""

    node: str
    directory: Path

    def command(self, script: str, options: dict[str, Any]) -> list[str]:
        """The command line that runs ``script`` (a file of the harness) on ``options``."""
        path = self.directory / script
        if not path.is_file():
            raise FileNotFoundError(path)
        return [self.node, str(path), json.dumps(options)]


@cache
def _install() -> Harness | str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        return (
            f"the front-end client tests need {missing}: run `sudo apt-get install nodejs npm`"
            " (make test does it when run as root)"
        )
    if not INSTALLED.is_file() or INSTALLED.stat().st_mtime < LOCKFILE.stat().st_mtime:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HARNESS,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {HARNESS} failed:\n{result.stderr[-4000:]}")
    return Harness(node, HARNESS)


def harness() -> Harness:
    """The installed harness (``npm ci`` the first time in a session); without Node or
    npm the test fails, naming the command to run (never a silent skip)."""
    installed = _install()
    if isinstance(installed, str):
        pytest.fail(installed, pytrace=False)
    return installed


def bundle(entry: str, out: Path) -> Path:
    """Bundle harness module ``entry`` and the npm packages it imports for the browser
    (esbuild, pinned in package.json; no CDN); returns ``out``.

    Raises:
        AssertionError: esbuild failed.
    """
    installed = harness()
    esbuild = installed.directory / "node_modules" / ".bin" / "esbuild"
    done = subprocess.run(
        [
            str(esbuild),
            str(installed.directory / entry),
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--log-level=warning",
            f"--outfile={out}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"esbuild {entry} failed:\n{done.stderr[-4000:]}")
    return out


def _parsed(script: str, returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        raise AssertionError(f"{script} exited {returncode}:\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = stderr
    return result


def run_node(script: str, options: dict[str, Any], *, timeout: float = 60) -> dict[str, Any]:
    """Run harness ``script`` on ``options``; its JSON result, with its ``stderr`` added.

    Raises:
        AssertionError: the script failed or printed no result.
        subprocess.TimeoutExpired: it ran over ``timeout`` seconds.
    """
    command = harness().command(script, options)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return _parsed(script, done.returncode, done.stdout, done.stderr)


async def arun_node(script: str, options: dict[str, Any], *, timeout: float = 60) -> dict[str, Any]:
    """:func:`run_node` without blocking the event loop (a gateway under test runs on it)."""
    command = harness().command(script, options)
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return _parsed(script, process.returncode, stdout.decode(), stderr.decode())
