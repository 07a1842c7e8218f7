"""colcon discovers and builds the packages from a workspace with the repository in src/; the manifests are
valid; the launch file declares its arguments and builds the node; the config profiles validate."""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from gmos_core.bridge import NodeParams

COLCON = [sys.executable, "-c", "import sys; from colcon_core.command import main; sys.exit(main())"]
NEEDED_COLCON = ("colcon_ros", "colcon_recursive_crawl", "colcon_package_information", "colcon_metadata",
                 "colcon_python_setup_py", "colcon_cmake")


@pytest.fixture(scope="module")
def workspace(repo_root, tmp_path_factory):
    missing = [m for m in NEEDED_COLCON if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"colcon extensions {missing} are not installed; expected `pip install colcon-common-extensions`")
    ws = tmp_path_factory.mktemp("ws")
    (ws / "src").mkdir()
    (ws / "src" / "gmos-ros").symlink_to(repo_root, target_is_directory=True)  # as if cloned into src/
    return ws


def colcon(ws: Path, *args: str, timeout: int = 240, extra_env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLCON_HOME": str(ws / ".colcon"), "COLCON_LOG_PATH": str(ws / "log"), **(extra_env or {})}
    return subprocess.run([*COLCON, *args], cwd=ws, capture_output=True, text=True, timeout=timeout, env=env)


def test_colcon_list_discovers_both_packages_in_dependency_order(workspace):
    proc = colcon(workspace, "list", "--topological-order")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    assert rows == [
        ["gmos_msgs", "src/gmos-ros/gmos_msgs", "(ros.ament_cmake)"],
        ["gmos_ros", "src/gmos-ros/colcon/gmos_ros", "(ros.ament_python)"],
    ]


def test_colcon_builds_gmos_ros_with_node_launch_and_config(workspace, repo_root):
    # gmos_msgs needs the rosidl generators of a ROS install to build; here it is announced as installed
    # in an underlay (an ament index entry is what colcon checks), so colcon builds gmos_ros alone.
    underlay = workspace / "underlay"
    marker = underlay / "share" / "ament_index" / "resource_index" / "packages" / "gmos_msgs"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    (underlay / "local_setup.sh").touch()  # what makes colcon accept it as an ament prefix (like /opt/ros/...)
    proc = colcon(workspace, "build", "--packages-select", "gmos_ros", "--build-base", "build",
                  "--install-base", "install", "--event-handlers", "console_direct-",
                  extra_env={"AMENT_PREFIX_PATH": str(underlay)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prefix = workspace / "install" / "gmos_ros"
    assert (prefix / "lib" / "gmos_ros" / "gmos_node").is_file()  # where `ros2 run gmos_ros gmos_node` looks
    share = prefix / "share" / "gmos_ros"
    assert (share / "launch" / "gmos.launch.py").is_file()
    assert {p.name for p in (share / "config").glob("*.yaml")} == {p.name for p in (repo_root / "config").glob("*.yaml")}
    assert (share / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "gmos_ros").is_file()
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "gmos_ros" / "node.py").is_file() and (site / "gmos_core" / "bridge" / "core.py").is_file()


def test_colcon_mirror_links_resolve_inside_the_repository(repo_root):
    mirror = repo_root / "colcon" / "gmos_ros"
    links = [p for p in mirror.iterdir() if p.is_symlink()]
    assert {p.name for p in links} >= {"package.xml", "setup.py", "resource", "gmos_core", "gmos_ros", "launch",
                                        "config"}
    for link in links:
        assert not os.path.isabs(os.readlink(link)), f"{link.name} must be a relative link"
        assert link.resolve().parent == repo_root.resolve() and link.exists(), link.name


def test_manifests_are_valid_format_3(repo_root):
    from catkin_pkg.package import parse_package

    for path, name, build_type in ((repo_root / "package.xml", "gmos_ros", "ament_python"),
                                   (repo_root / "gmos_msgs" / "package.xml", "gmos_msgs", "ament_cmake")):
        pkg = parse_package(str(path))
        pkg.validate()
        assert (pkg.package_format, pkg.name, pkg.get_build_type()) == (3, name, build_type)
        assert 'schematypens="http://www.w3.org/2001/XMLSchema"' in path.read_text()
    node_pkg = parse_package(str(repo_root / "package.xml"))
    runtime = {d.name for d in node_pkg.exec_depends}
    assert {"gmos_msgs", "rclpy", "sensor_msgs", "std_srvs", "diagnostic_msgs", "message_filters"} <= runtime


# ------------------------------------------------------------------------------------------ launch

class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorded):
    def perform(self, context):
        return context[self.args[0]]


def _fake_launch_modules(share_dir: Path) -> dict[str, types.ModuleType]:
    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    classes = {name: type(name, (_Recorded,), {}) for name in (
        "LaunchDescription", "DeclareLaunchArgument", "ExecuteProcess", "OpaqueFunction", "IfCondition",
        "PythonExpression", "Node", "SetParameter", "LogInfo")}
    return {
        "launch": module("launch", LaunchDescription=classes["LaunchDescription"]),
        "launch.actions": module("launch.actions", **{k: classes[k] for k in (
            "DeclareLaunchArgument", "ExecuteProcess", "OpaqueFunction", "LogInfo")}),
        "launch.conditions": module("launch.conditions", IfCondition=classes["IfCondition"]),
        "launch.substitutions": module("launch.substitutions", LaunchConfiguration=_LaunchConfiguration,
                                       PythonExpression=classes["PythonExpression"]),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", Node=classes["Node"], SetParameter=classes["SetParameter"]),
        "ament_index_python": module("ament_index_python"),
        "ament_index_python.packages": module("ament_index_python.packages",
                                              get_package_share_directory=lambda name: str(share_dir / name)),
    }


@pytest.fixture
def launch_file(repo_root, monkeypatch, tmp_path):
    for name, mod in _fake_launch_modules(tmp_path).items():
        monkeypatch.setitem(sys.modules, name, mod)
    config = tmp_path / "gmos_ros" / "config"  # what colcon installs into share/gmos_ros/config
    config.mkdir(parents=True)
    for profile in (repo_root / "config").glob("*.yaml"):
        (config / profile.name).write_text(profile.read_text())
    spec = importlib.util.spec_from_file_location("gmos_launch", repo_root / "launch" / "gmos.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, tmp_path


EXPECTED_ARGUMENTS = {"namespace", "image_topic", "camera_info_topic", "depth_topic", "params_file", "mode",
                      "model", "tracker", "pi3_weights", "head_weights", "sam2_checkpoint", "tiny_random_model",
                      "device", "precision", "use_sim_time", "log_level", "autostart", "bag"}


def test_launch_file_declares_its_arguments(repo_root, launch_file):
    module, _ = launch_file
    description = module.generate_launch_description()
    (entities,) = description.args
    declared = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert set(declared) == EXPECTED_ARGUMENTS
    assert all(kw["description"] for kw in declared.values())
    assert declared["namespace"]["default_value"] == "gmos"
    bag_play = next(e for e in entities if type(e).__name__ == "ExecuteProcess")
    assert bag_play.kwargs["cmd"][:3] == ["ros2", "bag", "play"] and bag_play.kwargs["cmd"][-1] == "--clock"
    sim_time = next(e for e in entities if type(e).__name__ == "SetParameter")
    assert sim_time.kwargs["name"] == "use_sim_time" and sim_time.kwargs["value"] is True
    # the same names, read from the source without executing it
    tree = ast.parse((repo_root / "launch" / "gmos.launch.py").read_text())
    arguments = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGUMENTS")
    assert {k.value for k in arguments.value.keys} == EXPECTED_ARGUMENTS


def test_launch_builds_the_node_with_remappings_and_overrides(launch_file):
    module, share = launch_file
    description = module.generate_launch_description()
    opaque = next(e for e in description.args[0] if type(e).__name__ == "OpaqueFunction")
    context = {name: default for name, (default, _) in module.ARGUMENTS.items()}
    context.update(image_topic="/cam/image_raw", device="cpu", bag="/data/run1", log_level="debug")
    (node,) = opaque.kwargs["function"](context)
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["namespace"]) == ("gmos_ros", "gmos_node", "gmos")
    params_file, overrides = kw["parameters"]
    assert params_file == str(share / "gmos_ros" / "config" / "gmos_desktop.yaml")
    assert overrides == {"device": "cpu", "autostart": True, "use_sim_time": True}  # a bag implies sim time
    assert ("image", "/cam/image_raw") in kw["remappings"]
    assert ("image/compressed", "/cam/image_raw/compressed") in kw["remappings"]
    assert kw["arguments"] == ["--ros-args", "--log-level", "debug"]


def test_launch_vocabulary_overrides_and_the_deprecated_model_argument(launch_file):
    module, _ = launch_file
    opaque = next(e for e in module.generate_launch_description().args[0] if type(e).__name__ == "OpaqueFunction")
    context = {name: default for name, (default, _) in module.ARGUMENTS.items()}
    context.update(mode="geometric", tracker="iou", tiny_random_model="true", precision="fp32")
    (node,) = opaque.kwargs["function"](context)
    assert node.kwargs["parameters"][1] == {"mode": "geometric", "tracker": "iou", "tiny_random_model": True,
                                            "precision": "fp32", "autostart": True, "use_sim_time": False}
    context.update(mode="", model="gmos_s", tiny_random_model="")
    notice, node = opaque.kwargs["function"](context)
    assert node.kwargs["parameters"][1]["mode"] == "gmos_s" and "tiny_random_model" not in node.kwargs["parameters"][1]
    assert "deprecated" in notice.kwargs["msg"] and "mode:=gmos_s" in notice.kwargs["msg"]
    context.update(mode="gmos_online")
    with pytest.raises(ValueError, match="disagree"):
        opaque.kwargs["function"](context)
    context.update(model="", tiny_random_model="maybe")
    with pytest.raises(ValueError, match="tiny_random_model:='maybe'; expected true or false"):
        opaque.kwargs["function"](context)


def test_params_file_takes_a_path_or_a_profile_name(launch_file):
    module, share = launch_file
    opaque = next(e for e in module.generate_launch_description().args[0] if type(e).__name__ == "OpaqueFunction")
    context = {name: default for name, (default, _) in module.ARGUMENTS.items()}
    for given, expected in (("gmos_tiny_cpu", str(share / "gmos_ros" / "config" / "gmos_tiny_cpu.yaml")),
                            ("/my/params.yaml", "/my/params.yaml"), ("params.yaml", "params.yaml")):
        (node,) = opaque.kwargs["function"]({**context, "params_file": given})
        assert node.kwargs["parameters"][0] == expected
    with pytest.raises(ValueError, match=r"params_file:='gmos_fast' is neither a file nor a profile; expected .*"
                                         r"'gmos_tiny_cpu'"):
        opaque.kwargs["function"]({**context, "params_file": "gmos_fast"})


@pytest.mark.parametrize("name", ["gmos_desktop.yaml", "gmos_jetson.yaml", "gmos_s.yaml", "gmos_online.yaml",
                                  "gmos_tiny_cpu.yaml"])
def test_config_profiles_validate(repo_root, name):
    data = yaml.safe_load((repo_root / "config" / name).read_text())
    params = NodeParams.from_mapping(data["/**"]["ros__parameters"])
    assert params.mode in ("gmos_online", "gmos_s")
    assert params.tiny_random_model == (name == "gmos_tiny_cpu.yaml")
