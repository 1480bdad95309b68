"""The native CPU kernels (``native/``, ``libdepth_ms_kernels.so``) as MindSpore ops (``ops.Custom``, "aot").

MindSpore's CPU Conv2D runs through oneDNN's ``gemm:jit`` on plain NCHW (DNNL_VERBOSE): 2-3 GFLOP/s for
depthwise convolutions and 50-90 GFLOP/s for small 3x3 ones, which kept MiDaS small far from 15 frames/s
on 2 cores. No maintained library offers these as MindSpore CPU ops, so the package builds its own with the
catkin build (float32, register-blocked, std::thread). When the library is unavailable (see
depth_ms.models.native_library) every getter returns None and callers use MindSpore's own kernels (same
result up to float32 rounding). ``DEPTH_MS_NATIVE_THREADS`` caps the kernels' threads (default: the CPUs the
process may run on).
"""
from __future__ import annotations

import functools

from mindspore import ops

from depth_ms.models.native_library import CONV_KERNELS, ROW_KERNELS, native_library, output_shape

# Native CPU kernels, float32, on up to $DEPTH_MS_NATIVE_THREADS threads (jobs under 2M multiply-adds run
# serially). MindSpore keys a Custom op's shape inference by its function name, hence one entry point per
# variant (sources in native/):
# - NCHW (MiDaS decoder) Conv3x3{Plain,PreRelu,PreReluResidual,PostRelu}, Conv1x1Plain: KxK conv,
#   stride 1, padding K // 2, + bias, with ReLU on the input / a residual added / ReLU on the output;
#   x (N, Ci, H, W), weight packed as (Co / 8, Ci, K * K, 8) (see native_packing.pack_conv), bias (Co,)
#   [, residual (N, Co, H, W)] -> (N, Co, H, W); Conv3x3FromNhwc: the same from x (N, H, W, C' >= Ci);
# - NHWC (MiDaS encoder), channels zero-padded to a multiple of 16:
#   PointwiseNhwc{Plain,Relu6,Residual}: 1x1 conv + bias [+ ReLU6 | + residual]; x (N, H, W, Ci),
#   weight (Ci, Co) (see pack_pointwise), bias (Co,) [, residual (N, H, W, Co)] -> (N, H, W, Co);
#   DepthwiseNhwcStride{1,2}: 3x3 or 5x5 depthwise conv (TF "same" padding) + bias + ReLU6;
#   x (N, H, W, C), weight (K * K, C) (see pack_depthwise), bias (C,) -> (N, ceil(H / s), ceil(W / s), C);
#   StemConv3x3Stride2Nhwc: 3x3 conv, stride 2 (TF "same") + bias + ReLU6 from NCHW to NHWC;
#   x (N, Ci, H, W), weight (9 * Ci, Co) (see pack_stem), bias (Co,) -> (N, ceil(H / 2), ceil(W / 2), Co).
# - Winograd3x3{Plain,PreRelu,PreReluResidual,PostRelu} (MiDaS decoder): the Conv3x3 variants as Winograd
#   F(2x2, 3x3) on U (16, Ci, Co) (see pack_winograd);
# - Winograd3x3Raw{,Relu,ResidualRelu} (device layer: UNet, VAEs, DPT necks): 3x3 conv, stride 1, padding 1,
#   from the raw weight (Co, Ci, 3, 3), Co a multiple of 8, [+ residual] [ReLU]: F(4x4, 3x3) on maps of at
#   least 256 4x4 tiles whose U fits 64 MB, else F(2x2, 3x3) by panels of tiles.
def _custom_op(kernel: str):
    """``ops.Custom`` running the native function ``kernel`` (output dtype = first input's), or None
    when the library is unavailable."""
    library = native_library()
    if library is None:
        return None

    def out_shape(*shapes):
        return output_shape(kernel, *shapes)

    def out_dtype(x_dtype, *other_dtypes):
        return x_dtype

    return ops.Custom(f"{library}:{kernel}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot")


@functools.lru_cache(maxsize=None)
def native_conv_op(kernel: str):
    """``ops.Custom`` for the conv kernel named ``kernel`` (one of CONV_KERNELS), or None when unavailable."""
    return _custom_op(kernel) if kernel in CONV_KERNELS else None


@functools.lru_cache(maxsize=None)
def native_elementwise_op(kernel: str):
    """``ops.Custom`` for 'GeluExact' (x -> gelu(x)), 'GegluExact', 'LayerNormLastAxis' (x, weight, bias,
    eps (1,) -> y), 'GroupNormPlain' / 'GroupNormRelu' (x (N, C, ...), weight, bias, eps (groups,) -> y) or
    'SwapAxes'; None when unavailable."""
    return _custom_op(kernel) if kernel in ROW_KERNELS and kernel != "Attention" else None


@functools.lru_cache(maxsize=None)
def native_attention_op():
    """``ops.Custom`` for 'Attention': q (B, N, H * d), k (B, M, H * d), v (B, M, H * dv), scale (H,) (its length
    gives the heads H) -> per head softmax(scale q_h k_h^T) v_h, (B, N, H * dv); d and dv multiples of 16;
    None when unavailable."""
    return _custom_op("Attention")


@functools.lru_cache(maxsize=None)
def native_pointwise_op(variant: str):
    """``ops.Custom`` for the NHWC 1x1 kernel ``PointwiseNhwc{variant}`` (Plain, Relu6, Residual), or None."""
    return _custom_op(f"PointwiseNhwc{variant}") if variant in ("Plain", "Relu6", "Residual") else None


@functools.lru_cache(maxsize=None)
def native_depthwise_nhwc_op(stride: int):
    """``ops.Custom`` for the NHWC depthwise conv + bias + ReLU6 with ``stride`` (1 or 2), or None."""
    return _custom_op(f"DepthwiseNhwcStride{stride}") if stride in (1, 2) else None


@functools.lru_cache(maxsize=None)
def native_stem_op():
    """``ops.Custom`` for the stem conv (3x3, stride 2) + bias + ReLU6 from NCHW to NHWC, or None."""
    return _custom_op("StemConv3x3Stride2Nhwc")
