"""Training windows for the default model, cut on the training device from a bank of prepared clips.

Why: the model is tiny, so a training step on a GPU costs a few milliseconds and the old per-sample CPU path
(resize 5 Pi3 frames + 1 SAM 2 frame per window, in data workers) capped a GPU run at ~500 windows/s. Here each
rendered clip is prepared ONCE, exactly as the engine prepares frames (Pi3: PIL Lanczos to the Pi3 size, kept
as uint8; SAM 2: bilinear-antialias resize to S x S in [0, 1], normalised when the batch is cut; target: the
moving-object mask of every frame, area-downsampled to the head's S/4 x S/4 logits), and stored on the training
device. A batch is then pure tensor indexing there: random clip, stride, start, time reversal, horizontal
mirror and a per-window colour gain (a camera's gain / white balance), the same augmentations as
``training.default_train.window_sample``. On 2 CPU cores the same path also helps: a prepared clip serves ~80
windows before it is replaced, instead of being resized again for each of them.

``ClipSource`` renders and prepares clips (seeded, disjoint seeds per data worker); ``ClipBank`` holds ``size``
of them and replaces some every step (new scenes).

Proposer targets (``max_objects`` > 0): each clip also keeps every annotated object's own mask at the head's
S/4 x S/4 grid and whether it moves on each frame; ``batch(..., instances=True)`` then also returns, for the anchor
frame, the targets of ``training.losses.proposer_loss`` with the convention of ``training/datasets.py``: every
object visible at the anchor is a target, with motion 1 if it moves there, and its mask if it moves (empty if not).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.utils.data as tud

from gmos_core.preprocess import IMAGENET_MEAN, IMAGENET_STD


def prepare_clip(clip, pi3_hw: tuple[int, int], sam_size: int, max_objects: int = 0) -> dict[str, torch.Tensor]:
    """A rendered clip -> {pi3 (T,3,Hp,Wp) uint8, sam (T,3,S,S) float16 in [0,1], target (T,S/4,S/4) float16},
    and with ``max_objects`` > 0 also {instances (T,K,S/4,S/4) float16: object id k+1's mask, moving (T,K) bool}
    (objects beyond K are dropped from the instance targets; they stay in ``target``)."""
    import torch.nn.functional as F

    from gmos_core.preprocess import pi3_resize

    frames = clip.frames
    pi3 = torch.from_numpy(np.stack([pi3_resize(f, pi3_hw) for f in frames])).permute(0, 3, 1, 2).contiguous()
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    sam = F.interpolate(x, size=(sam_size, sam_size), mode="bilinear", align_corners=False, antialias=True)
    masks = np.stack([clip.moving_mask(t) for t in range(frames.shape[0])]).astype(np.float32)
    grid = (sam_size // 4, sam_size // 4)
    target = F.interpolate(torch.from_numpy(masks)[:, None], size=grid, mode="area")[:, 0]
    out = {"pi3": pi3, "sam": sam.clamp_(0, 1).half(), "target": target.half()}
    if max_objects > 0:
        k = int(max_objects)
        ids = torch.arange(1, k + 1, dtype=torch.int16)
        per_id = (torch.from_numpy(clip.labels.astype(np.int16))[:, None] == ids[None, :, None, None]).float()
        out["instances"] = F.interpolate(per_id, size=grid, mode="area").half()
        moving = torch.zeros(frames.shape[0], k, dtype=torch.bool)
        n = min(k, clip.moving.shape[1])
        moving[:, :n] = torch.from_numpy(np.asarray(clip.moving[:, :n], bool))
        out["moving"] = moving
    return out


class ClipSource(tud.IterableDataset):
    """Endless prepared training clips. Worker w of n renders seeds ``data_seed + w + n*i`` (i = 0, 1, ...,
    starting at ``first_index`` so a resumed run draws new scenes), so the scenes depend only on (data_seed,
    workers). Used directly (no worker processes) or as the dataset of a DataLoader with workers."""

    def __init__(self, cfg, pi3_hw, sam_size: int, first_index: int = 0, max_objects: int = 0) -> None:
        self.cfg, self.pi3_hw, self.sam_size, self.first_index = cfg, tuple(pi3_hw), int(sam_size), int(first_index)
        self.max_objects = int(max_objects)

    def __iter__(self):
        from training.default_data import render_pool_clip

        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        i = self.first_index // workers
        while True:
            seed = self.cfg.data_seed + worker + workers * i
            yield prepare_clip(render_pool_clip(self.cfg, seed), self.pi3_hw, self.sam_size, self.max_objects)
            i += 1


class ClipBank:
    """``size`` prepared clips on ``device``; ``batch`` cuts training windows from them."""

    def __init__(self, clips: list[dict], device, window: int, strides, seed: int) -> None:
        if not clips:
            raise ValueError("ClipBank needs at least one clip")
        self.device = torch.device(device)
        self.window = int(window)
        self.pi3 = torch.stack([c["pi3"] for c in clips]).to(self.device)
        self.sam = torch.stack([c["sam"] for c in clips]).to(self.device)
        self.target = torch.stack([c["target"] for c in clips]).to(self.device)
        self.has_instances = all("instances" in c for c in clips)
        if self.has_instances:
            self.instances = torch.stack([c["instances"] for c in clips]).to(self.device)
            self.moving = torch.stack([c["moving"] for c in clips]).to(self.device)
        self.size, self.frames = self.pi3.shape[:2]
        wanted = [int(s) for s in strides]
        strides = [s for s in wanted if (self.window - 1) * s < self.frames]
        if not strides:
            raise ValueError(f"no stride in {wanted} fits a {self.window}-frame window in "
                             f"{self.frames}-frame clips")
        self.strides = torch.tensor(strides, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def replace(self, slot: int, clip: dict) -> None:
        self.pi3[slot].copy_(clip["pi3"], non_blocking=True)
        self.sam[slot].copy_(clip["sam"], non_blocking=True)
        self.target[slot].copy_(clip["target"], non_blocking=True)
        if self.has_instances:
            self.instances[slot].copy_(clip["instances"], non_blocking=True)
            self.moving[slot].copy_(clip["moving"], non_blocking=True)

    def random_slot(self) -> int:
        return int(torch.randint(self.size, (1,), generator=self.generator, device=self.device))

    def _rand(self, *shape):
        return torch.rand(*shape, generator=self.generator, device=self.device)

    def _instance_targets(self, clip, anchor, mirror=None) -> dict:
        """proposer_loss targets of the anchor frames: masks (B,K,S/4,S/4), motion (B,K), valid (B,K)."""
        if not self.has_instances:
            raise ValueError("this ClipBank holds no instance targets; prepare its clips with max_objects > 0")
        inst = self.instances[clip, anchor].float()
        if mirror is not None:
            inst = torch.where(mirror.view(-1, 1, 1, 1), inst.flip(-1), inst)
        valid = inst.flatten(2).amax(-1) > 0  # visible at the anchor frame
        motion = self.moving[clip, anchor] & valid
        masks = inst * motion[..., None, None].float()
        return {"masks": masks, "motion": motion.float(), "valid": valid}

    def batch(self, batch_size: int, instances: bool = False):
        """-> (pi3 (B,N,3,Hp,Wp) float in [0,1], sam (B,3,S,S) SAM-normalised, target (B,S/4,S/4) float), plus
        the proposer targets of the anchor frames (``_instance_targets``) as a 4th item when ``instances``."""
        b, n = int(batch_size), self.window
        dev = self.device
        clip = torch.randint(self.size, (b,), generator=self.generator, device=dev)
        stride = self.strides[torch.randint(len(self.strides), (b,), generator=self.generator, device=dev)]
        span = (n - 1) * stride
        start = (self._rand(b) * (self.frames - span).float()).long().clamp(max=self.frames - 1 - span)
        offsets = torch.arange(n, device=dev)
        reverse = self._rand(b) < 0.5  # time reversal keeps which objects move
        offsets = torch.where(reverse[:, None], offsets.flip(0)[None], offsets[None])
        idx = start[:, None] + offsets * stride[:, None]
        anchor = idx[:, n // 2]
        pi3 = self.pi3[clip[:, None], idx].float().div_(255)
        sam = self.sam[clip, anchor].float()
        target = self.target[clip, anchor].float()
        mirror = self._rand(b) < 0.5
        pi3 = torch.where(mirror.view(b, 1, 1, 1, 1), pi3.flip(-1), pi3)
        sam = torch.where(mirror.view(b, 1, 1, 1), sam.flip(-1), sam)
        target = torch.where(mirror.view(b, 1, 1), target.flip(-1), target)
        gain = (0.75 + 0.5 * self._rand(b, 3)) * (0.85 + 0.3 * self._rand(b, 1))
        pi3 = (pi3 * gain.view(b, 1, 3, 1, 1)).clamp_(0, 1)
        sam = ((sam * gain.view(b, 3, 1, 1)).clamp_(0, 1) - self.mean) / self.std
        if instances:
            return pi3, sam, target, self._instance_targets(clip, anchor, mirror)
        return pi3, sam, target

    def windows(self, slot: int, starts, stride: int):
        """Deterministic, unaugmented windows of one clip (validation): forward order, centre anchor."""
        idx = torch.tensor([[int(s) + i * int(stride) for i in range(self.window)] for s in starts],
                           device=self.device)
        anchor = idx[:, self.window // 2]
        pi3 = self.pi3[slot, idx].float().div_(255)
        sam = (self.sam[slot, anchor].float() - self.mean) / self.std
        return pi3, sam, self.target[slot, anchor].float()
