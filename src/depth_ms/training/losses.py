"""Losses of the MiDaS family (Ranftl et al., TPAMI 2020), in MindSpore.

Prediction and target are disparities. Each image is normalised by its own shift (median) and scale
(mean absolute deviation from the median) over its valid pixels, which makes the loss invariant to an
affine change of either; then

- ``trimmed`` scale-and-shift-invariant loss: mean absolute residual of the normalised maps over the valid
  pixels, leaving out the largest ``trim`` share of residuals of each image;
- multi-scale gradient matching: mean |d/dx R| + |d/dy R| of the normalised residual R over valid pixel
  pairs, at ``scales`` scales (each half the previous, by subsampling).

The loss is their sum with the gradient term weighted by ``alpha`` (MiDaS: 0.5), averaged over images.
:func:`aligned_depth_loss` is the untrimmed loss in depth, for the Marigold family's end-to-end fine-tuning;
:func:`least_squares_abs_rel_loss` scores that fine-tuning the way the labeller does (least-squares scale and
shift in depth, then AbsRel).
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

_EPS = 1e-6


def _masked_median(values, mask):
    """Per-row median of ``values`` (B, N) over ``mask`` (B, N) of 0/1 (lower median for even counts)."""
    big = ops.stop_gradient(values.max()) + 1.0
    keyed = ops.stop_gradient(values * mask + big * (1.0 - mask))  # (B, N) invalid pushed to the end
    _, order = ops.sort(keyed, axis=1)  # (B, N)
    count = mask.sum(axis=1)  # (B,)
    middle = ops.maximum(ops.floor((count - 1.0) * 0.5), 0.0).astype(ms.int32)  # (B,)
    index = ops.gather_elements(order, 1, middle.reshape(-1, 1))  # (B, 1)
    return ops.gather_elements(values, 1, index)  # (B, 1)


def normalise(values, mask):
    """(values - median) / mean |values - median| per row, over the mask; (B, N)."""
    shift = _masked_median(values, mask)  # (B, 1)
    count = mask.sum(axis=1, keepdims=True)  # (B, 1)
    scale = (ops.abs(values - shift) * mask).sum(axis=1, keepdims=True) / ops.maximum(count, 1.0)  # (B, 1)
    return (values - shift) / (scale + _EPS)  # (B, N)


def trimmed_loss(residual, mask, trim: float):
    """Per-image mean of |residual| over the valid pixels without the largest ``trim`` share; (B,)."""
    absolute = ops.abs(residual) * mask  # (B, N)
    big = ops.stop_gradient(absolute.max()) + 1.0
    keyed = ops.stop_gradient(absolute + big * (1.0 - mask))  # (B, N)
    _, order = ops.sort(keyed, axis=1)  # ascending: kept residuals first
    ranked = ops.gather_elements(absolute, 1, order)  # (B, N)
    count = mask.sum(axis=1, keepdims=True)  # (B, 1)
    keep = ops.floor(count * (1.0 - trim))  # (B, 1)
    positions = ops.arange(residual.shape[1], dtype=ms.float32).reshape(1, -1)  # (1, N)
    kept = (positions < keep).astype(ms.float32)  # (B, N)
    return (ranked * kept).sum(axis=1) / ops.maximum(keep.squeeze(1), 1.0)  # (B,)


def gradient_loss(residual, mask, scales: int):
    """Multi-scale gradient matching of ``residual`` (B, H, W) over ``mask`` (B, H, W); (B,)."""
    total = 0.0
    for scale in range(scales):
        step = 2 ** scale
        r = residual[:, ::step, ::step]  # (B, h, w)
        m = mask[:, ::step, ::step]  # (B, h, w)
        mx = m[:, :, 1:] * m[:, :, :-1]  # (B, h, w - 1)
        my = m[:, 1:, :] * m[:, :-1, :]  # (B, h - 1, w)
        gx = (ops.abs(r[:, :, 1:] - r[:, :, :-1]) * mx).sum(axis=(1, 2))  # (B,)
        gy = (ops.abs(r[:, 1:, :] - r[:, :-1, :]) * my).sum(axis=(1, 2))  # (B,)
        total = total + (gx + gy) / ops.maximum(m.sum(axis=(1, 2)), 1.0)
    return total


def aligned_depth_loss(pred, target, alpha: float, scales: int):
    """The same loss in depth itself, for predictions of affine depth (Marigold's decoded output): L1 between
    the median/MAD-normalised maps (B, H, W) plus ``alpha`` times the gradient matching, every pixel valid; (B,)."""
    batch, height, width = pred.shape
    mask = ops.ones((batch, height * width), ms.float32)  # (B, N)
    residual = normalise(pred.reshape(batch, -1), mask) - normalise(target.reshape(batch, -1), mask)  # (B, N)
    loss = ops.abs(residual).mean(axis=1)  # (B,)
    if alpha > 0:
        loss = loss + alpha * gradient_loss(residual.reshape(batch, height, width), mask.reshape(pred.shape), scales)
    return loss


def least_squares_abs_rel_loss(pred, depth, alpha: float, scales: int):
    """AbsRel of affine depth ``pred`` (B, H, W) after the least-squares scale and shift that fit it to
    ``depth`` (B, H, W, positive, 0 = no ground truth), the labeller's alignment and metric, plus ``alpha``
    times the gradient matching of the relative residual; (B,). The fit stays in the graph: the gradient
    also flows through scale and shift."""
    batch, height, width = pred.shape
    p, d = pred.reshape(batch, -1), depth.reshape(batch, -1)  # (B, N)
    mask = ops.cast(d > 0, ms.float32)  # (B, N)
    count = ops.maximum(mask.sum(axis=1, keepdims=True), 1.0)  # (B, 1)
    mean_p = (p * mask).sum(axis=1, keepdims=True) / count  # (B, 1)
    mean_d = (d * mask).sum(axis=1, keepdims=True) / count  # (B, 1)
    centred = (p - mean_p) * mask  # (B, N)
    scale = (centred * (d - mean_d)).sum(axis=1, keepdims=True) / ((centred * centred).sum(axis=1, keepdims=True)
                                                                    + _EPS)  # (B, 1)
    residual = (scale * (p - mean_p) + mean_d - d) / ops.maximum(d, _EPS) * mask  # (B, N) relative error
    loss = ops.abs(residual).sum(axis=1) / count[:, 0]  # (B,)
    if alpha > 0:
        loss = loss + alpha * gradient_loss(residual.reshape(batch, height, width),
                                            mask.reshape(batch, height, width), scales)
    return loss


class ScaleShiftInvariantLoss(nn.Cell):
    """MiDaS' loss on predicted disparity against metric depth (B, H, W) with a 0/1 validity mask."""

    def __init__(self, trim: float = 0.2, alpha: float = 0.5, scales: int = 4) -> None:
        super().__init__()
        self.trim, self.alpha, self.scales = trim, alpha, scales

    def construct(self, pred, depth, mask):
        batch, height, width = pred.shape
        target = mask / ops.maximum(depth, _EPS)  # (B, H, W) disparity, 0 where invalid
        flat_mask = mask.reshape(batch, -1)  # (B, N)
        pred_n = normalise(pred.reshape(batch, -1), flat_mask)  # (B, N)
        target_n = normalise(target.reshape(batch, -1), flat_mask)  # (B, N)
        residual = (pred_n - target_n) * flat_mask  # (B, N)
        loss = trimmed_loss(residual, flat_mask, self.trim)  # (B,)
        if self.alpha > 0:
            loss = loss + self.alpha * gradient_loss(residual.reshape(batch, height, width), mask, self.scales)
        return loss.mean()


__all__ = ["ScaleShiftInvariantLoss", "aligned_depth_loss", "gradient_loss", "least_squares_abs_rel_loss", "normalise",
           "trimmed_loss"]
