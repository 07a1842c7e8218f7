"""Helpers for the replay tests: small real bags (frames of the bundled dog clip) and a replay runner
that drives the real NodeCore and the real StreamingEngine with the tiny random-weights models."""
from __future__ import annotations

import functools
from pathlib import Path


SMALL = (160, 96)  # frame size of the test bags: keeps the tiny model at a fraction of a second per frame
IMAGE_TOPIC = "/camera/image_raw"
INFO_TOPIC = "/camera/camera_info"


def make_video_bag(source: Path, out: Path, frames: int, storage: str = "mcap", distro: str = "jazzy",
                   size=SMALL, **kwargs) -> Path:
    from gmos_core.bags.from_video import VideoBagOptions, video_to_bag

    video_to_bag(source, out, VideoBagOptions(max_frames=frames, resize=size, storage=storage, distro=distro, **kwargs))
    return out


@functools.lru_cache(maxsize=2)
def _tiny_models(mode: str):
    import torch

    from gmos_core.engine.config import EngineConfig
    from gmos_core.engine.models import build_engine_models

    torch.set_num_threads(2)
    return build_engine_models(EngineConfig(mode=mode, device="cpu", precision="fp32"), size="tiny", allow_random=True)


def tiny_node_maker(mode: str = "gmos_s", **param_changes):
    """clock -> activated NodeCore over a real StreamingEngine with the cached tiny random models."""
    from gmos_core.bridge.core import NodeCore
    from gmos_core.bridge.params import NodeParams
    from gmos_core.engine.config import EngineConfig
    from gmos_core.engine.streaming import StreamingEngine

    params = NodeParams(mode=mode, tiny_random_model=True, device="cpu", precision="fp32", **param_changes)

    def build(p):
        # stride 1: a look-ahead of 2 frames, so a handful of frames exercises both the in-stream outputs
        # and the end-of-bag flush
        return StreamingEngine(EngineConfig(mode=p.mode, device="cpu", precision="fp32", stride=1),
                               _tiny_models(p.mode))

    def make(clock_ns):
        node = NodeCore(params, build, clock_ns=clock_ns)
        node.activate()
        return node

    return make


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """{topic: [(log time, deserialised message), ...]} read back with rosbags."""
    from rosbags.highlevel import AnyReader

    from gmos_core.bags.typestore import make_typestore

    out: dict[str, list] = {}
    with AnyReader([Path(path)], default_typestore=make_typestore("jazzy")) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def fast_node_maker(mode: str = "gmos_s"):
    """clock -> activated NodeCore over the real StreamingEngine (stride 1: a 2-frame look-ahead) whose
    networks are test/engine's FakeModels: for tests that need hundreds of frames or a signal mid-frame
    (the tiny random model takes ~0.5-3 s per frame on the 2-core machine). Only gmos_s: the stand-in has
    no SAM 2 predictor for gmos_online's propagation."""
    import dataclasses

    from gmos_core.bridge.core import NodeCore
    from gmos_core.bridge.params import NodeParams
    from gmos_core.engine.config import EngineConfig
    from gmos_core.engine.streaming import StreamingEngine

    from ..engine.fakes import FakeModels

    class QuietFakeModels(FakeModels):
        """FakeModels without its per-call recording lists (they would grow with the frames)."""

        def encode_tokens(self, images):
            return images[:, None, :].clone()

        def decode_anchor(self, hidden, num_frames, height, width, position):
            return hidden.reshape(-1, num_frames)[:, position].reshape(-1, 1, 1, 1)

        def sam_encode(self, images):
            return [{"code": v.reshape(1)} for v in images]

    fields = {f.name for f in dataclasses.fields(NodeParams)}
    params = NodeParams(**{"mode" if "mode" in fields else "model": mode}, tiny_random_model=True,
                        device="cpu", precision="fp32")

    def build(_params):
        return StreamingEngine(EngineConfig(mode=mode, device="cpu", precision="fp32", stride=1),
                               QuietFakeModels(mode=mode))

    def make(clock_ns):
        node = NodeCore(params, build, clock_ns=clock_ns)
        node.activate()
        return node

    return make
