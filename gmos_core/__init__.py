"""gmos_core: the ROS-free GMOS library (models, engine, propagator, metrics, I/O, CLI).

Layout (one concern per sub-package):
  models/      pure nn.Modules whose state_dicts match the official checkpoints
  weights/     loading and converting the official weight files
  preprocess / postprocess   the official image transforms and proposer labelling
  propagator/  SAM 2 video-predictor based tracking (online and the official two-stage offline)
  engine/      the streaming engine shared by the ROS node, rosbag replay and the CLI
  metrics/     MOS-I, MOS/UVOS (J&F), fg/bg and MoCA metrics
  io/          videos, frame folders, palette PNGs, overlays
  bridge/      ROS-message-shaped logic of the node, usable without rclpy (node + replay)
  cli/         the `gmos` command
"""

__version__ = "0.1.0"
