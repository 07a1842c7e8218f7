"""Offline training of the GMOS heads (proposer, GMOS-S) and the small end-to-end configurations.

Sub-modules (heavy imports stay inside them):

* :mod:`training.synthetic` -- procedural synthetic generator (layered scenes with depth, moving camera with real
  parallax, objects that move / stop / start again, occlusions, static-only and static-camera clips); renders in
  memory or writes the GMOS-2K / DAVIS on-disk layout.
* :mod:`training.datasets` -- GMOS-2K layout, DAVIS/YTVOS folders, static-scene clips, the generator; window
  sampling by time (window length uniform in [0.16 s, 1.0 s], 5 frames, centre or end anchor).
* :mod:`training.losses` -- Hungarian matching and the proposer / GMOS-S losses of the paper.
* :mod:`training.trainer` -- the training loop (AdamW, cosine + warm-up, accumulation, AMP, DDP, checkpoints).
* :mod:`training.features` -- frozen-encoder feature cache (sharded safetensors).
* :mod:`training.export` -- export to the inference checkpoint format (``gmos_core.weights.metadata``).
"""

__all__ = ["synthetic"]
