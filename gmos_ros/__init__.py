"""gmos_ros: the rclpy node, a thin adapter over gmos_core (see gmos_core.bridge for its logic)."""
