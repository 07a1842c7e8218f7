"""Weight-free geometric mode (``--mode geometric`` / node ``mode: geometric``): moving-object masks from
two-view geometry on a CPU, behind the same StreamingEngine interface and FrameResult as the learned modes.

See docs/geometric.md. Modules: ``config`` (GeometricConfig), ``motion`` (flow, ego-motion, per-pixel
independent-motion probability), ``engine`` (GeometricModels + the mode handler the engine runs).
"""
from gmos_core.geometric.config import GeometricConfig, GeometricConfigError

__all__ = ["GeometricConfig", "GeometricConfigError", "GeometricFrameResult", "GeometricHandler", "GeometricModels",
           "build_geometric_models"]

_LAZY = {name: "gmos_core.geometric.engine"
         for name in ("GeometricFrameResult", "GeometricHandler", "GeometricModels", "build_geometric_models")}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
