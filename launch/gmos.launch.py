"""Launch the GMOS node: camera topics in, instance masks / dynamic masks / per-object motion out.

    ros2 launch gmos_ros gmos.launch.py image_topic:=/camera/color/image_raw \
        head_weights:=/path/gmos_proposer.safetensors pi3_weights:=/path/pi3.safetensors \
        sam2_checkpoint:=/path/sam2.1_hiera_large.pt
    ros2 launch gmos_ros gmos.launch.py bag:=/path/to/bag          # plays it with --clock, sim time on
    ros2 launch gmos_ros gmos.launch.py params_file:=gmos_tiny_cpu   # pipeline check: tiny random model, CPU

Empty mode/tracker/weight/device/precision/tiny_random_model arguments keep the values of the params file.
The argument `model` is the deprecated name of `mode` (one release).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node, SetParameter

PACKAGE = "gmos_ros"

# name → (default, description)
ARGUMENTS = {
    "namespace": ("gmos", "namespace of the node and its outputs"),
    "image_topic": ("/camera/color/image_raw", "input image (sensor_msgs/Image; '<topic>/compressed' "
                    "is used when input_transport is compressed)"),
    "camera_info_topic": ("/camera/color/camera_info", "input camera_info (used when use_camera_info)"),
    "depth_topic": ("/camera/aligned_depth_to_color/image_raw", "registered depth (used when use_depth)"),
    "params_file": ("", "parameter YAML, or the name of a profile in share/gmos_ros/config (gmos_desktop, "
                    "gmos_jetson, gmos_online, gmos_s, gmos_tiny_cpu); empty = gmos_desktop"),
    "mode": ("", "gmos_online, gmos_s or geometric; empty = from the params file"),
    "model": ("", "DEPRECATED name of 'mode' (one release)"),
    "tracker": ("", "auto, sam2 or iou; empty = from the params file"),
    "pi3_weights": ("", "Pi3 encoder weights (.safetensors); empty = from the params file"),
    "head_weights": ("", "GMOS proposer / GMOS-S head weights (.safetensors); empty = from the params file"),
    "sam2_checkpoint": ("", "SAM 2.1 Hiera-L checkpoint; empty = from the params file"),
    "tiny_random_model": ("", "true: the tiny random test model (no weights; meaningless masks); empty = "
                          "from the params file"),
    "device": ("", "cuda, cuda:N or cpu; empty = from the params file"),
    "precision": ("", "auto, fp32, bf16 or fp16; empty = from the params file"),
    "use_sim_time": ("false", "use /clock (set automatically when bag is given)"),
    "log_level": ("info", "node log level (debug, info, warn, error)"),
    "autostart": ("true", "configure and activate the lifecycle node at start"),
    "bag": ("", "optional rosbag2 to play with --clock (sim time is then used)"),
}
OVERRIDABLE = ("mode", "tracker", "pi3_weights", "head_weights", "sam2_checkpoint", "device", "precision")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _bool(name: str, text: str) -> bool:
    try:
        return BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"launch argument {name}:={text!r}; expected true or false") from None


def _params_file(value: str) -> str:
    """A path as given, or a profile name (no '/', no '.yaml') looked up in the package's config folder."""
    if value and ("/" in value or value.endswith(".yaml")):
        return value
    from ament_index_python.packages import get_package_share_directory

    config = os.path.join(get_package_share_directory(PACKAGE), "config")
    path = os.path.join(config, (value or "gmos_desktop") + ".yaml")
    if not os.path.isfile(path):
        profiles = sorted(f[:-5] for f in os.listdir(config) if f.endswith(".yaml"))
        raise ValueError(f"launch argument params_file:={value!r} is neither a file nor a profile; expected a "
                         f"YAML path or one of {profiles}")
    return path


def _node(context, *args, **kwargs):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = _params_file(value["params_file"])
    overrides = {name: value[name] for name in OVERRIDABLE if value[name]}
    actions = []
    if value["model"]:
        if value["mode"] and value["mode"] != value["model"]:
            raise ValueError(f"launch arguments model:={value['model']} (deprecated) and mode:={value['mode']} "
                             "disagree; expected only mode")
        overrides["mode"] = value["model"]
        actions.append(LogInfo(msg=f"gmos.launch.py: the argument 'model' is deprecated; write "
                                   f"mode:={value['model']}"))
    if value["tiny_random_model"]:
        overrides["tiny_random_model"] = _bool("tiny_random_model", value["tiny_random_model"])
    overrides["autostart"] = _bool("autostart", value["autostart"])
    overrides["use_sim_time"] = bool(value["bag"]) or _bool("use_sim_time", value["use_sim_time"])
    image = value["image_topic"]
    node = Node(
        package=PACKAGE,
        executable="gmos_node",
        name="gmos_node",
        namespace=value["namespace"],
        output="screen",
        parameters=[params_file, overrides],
        remappings=[
            ("image", image),
            ("image/compressed", image.rstrip("/") + "/compressed"),
            ("camera_info", value["camera_info_topic"]),
            ("depth", value["depth_topic"]),
        ],
        arguments=["--ros-args", "--log-level", value["log_level"]],
    )
    return actions + [node]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    has_bag = PythonExpression(["'", LaunchConfiguration("bag"), "' != ''"])
    return LaunchDescription(declared + [
        SetParameter(name="use_sim_time", value=True, condition=IfCondition(has_bag)),
        ExecuteProcess(cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock"], output="screen",
                       condition=IfCondition(has_bag)),
        OpaqueFunction(function=_node),
    ])
