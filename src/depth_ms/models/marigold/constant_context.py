"""Cross-attention folded into two small matmuls for Marigold's constant text context.

Marigold conditions its UNet on the embedding of the empty prompt, the same T (2) tokens on every
call, so each cross-attention's keys and values are constants. Per head h, with K_h, V_h (T, dh):

    softmax(s (x Wq_h^T + bq_h) K_h^T) V_h Wout_h^T + bout
        = softmax_T(x U_h + c_h) D_h + bout,   U_h = s Wq_h^T K_h^T (d, T),  c_h = s K_h bq_h,  D_h = V_h Wout_h^T (T, d)

The (d, d) query and output projections (2 d^2 multiply-adds per pixel) become (d, heads * T) and
(heads * T, d) ones, and the attention itself a softmax over T values: exact up to float rounding.
:func:`fold_cross_attention` swaps each folded ``Attention`` for a :class:`ConstantContextAttention`
holding U, c, D and the output bias; the swapped model ignores any other context it is given, so
only the engine, which owns the embedding, calls it.
"""
from __future__ import annotations

import numpy as np


def _folds(attn) -> bool:
    """True for a plain cross-attention whose output depends on the context only through to_k / to_v."""
    plain = all(getattr(attn, name, None) is None for name in (
        "group_norm", "spatial_norm", "norm_q", "norm_k", "norm_cross", "add_k_proj", "add_v_proj", "add_q_proj"))
    return (bool(getattr(attn, "is_cross_attention", False)) and plain and not attn.residual_connection
            and float(attn.rescale_output_factor) == 1.0 and attn.to_k is not None and attn.inner_kv_dim
            == attn.inner_dim and not getattr(attn, "only_cross_attention", False))


def _array(param) -> np.ndarray:
    return param.asnumpy().astype(np.float64)


def folded_weights(attn, context: np.ndarray) -> dict:
    """U (d, heads * T), c (heads * T,), D (heads * T, d_out), bias (d_out,) for one Attention and context (T, d_c)."""
    heads, inner = int(attn.heads), int(attn.inner_dim)
    head_dim, tokens = inner // heads, context.shape[0]

    def project(linear) -> np.ndarray:  # (heads, T, dh)
        out = context @ _array(linear.weight).T + (_array(linear.bias) if linear.bias is not None else 0.0)
        return out.reshape(tokens, heads, head_dim).transpose(1, 0, 2)

    keys, values = project(attn.to_k), project(attn.to_v)
    w_q = _array(attn.to_q.weight).reshape(heads, head_dim, -1)  # (heads, dh, d)
    b_q = _array(attn.to_q.bias).reshape(heads, head_dim) if attn.to_q.bias is not None else np.zeros((heads, head_dim))
    out_linear = attn.to_out[0]
    w_out = _array(out_linear.weight).reshape(-1, heads, head_dim)  # (d_out, heads, dh)
    scale = float(attn.scale)
    u = scale * np.einsum("hcd,htc->dht", w_q, keys).reshape(w_q.shape[2], heads * tokens)  # (d, heads * T)
    c = scale * np.einsum("hc,htc->ht", b_q, keys).reshape(heads * tokens)  # (heads * T,)
    d = np.einsum("ohc,htc->hto", w_out, values).reshape(heads * tokens, -1)  # (heads * T, d_out)
    bias = _array(out_linear.bias) if out_linear.bias is not None else np.zeros(d.shape[1])
    return dict(u=u, c=c, d=d, bias=bias, heads=heads, tokens=tokens)


def _cell_class():
    from mindspore import nn, ops

    from depth_ms.models.mindspore_device import _linear

    class ConstantContextAttention(nn.Cell):
        """softmax_T(x U + c) D + bias per head: a cross-attention with its context folded in."""

        def __init__(self, folded: dict, prefix: str) -> None:
            super().__init__()
            import mindspore as ms

            def param(name: str, value: np.ndarray):
                return ms.Parameter(ms.Tensor(value.astype(np.float32)), name=f"{prefix}.{name}", requires_grad=False)

            self.query_keys = param("folded_query_keys", folded["u"].T)  # (heads * T, d): read transposed
            self.key_bias = param("folded_key_bias", folded["c"])
            self.values_out = param("folded_values_out", folded["d"].T)  # (d_out, heads * T)
            self.out_bias = param("folded_out_bias", folded["bias"])
            self.heads, self.tokens = folded["heads"], folded["tokens"]

        def construct(self, hidden_states, encoder_hidden_states=None, attention_mask=None):
            logits = _linear(hidden_states, self.query_keys, self.key_bias)  # (B, N, heads * T)
            lead = logits.shape[:-1]
            probs = ops.softmax(logits.reshape(lead + (self.heads, self.tokens)), -1)  # (B, N, heads, T)
            return _linear(probs.reshape(lead + (self.heads * self.tokens,)), self.values_out, self.out_bias)

    return ConstantContextAttention


def fold_cross_attention(unet, context: np.ndarray) -> int:
    """Replace every foldable ``attn2`` of ``unet``'s transformer blocks for ``context`` (T, d_c); returns how many."""
    cls = _cell_class()
    context = np.asarray(context, dtype=np.float64).reshape(-1, np.shape(context)[-1])  # (T, d_c)
    folded = 0
    for name, block in list(unet.cells_and_names()):
        attn = getattr(block, "attn2", None)
        if attn is None or not _folds(attn):
            continue
        block.attn2 = cls(folded_weights(attn, context), f"{name}.attn2" if name else "attn2")
        folded += 1
    return folded
