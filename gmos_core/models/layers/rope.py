"""2-D rotary position embedding (RoPE2D) and integer grid positions.

One implementation serves both users in the official code: Pi3's decoder (base 100, positions shifted by
+1 with register tokens at (0, 0)) and the GMOS heads (base 100*36/64 = 56.25, no shift).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def grid_positions(batch: int, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Integer (y, x) positions of a row-major ``height x width`` grid, shape (batch, height*width, 2), int64."""
    y = torch.arange(height, device=device)
    x = torch.arange(width, device=device)
    positions = torch.cartesian_prod(y, x)  # (h*w, 2), y outer / x inner = row-major
    return positions.unsqueeze(0).expand(batch, -1, -1).clone()


class RoPE2D(nn.Module):
    """Rotary embedding over (y, x): the first half of each head vector is rotated by y, the second by x.

    Inside each half of size d: inv_freq_j = 1 / base^(2j/d) (j < d/2); angle tables are computed in float32
    and cast to the token dtype *before* cos/sin (as the official code does; matters under bf16 autocast).
    Stateless: no parameters or buffers, so it adds no state_dict keys.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        if base <= 0:
            raise ValueError(f"RoPE2D base must be positive, got {base}")
        self.base = float(base)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _cos_sin(self, dim: int, length: int, device: torch.device, dtype: torch.dtype):
        key = (dim, length, device, dtype)
        if key not in self._cache:
            inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=device).float() / dim))
            t = torch.arange(length, device=device, dtype=inv_freq.dtype)
            angles = torch.einsum("i,j->ij", t, inv_freq).to(dtype)
            angles = torch.cat((angles, angles), dim=-1)
            self._cache[key] = (angles.cos(), angles.sin())
        return self._cache[key]

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def _rotate_1d(self, tokens, pos1d, cos, sin):
        cos = F.embedding(pos1d, cos)[:, None, :, :]
        sin = F.embedding(pos1d, sin)[:, None, :, :]
        return tokens * cos + self._rotate_half(tokens) * sin

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens (B, heads, L, D) with D % 4 == 0; positions (B, L, 2) integer (y, x)."""
        if tokens.shape[-1] % 4 != 0:
            raise ValueError(f"RoPE2D needs a head dim divisible by 4, got {tokens.shape[-1]}")
        if positions.ndim != 3 or positions.shape[-1] != 2:
            raise ValueError(f"RoPE2D positions must be (B, L, 2), got {tuple(positions.shape)}")
        half = tokens.shape[-1] // 2
        if self._cache and next(iter(self._cache))[2] != tokens.device:
            self._cache.clear()
        cos, sin = self._cos_sin(half, int(positions.max()) + 1, tokens.device, tokens.dtype)
        y, x = tokens.chunk(2, dim=-1)
        y = self._rotate_1d(y, positions[:, :, 0], cos, sin)
        x = self._rotate_1d(x, positions[:, :, 1], cos, sin)
        return torch.cat((y, x), dim=-1)
