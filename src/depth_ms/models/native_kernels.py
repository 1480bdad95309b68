"""Native CPU convolution kernels for MindSpore (``ops.Custom``, func_type "aot"), built on first use.

MindSpore's CPU Conv2D runs through oneDNN's ``gemm:jit`` on plain NCHW (DNNL_VERBOSE): 2-3 GFLOP/s for
depthwise convolutions and 50-90 GFLOP/s for small 3x3 ones, which kept MiDaS small far from 15 frames/s
on 2 cores. No maintained library offers these as MindSpore CPU ops, so the C++ source below (NCHW
float32, register-blocked, std::thread) is compiled once with the system C++ compiler into
``$XDG_CACHE_HOME/depth_ms/kernels`` (default ``~/.cache``), keyed by source, flags and host
(``-march=native``). Without a compiler, with ``DEPTH_MS_NATIVE_KERNELS=0`` or when the build fails,
every getter returns None and callers use MindSpore's Conv2D (same result up to float32 rounding).
``DEPTH_MS_NATIVE_THREADS`` caps the kernels' threads (default: all hardware threads).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile

import numpy as np
from mindspore import ops

_LOG = logging.getLogger(__name__)

# Native CPU kernels, NCHW float32, on up to $DEPTH_MS_NATIVE_THREADS threads (default: all hardware
# threads; jobs under 2M multiply-adds run serially). MindSpore keys a Custom op's shape inference by
# its function name, hence one entry point per variant:
# - DepthwiseBiasRelu6Stride{1,2}: depthwise conv (TF "same" padding) + bias + ReLU6; x (N, C, H, W),
#   weight (C, 1, k, k), bias (C,) -> (N, C, ceil(H / s), ceil(W / s));
# - Conv3x3{Plain,PreRelu,PreReluResidual,PostRelu}, Conv1x1{Plain,Residual,Relu6}: KxK conv, stride 1,
#   padding K // 2, + bias, with ReLU on the input / a residual added / ReLU or ReLU6 on the output;
#   x (N, Ci, H, W), weight packed as (Co / 8, Ci, K * K, 8) (see pack_conv), bias (Co,)
#   [, residual (N, Co, H, W)] -> (N, Co, H, W).
_NATIVE_SOURCE = r"""
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

// Runs body(begin, end) over [0, count) split across up to DEPTH_MS_NATIVE_THREADS threads (default:
// all hardware threads), the caller taking the first share; small jobs (< min_work units) stay serial.
template <typename Body>
static void ParallelFor(int64_t count, int64_t work, Body body) {
  static const int64_t threads = [] {
    const char *env = std::getenv("DEPTH_MS_NATIVE_THREADS");
    const int64_t n = env ? std::atoll(env) : static_cast<int64_t>(std::thread::hardware_concurrency());
    return std::max<int64_t>(1, std::min<int64_t>(n, 16));
  }();
  const int64_t parts = std::min<int64_t>(work >= (int64_t{1} << 21) ? threads : 1, count);
  if (parts <= 1) {
    body(0, count);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t p = 1; p < parts; ++p)
    pool.emplace_back(body, count * p / parts, count * (p + 1) / parts);
  body(0, count / parts);
  for (auto &t : pool) t.join();
}

