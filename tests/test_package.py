"""The project installs as a package: a wheel built from it, installed into a fresh
virtualenv outside the repository, runs the whole service with its console scripts."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import aiohttp
import psutil
import pytest

from snippet_service.valkey import free_port
from tests.helpers import HTML, create_via_form, until, wait_for_snippet
from tests.servers import ROOT, base_env

SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "snippet_service", "tasks")
SCRIPTS = ("snippet-service", "snippet-service-web", "snippet-service-worker",
           "snippet-service-highlighter")


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def outside_env(**values: str) -> dict[str, str]:
    """The environment without anything pointing into the repository or its .venv."""
    env = base_env(**values)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "REDIS_URL", "VALKEY_PORT"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep)
                                  if not part.startswith(str(ROOT)))
    return env


def build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    """A wheel built from a copy of the sources (the build leaves nothing in the tree)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
         str(tmp_path / "dist"), str(source)], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    return wheel


@pytest.mark.timeout(600)
async def test_the_wheel_installs_and_runs_outside_the_repository(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    env = outside_env()
    wheel = build_wheel(tmp_path, env)
    names = zipfile.ZipFile(wheel).namelist()
    templates = sorted(p.relative_to(ROOT).as_posix()
                       for p in (ROOT / "snippet_service" / "templates").rglob("*.html"))
    static = sorted(p.relative_to(ROOT).as_posix()
                    for p in (ROOT / "snippet_service" / "static").iterdir())
    assert "snippet_service/templates/jobs/dashboard.html" in templates
    assert set(templates + static) <= set(names), sorted(set(templates + static) - set(names))

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], tmp_path, env)
    for script in SCRIPTS:
        assert (venv / "bin" / script).exists(), script
    place = tmp_path / "place"  # where the service runs: var/ goes here
    place.mkdir()
    where = run([str(python), "-c", "import snippet_service, tasks;"
                 " print(snippet_service.__file__); print(tasks.__file__)"], place, env)
    for path in where.split():
        assert Path(path).is_relative_to(venv) and "site-packages" in path, where
        assert not Path(path).is_relative_to(ROOT), where

    port = free_port()
    service_env = outside_env(PORT=str(port), HIGHLIGHTER_PORT=str(free_port()),
                              VALKEY_PORT=str(free_port()))
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        service = subprocess.Popen([str(venv / "bin" / "snippet-service")], cwd=place,
                                   env=service_env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: f"running at {url}/" in log.read_text() or service.poll() is not None,
                    60, log.read_text)
        assert service.poll() is None, log.read_text()
        started = psutil.Process(service.pid).children(recursive=True)
        for child in started:
            if child.name().startswith("python"):
                assert child.exe().startswith(str(venv)) or Path(child.exe()).resolve() == \
                    python.resolve(), child.cmdline()
        snippet_id = await create_via_form(http, url, "python", "print('installed')\n")
        body = await wait_for_snippet(http, url, snippet_id, timeout=15)
        assert body["status"] == "highlighted", (body, log.read_text())
        assert '<span class="nb">print</span>' in body["highlighted_code"]
        for path in ("/static/site.css", "/highlight.css", f"/snippets/{snippet_id}", "/jobs"):
            async with http.get(url + path, headers=HTML) as response:  # as a browser
                assert response.status == 200, (path, await response.text())
        assert (place / "var" / "snippets.db").exists()

        stopped_at = time.monotonic()
        os.killpg(service.pid, signal.SIGINT)  # Ctrl-C
        _, alive = await asyncio.to_thread(psutil.wait_procs, started, 30)
        assert await asyncio.to_thread(service.wait, 30) == 0
        output = log.read_text()
        assert alive == [] and time.monotonic() - stopped_at < 5, output
        assert "Traceback" not in output, output
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
