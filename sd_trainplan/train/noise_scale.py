"""The batch size the data asks for: the simple gradient noise scale B_simple = tr(Sigma) / |G|^2
(McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", Appendix A).

With gradient accumulation we see gradients at two batch sizes for free: each micro-batch's
(B_small = BS) and the accumulated one (B_big = BS x GA x P). Unbiased estimates:
  |G|^2 ~ (B_big |g_big|^2 - B_small |g_small|^2) / (B_big - B_small)
  S     ~ (|g_small|^2 - |g_big|^2) / (1/B_small - 1/B_big)
Each estimate is noisy, so each keeps its own running mean and B_simple is their ratio (the
ratio of two unbiased estimates is biased; the ratio of their means is consistent).
Below B_simple, a bigger batch buys almost proportionally faster progress; far above, little.
"""
from __future__ import annotations

from typing import Optional


class NoiseScale:
    def __init__(self, b_small: int, b_big: int, beta: float = 0.99):
        if b_big <= b_small:
            raise ValueError("the noise scale needs B_big > B_small (gradient accumulation or several processes)")
        self.b_small, self.b_big, self.beta = b_small, b_big, beta
        self.g2: Optional[float] = None
        self.s: Optional[float] = None
        self._g2: Optional[float] = None
        self._s: Optional[float] = None
        self.n = 0

    def update(self, small_sq_norm: float, big_sq_norm: float) -> None:
        """small_sq_norm: mean |g|^2 over micro-batches; big_sq_norm: |g|^2 of their average."""
        bs, bb = self.b_small, self.b_big
        g2 = (bb * big_sq_norm - bs * small_sq_norm) / (bb - bs)
        s = (small_sq_norm - big_sq_norm) / (1.0 / bs - 1.0 / bb)
        self.n += 1
        self._g2 = self.beta * (self._g2 or 0.0) + (1 - self.beta) * g2
        self._s = self.beta * (self._s or 0.0) + (1 - self.beta) * s
        correction = 1 - self.beta ** self.n  # Adam-style: early means are not pulled towards 0
        self.g2, self.s = self._g2 / correction, self._s / correction

    @property
    def b_simple(self) -> Optional[float]:
        if self.g2 is None or self.g2 <= 0:
            return None
        return self.s / self.g2


class GradProbe:
    """Squared norms of each micro-batch's gradient during accumulation (one flat copy of the
    trainable gradients; used only on the updates that measure)."""

    def __init__(self, params, grad_accum: int):
        self.params, self.ga = [p for p in params], grad_accum
        self.prev = None
        self.total = 0.0

    def _flat(self):
        import torch
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten()
                          for p in self.params])

    def after_micro(self) -> None:
        flat = self._flat()
        micro = flat if self.prev is None else flat - self.prev
        self.total += float((micro * self.ga).square().sum())  # the loss was divided by GA
        self.prev = flat

    def small_sq(self) -> float:
        return self.total / self.ga

    def big_sq(self) -> float:
        return float(self._flat().square().sum())