// One (H, W) plane: zero-padded copy split into stride x stride phase planes, so that every tap is a
// contiguous multiply-add over the flattened output (columns ow..qw-1 of each row are scratch).
template <int S>
static void DepthwisePlane(const float *src, int64_t height, int64_t width, const float *taps, int64_t k,
                           float bias, float *dst, int64_t out_h, int64_t out_w, int64_t pad_top,
                           int64_t pad_left, std::vector<float> &phases, std::vector<float> &acc) {
  const int64_t padded_h = (out_h - 1) * S + k, padded_w = (out_w - 1) * S + k;
  const int64_t qh = (padded_h + S - 1) / S, qw = (padded_w + S - 1) / S, plane = qh * qw;
  phases.assign(S * S * plane, 0.0f);
  for (int64_t y = 0; y < padded_h; ++y) {
    const int64_t sy = y - pad_top;
    if (sy < 0 || sy >= height) continue;
    const float *in = src + sy * width;
    const int64_t x_lo = std::max<int64_t>(pad_left, 0), x_hi = std::min<int64_t>(padded_w, width + pad_left);
    float *rows = phases.data() + (y % S) * S * plane + (y / S) * qw;
    for (int64_t r = 0; r < S; ++r) {  // column phase r: x = r, r + S, ... (strided read, contiguous write)
      float *row = rows + r * plane;
      for (int64_t x = x_lo + ((r - x_lo % S) + S) % S; x < x_hi; x += S) row[x / S] = in[x - pad_left];
    }
  }
  const int64_t span = (out_h - 1) * qw + out_w;
  acc.assign(span, bias);
  float *a = acc.data();
  for (int64_t ky = 0; ky < k; ++ky) {
    for (int64_t kx = 0; kx < k; ++kx) {
      const float tap = taps[ky * k + kx];
      const float *p = phases.data() + ((ky % S) * S + kx % S) * plane + (ky / S) * qw + kx / S;
      for (int64_t i = 0; i < span; ++i) a[i] += tap * p[i];
    }
  }
  for (int64_t oy = 0; oy < out_h; ++oy)
    for (int64_t ox = 0; ox < out_w; ++ox) dst[oy * out_w + ox] = std::min(std::max(a[oy * qw + ox], 0.0f), 6.0f);
}

template <int S>
static int DepthwiseBiasRelu6(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 4 || ndims[0] != 4 || ndims[1] != 4 || ndims[3] != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *weight = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  const int64_t batch = shapes[0][0], channels = shapes[0][1], height = shapes[0][2], width = shapes[0][3];
  const int64_t k = shapes[1][2], out_h = shapes[3][2], out_w = shapes[3][3];
  const int64_t pad_top = std::max<int64_t>((out_h - 1) * S + k - height, 0) / 2;
  const int64_t pad_left = std::max<int64_t>((out_w - 1) * S + k - width, 0) / 2;
  ParallelFor(batch * channels, batch * channels * out_h * out_w * k * k, [&](int64_t begin, int64_t end) {
    std::vector<float> phases, acc;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % channels;
      DepthwisePlane<S>(x + p * height * width, height, width, weight + c * k * k, k, bias[c],
                        y + p * out_h * out_w, out_h, out_w, pad_top, pad_left, phases, acc);
    }
  });
  return 0;
}

extern "C" int DepthwiseBiasRelu6Stride1(int nparam, void **params, int *ndims, int64_t **shapes,
                                         const char **dtypes, void *stream, void *extra) {
  return DepthwiseBiasRelu6<1>(nparam, params, ndims, shapes);
}

extern "C" int DepthwiseBiasRelu6Stride2(int nparam, void **params, int *ndims, int64_t **shapes,
                                         const char **dtypes, void *stream, void *extra) {
  return DepthwiseBiasRelu6<2>(nparam, params, ndims, shapes);
}

typedef float Vec16 __attribute__((vector_size(64)));
constexpr int64_t kBlockCo = 8;  // output channels per register block
constexpr int64_t kChunk = 32;   // flattened output positions per register block (2 vectors)
enum Activation { kNone, kRelu, kRelu6 };

static inline Vec16 LoadVec(const float *p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// KxK convolution (K = 1 or 3), stride 1, zero padding K / 2, NCHW float32, on packed weights
// (Co / 8, Ci, K * K, 8), + bias, optional ReLU on the input, residual add and output activation.
// Each input plane is copied zero-padded to (H + K - 1, W + K - 1) and the output is computed on the
// flattened padded grid, so every tap is one contiguous shifted load.
template <int K, bool PreRelu, bool Residual, Activation Act>
static int ConvKxK(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != (Residual ? 5 : 4) || ndims[0] != 4 || ndims[1] != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *packed = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const float *residual = Residual ? static_cast<const float *>(params[3]) : nullptr;
  float *y = static_cast<float *>(params[nparam - 1]);
  const int64_t batch = shapes[0][0], in_ch = shapes[0][1], height = shapes[0][2], width = shapes[0][3];
  const int64_t blocks = shapes[1][0], out_ch = blocks * kBlockCo;
  if (shapes[1][1] != in_ch || shapes[1][2] != K * K || shapes[1][3] != kBlockCo) return 2;
  constexpr int64_t pad = K / 2;
  const int64_t pw = width + 2 * pad, plane = (height + 2 * pad) * pw;
  const int64_t span = (height - 1) * pw + width;
  const int64_t chunks = (span + kChunk - 1) / kChunk;
  std::vector<float> padded(in_ch * plane + 2 * pad * (pw + 1) + kChunk, 0.0f);
  for (int64_t n = 0; n < batch; ++n) {
    const float *xn = x + n * in_ch * height * width;
    for (int64_t c = 0; c < in_ch; ++c) {
      for (int64_t r = 0; r < height; ++r) {
        const float *src = xn + (c * height + r) * width;
        float *dst = padded.data() + c * plane + (r + pad) * pw + pad;
        for (int64_t i = 0; i < width; ++i) dst[i] = PreRelu ? std::max(src[i], 0.0f) : src[i];
      }
    }
    // One register block: 8 output channels x 32 flattened positions, written straight to y.
    auto run_block = [&](int64_t block, int64_t chunk) {
      const float *wb = packed + block * in_ch * K * K * kBlockCo;
      Vec16 acc0[kBlockCo], acc1[kBlockCo];
      for (int64_t j = 0; j < kBlockCo; ++j) {
        const float b = bias[block * kBlockCo + j];
        acc0[j] = Vec16{} + b;
        acc1[j] = Vec16{} + b;
      }
      const float *base = padded.data() + chunk * kChunk;
      for (int64_t c = 0; c < in_ch; ++c) {
        const float *in = base + c * plane;
        const float *w = wb + c * K * K * kBlockCo;
        for (int64_t t = 0; t < K * K; ++t) {
          const float *p = in + (t / K) * pw + (t % K);
          const Vec16 v0 = LoadVec(p), v1 = LoadVec(p + 16);
          for (int64_t j = 0; j < kBlockCo; ++j) {
            const float wv = w[t * kBlockCo + j];
            acc0[j] += wv * v0;
            acc1[j] += wv * v1;
          }
        }
      }
      float values[kBlockCo][kChunk];
      for (int64_t j = 0; j < kBlockCo; ++j) {
        std::memcpy(values[j], &acc0[j], sizeof(Vec16));
        std::memcpy(values[j] + 16, &acc1[j], sizeof(Vec16));
      }
      const int64_t first = chunk * kChunk, last = std::min(first + kChunk, span);
      for (int64_t f = first, r = first / pw, i = first % pw; f < last; ++f) {
        if (i < width) {
          const int64_t offset = (n * out_ch + block * kBlockCo) * height * width + r * width + i;
          for (int64_t j = 0; j < kBlockCo; ++j) {
            float v = values[j][f - first];
            if (Residual) v += residual[offset + j * height * width];
            if (Act != kNone) v = std::max(v, 0.0f);
            if (Act == kRelu6) v = std::min(v, 6.0f);
            y[offset + j * height * width] = v;
          }
        }
        if (++i == pw) i = 0, ++r;
      }
    };
    const int64_t work = out_ch * in_ch * K * K * height * width;
    if (in_ch * K * K * out_ch < in_ch * plane) {  // weights smaller than the input: keep each chunk hot
      ParallelFor(chunks, work, [&](int64_t begin, int64_t end) {
        for (int64_t chunk = begin; chunk < end; ++chunk)
          for (int64_t block = 0; block < blocks; ++block) run_block(block, chunk);
      });
    } else {  // keep each block's weights hot
      ParallelFor(blocks, work, [&](int64_t begin, int64_t end) {
        for (int64_t block = begin; block < end; ++block)
          for (int64_t chunk = 0; chunk < chunks; ++chunk) run_block(block, chunk);
      });
    }
  }
  return 0;
}

#define CONV_ENTRY(name, k, pre_relu, residual, act)                                             \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                      void *stream, void *extra) {                                               \
    return ConvKxK<k, pre_relu, residual, act>(nparam, params, ndims, shapes);                    \
  }
CONV_ENTRY(Conv3x3Plain, 3, false, false, kNone)
CONV_ENTRY(Conv3x3PreRelu, 3, true, false, kNone)
CONV_ENTRY(Conv3x3PreReluResidual, 3, true, true, kNone)
CONV_ENTRY(Conv3x3PostRelu, 3, false, false, kRelu)
CONV_ENTRY(Conv1x1Plain, 1, false, false, kNone)
CONV_ENTRY(Conv1x1Residual, 1, false, true, kNone)
CONV_ENTRY(Conv1x1Relu6, 1, false, false, kRelu6)
"""
# std::thread, not OpenMP: libgomp's spinning workers fought MindSpore's pool (PyNative ran 2x slower)
_CXX_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-pthread"]


def _kernel_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "depth_ms", "kernels")


@functools.lru_cache(maxsize=None)
def native_library() -> str | None:
    """Path of the compiled native kernels, or None (disabled, no compiler, or they failed to build).

    Built once per source / flags / host (``-march=native``) into :func:`_kernel_cache_dir`.
    """
    if os.environ.get("DEPTH_MS_NATIVE_KERNELS", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        _LOG.info("no C++ compiler: MiDaS small runs on MindSpore's Conv2D only")
        return None
    key = hashlib.sha256("\n".join([_NATIVE_SOURCE, compiler, *_CXX_FLAGS, platform.node(),
                                     platform.machine()]).encode()).hexdigest()[:16]
    path = os.path.join(_kernel_cache_dir(), f"midas_small_{key}.so")
    if os.path.exists(path):
        return path
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
            source = os.path.join(tmp, "midas_small.cc")
            with open(source, "w") as f:
                f.write(_NATIVE_SOURCE)
            built = os.path.join(tmp, "midas_small.so")
            subprocess.run([compiler, *_CXX_FLAGS, "-o", built, source], check=True, capture_output=True,
                           timeout=120)
            os.replace(built, path)  # atomic: concurrent builders each install a complete file
    except (OSError, subprocess.SubprocessError) as e:
        _LOG.warning("cannot build the native kernels (%s): using MindSpore's Conv2D", e)
        return None
    return path


@functools.lru_cache(maxsize=None)
def native_depthwise_op(stride: int):
    """``ops.Custom`` running depthwise conv + bias + ReLU6 with ``stride``, or None when unavailable."""
    library = native_library()
    if library is None or stride not in (1, 2):
        return None

    def out_shape(x_shape, weight_shape, bias_shape):
        return (x_shape[0], x_shape[1], -(-x_shape[2] // stride), -(-x_shape[3] // stride))

    def out_dtype(x_dtype, weight_dtype, bias_dtype):
        return x_dtype

    return ops.Custom(f"{library}:DepthwiseBiasRelu6Stride{stride}", out_shape=out_shape, out_dtype=out_dtype,
                      func_type="aot")


CONV_KERNELS = ("Conv3x3Plain", "Conv3x3PreRelu", "Conv3x3PreReluResidual", "Conv3x3PostRelu", "Conv1x1Plain",
                "Conv1x1Residual", "Conv1x1Relu6")
PACK = 8  # output channels per register block of the conv kernels


@functools.lru_cache(maxsize=None)
def native_conv_op(kernel: str):
    """``ops.Custom`` for the conv kernel named ``kernel`` (one of CONV_KERNELS), or None when unavailable."""
    library = native_library()
    if library is None or kernel not in CONV_KERNELS:
        return None

    def out_shape(x_shape, weight_shape, bias_shape, *residual_shape):
        return (x_shape[0], bias_shape[0], x_shape[2], x_shape[3])

    def out_dtype(x_dtype, *other_dtypes):
        return x_dtype

    return ops.Custom(f"{library}:{kernel}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot")


def pack_conv(weight: np.ndarray) -> np.ndarray:
    """(Co, Ci, k, k) -> (Co / 8, Ci, k * k, 8): eight output channels side by side per input channel and tap."""
    co, ci, k = weight.shape[:3]
    return np.ascontiguousarray(weight.reshape(co // PACK, PACK, ci, k * k).transpose(0, 2, 3, 1), np.float32)
