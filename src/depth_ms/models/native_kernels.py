"""Native CPU convolution kernels for MindSpore (``ops.Custom``, func_type "aot"), built on first use.

MindSpore's CPU Conv2D runs through oneDNN's ``gemm:jit`` on plain NCHW (DNNL_VERBOSE): 2-3 GFLOP/s for
depthwise convolutions and 50-90 GFLOP/s for small 3x3 ones, which kept MiDaS small far from 15 frames/s
on 2 cores. No maintained library offers these as MindSpore CPU ops, so the C++ source below (float32,
register-blocked, std::thread) is compiled once with the system C++ compiler into
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

# Native CPU kernels, float32, on up to $DEPTH_MS_NATIVE_THREADS threads (default: all hardware
# threads; jobs under 2M multiply-adds run serially). MindSpore keys a Custom op's shape inference by
# its function name, hence one entry point per variant:
# - NCHW (MiDaS decoder) Conv3x3{Plain,PreRelu,PreReluResidual,PostRelu}, Conv1x1Plain: KxK conv,
#   stride 1, padding K // 2, + bias, with ReLU on the input / a residual added / ReLU on the output;
#   x (N, Ci, H, W), weight packed as (Co / 8, Ci, K * K, 8) (see pack_conv), bias (Co,)
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
_NATIVE_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

// Hardware threads to use: DEPTH_MS_NATIVE_THREADS, default all (at most 16).
static int64_t Threads() {
  static const int64_t threads = [] {
    const char *env = std::getenv("DEPTH_MS_NATIVE_THREADS");
    const int64_t n = env ? std::atoll(env) : static_cast<int64_t>(std::thread::hardware_concurrency());
    return std::max<int64_t>(1, std::min<int64_t>(n, 16));
  }();
  return threads;
}

// Threads() - 1 persistent workers sleeping on a condition variable (no spinning, which would fight
// MindSpore's own pool). Starting threads per call cost ~30 us each, ~90 times per MiDaS frame.
// One job at a time: a caller that finds the pool busy (MindSpore may launch kernels concurrently)
// or in a forked child is told to run the job itself.
class WorkerPool {
 public:
  static WorkerPool &Get() {
    static WorkerPool *pool = new WorkerPool(Threads() - 1);  // never destroyed: workers outlive exit
    return *pool;
  }

  // Runs part(p) for p in [0, parts), the caller taking p = 0; false (nothing run) if unavailable.
  bool Run(int64_t parts, const std::function<void(int64_t)> &part) {
    if (getpid() != pid_ || parts - 1 > static_cast<int64_t>(workers_)) return false;
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      part_ = &part, parts_ = parts, pending_ = parts - 1, ++generation_;
    }
    wake_.notify_all();
    part(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    return true;
  }

 private:
  explicit WorkerPool(int64_t workers) : pid_(getpid()), workers_(workers) {
    for (int64_t i = 1; i <= workers; ++i) std::thread([this, i] { Loop(i); }).detach();
  }

  void Loop(int64_t index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t)> *part;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= parts_) continue;
        part = part_;
      }
      (*part)(index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const pid_t pid_;
  const int64_t workers_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)> *part_ = nullptr;
  int64_t parts_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
};

// Runs body(begin, end) over [0, count) split across up to Threads() threads, the caller taking the
// first share; small jobs (< 2M multiply-adds) stay serial.
template <typename Body>
static void ParallelFor(int64_t count, int64_t work, Body body) {
  const int64_t parts = std::min<int64_t>(work >= (int64_t{1} << 21) ? Threads() : 1, count);
  if (parts > 1) {
    const std::function<void(int64_t)> part = [&](int64_t p) { body(count * p / parts, count * (p + 1) / parts); };
    if (WorkerPool::Get().Run(parts, part)) return;
  }
  body(0, count);
}

// A per-thread scratch buffer of at least `size` floats (slot: which of the caller's buffers), kept
// between calls so that large temporaries do not page-fault on every convolution.
static float *Scratch(int slot, size_t size) {
  thread_local std::vector<float> buffers[5];
  std::vector<float> &buffer = buffers[slot];
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

typedef float Vec16 __attribute__((vector_size(64)));
constexpr int64_t kBlockCo = 8;  // output channels per register block
constexpr int64_t kChunk = 32;   // flattened output positions per register block (2 vectors)
enum Activation { kNone, kRelu, kRelu6 };

template <Activation Act>
static inline float ActivateScalar(float v) {
  if (Act != kNone) v = std::max(v, 0.0f);
  if (Act == kRelu6) v = std::min(v, 6.0f);
  return v;
}

static inline Vec16 LoadVec(const float *p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// KxK convolution (K = 1 or 3), stride 1, zero padding K / 2, NCHW float32, on packed weights
// (Co / 8, Ci, K * K, 8), + bias, optional ReLU on the input, residual add and output activation.
// Each input plane is copied zero-padded to (H + K - 1, W + K - 1) and the output is computed on the
// flattened padded grid, so every tap is one contiguous shifted load.
template <int K, bool PreRelu, bool Residual, Activation Act, bool NhwcIn = false>
static int ConvKxK(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != (Residual ? 5 : 4) || ndims[0] != 4 || ndims[1] != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *packed = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const float *residual = Residual ? static_cast<const float *>(params[3]) : nullptr;
  float *y = static_cast<float *>(params[nparam - 1]);
  // NhwcIn: x is (N, H, W, C') channels last with C' >= Ci (padding channels ignored)
  const int64_t batch = shapes[0][0], in_ch = shapes[1][1], x_ch = NhwcIn ? shapes[0][3] : in_ch;
  const int64_t height = shapes[0][NhwcIn ? 1 : 2], width = shapes[0][NhwcIn ? 2 : 3];
  const int64_t blocks = shapes[1][0], out_ch = blocks * kBlockCo;
  if (shapes[0][NhwcIn ? 3 : 1] < in_ch || (!NhwcIn && shapes[0][1] != in_ch)) return 2;
  if (shapes[1][2] != K * K || shapes[1][3] != kBlockCo) return 2;
  constexpr int64_t pad = K / 2;
  const int64_t pw = width + 2 * pad, plane = (height + 2 * pad) * pw;
  const int64_t span = (height - 1) * pw + width;
  const int64_t chunks = (span + kChunk - 1) / kChunk;
  const int64_t padded_size = in_ch * plane + 2 * pad * (pw + 1) + kChunk;
  float *padded = Scratch(0, padded_size);
  std::fill(padded, padded + padded_size, 0.0f);
  for (int64_t n = 0; n < batch; ++n) {
    const float *xn = x + n * x_ch * height * width;
    if (NhwcIn) {  // transpose into the padded planes, pixel by pixel
      for (int64_t r = 0; r < height; ++r) {
        for (int64_t i = 0; i < width; ++i) {
          const float *src = xn + (r * width + i) * x_ch;
          float *dst = padded + (r + pad) * pw + pad + i;
          for (int64_t c = 0; c < in_ch; ++c) dst[c * plane] = PreRelu ? std::max(src[c], 0.0f) : src[c];
        }
      }
    } else {
      for (int64_t c = 0; c < in_ch; ++c) {
        for (int64_t r = 0; r < height; ++r) {
          const float *src = xn + (c * height + r) * width;
          float *dst = padded + c * plane + (r + pad) * pw + pad;
          for (int64_t i = 0; i < width; ++i) dst[i] = PreRelu ? std::max(src[i], 0.0f) : src[i];
        }
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
      const float *base = padded + chunk * kChunk;
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
            const float v = values[j][f - first] + (Residual ? residual[offset + j * height * width] : 0.0f);
            y[offset + j * height * width] = ActivateScalar<Act>(v);
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

constexpr int64_t kLanes = 16;

static inline void StoreVec(float *p, Vec16 v) { std::memcpy(p, &v, sizeof(v)); }

template <Activation Act>
static inline Vec16 Activate(Vec16 v) {
  if (Act == kNone) return v;
  const Vec16 zero = Vec16{};
  v = v > zero ? v : zero;
  if (Act == kRelu6) {
    const Vec16 six = Vec16{} + 6.0f;
    v = v < six ? v : six;
  }
  return v;
}

// ---- Winograd F(2x2, 3x3): 3x3 convolution, stride 1, padding 1, NCHW, 2.25x fewer multiplies ----
// x (N, Ci, H, W), weight transformed as U (16, Ci, Co) = G g G^T (see pack_winograd), bias (Co,)
// [, residual (N, Co, H, W)] -> (N, Co, H, W); Co a multiple of 8. Output tiles of 2x2 pixels are
// processed in blocks of 64 consecutive (row-major) tiles, 16 tiles per vector: input transform
// V = B^T d B from even / odd column planes of the zero-padded input, 16 GEMMs M[xi] = U[xi]^T V[xi]
// (channels x tiles), output transform Y = A^T M A written back as whole rows.
constexpr int64_t kWinogradBlock = 64;

// 8 output channels x NV * 16 tiles of one GEMM: m[r][t] = sum_k u(k, r) * v[k][t], u(k, r) at
// u[k * u_stride + r] (KMajor: the transformed weight as (Ci, Co)) or u[r * u_stride + k] (rows of input
// channels); v rows of v_stride floats, m rows of m_stride floats.
template <int NV, bool KMajor>
static inline void WinogradGemm(const float *u, int64_t u_stride, int64_t ci, const float *v, int64_t v_stride,
                                float *m, int64_t m_stride) {
  constexpr int Rows = 8;
  Vec16 acc[Rows][NV];
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = Vec16{};
  for (int64_t k = 0; k < ci; ++k) {
    Vec16 vv[NV];
    for (int j = 0; j < NV; ++j) vv[j] = LoadVec(v + k * v_stride + j * kLanes);
    for (int r = 0; r < Rows; ++r) {
      const float a = KMajor ? u[k * u_stride + r] : u[r * u_stride + k];
      for (int j = 0; j < NV; ++j) acc[r][j] += a * vv[j];
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < NV; ++j) StoreVec(m + r * m_stride + j * kLanes, acc[r][j]);
}

// One GEMM of 8 output channels (KMajor u, see WinogradGemm) over `columns` tiles, a multiple of 16:
// 32 tiles per register block, then 16.
static inline void WinogradGemmColumns(const float *u, int64_t u_stride, int64_t ci, const float *v, int64_t v_stride,
                                       int64_t columns, float *m, int64_t m_stride) {
  int64_t t = 0;
  for (; t + 2 * kLanes <= columns; t += 2 * kLanes)
    WinogradGemm<2, true>(u, u_stride, ci, v + t, v_stride, m + t, m_stride);
  if (t < columns) WinogradGemm<1, true>(u, u_stride, ci, v + t, v_stride, m + t, m_stride);
}

// B^T d B of 4x4 patches d, one patch per lane.
static inline void InputTransform(const Vec16 d[4][4], Vec16 out[16]) {
  Vec16 t[4][4];
  for (int c = 0; c < 4; ++c) {
    t[0][c] = d[0][c] - d[2][c];
    t[1][c] = d[1][c] + d[2][c];
    t[2][c] = d[2][c] - d[1][c];
    t[3][c] = d[1][c] - d[3][c];
  }
  for (int r = 0; r < 4; ++r) {
    out[r * 4 + 0] = t[r][0] - t[r][2];
    out[r * 4 + 1] = t[r][1] + t[r][2];
    out[r * 4 + 2] = t[r][2] - t[r][1];
    out[r * 4 + 3] = t[r][1] - t[r][3];
  }
}

// A^T m A of 4x4 transformed tiles m, one tile per lane -> y[i][j], 2x2 outputs.
static inline void OutputTransform(const Vec16 m[16], Vec16 y[2][2]) {
  Vec16 s[2][4];
  for (int c = 0; c < 4; ++c) {
    s[0][c] = m[c] + m[4 + c] + m[8 + c];
    s[1][c] = m[4 + c] - m[8 + c] - m[12 + c];
  }
  for (int i = 0; i < 2; ++i) {
    y[i][0] = s[i][0] + s[i][1] + s[i][2];
    y[i][1] = s[i][1] - s[i][2] - s[i][3];
  }
}

// The input's columns by their phase modulo Phases (2: even / odd), zero-padded by one pixel:
// phases[c][p][row][j] = xpad[row][Phases * j + p], `rows` x `cols` per plane (see WinogradGeometry).
template <int Phases, bool PreRelu>
static void FillPhases(const float *xn, int64_t in_ch, int64_t height, int64_t width, int64_t rows, int64_t cols,
                       float *phases) {
  const int64_t phase = rows * cols;
  ParallelFor(in_ch, in_ch * phase * 64, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      float *pc = phases + c * Phases * phase;
      std::fill(pc, pc + Phases * phase, 0.0f);
      for (int64_t r = 0; r < height; ++r) {
        const float *src = xn + (c * height + r) * width;
        for (int64_t p = 0; p < Phases; ++p) {  // padded column Phases * j + p is input column Phases * j + p - 1
          float *dst = pc + p * phase + (r + 1) * cols;
          for (int64_t j = p == 0 ? 1 : 0, stop = (width - p + Phases) / Phases; j < stop; ++j) {
            const float v = src[Phases * j + p - 1];
            dst[j] = PreRelu ? std::max(v, 0.0f) : v;
          }
        }
      }
    }
  });
}

// V = B^T d B of one channel's tiles t0 .. t0 + count - 1 (tiles_w per row), 16 per vector, into
// vc[xi * xi_stride + g] for g < columns (tiles past `count` are zero).
static inline void TransformInputTiles(const float *even, const float *odd, int64_t cols, int64_t tiles_w,
                                       int64_t t0, int64_t count, int64_t columns, float *vc, int64_t xi_stride) {
  for (int64_t g = 0; g < columns; g += kLanes) {  // 16 tiles (one per lane) from t0 + g
    const int64_t t = t0 + g, th = t / tiles_w, tw = t % tiles_w;
    Vec16 d[4][4], out[16];
    if (tw + kLanes <= tiles_w && g + kLanes <= count) {  // along one tile row: contiguous loads
      for (int r = 0; r < 4; ++r) {
        const float *e = even + (2 * th + r) * cols + tw, *o = odd + (2 * th + r) * cols + tw;
        d[r][0] = LoadVec(e), d[r][1] = LoadVec(o), d[r][2] = LoadVec(e + 1), d[r][3] = LoadVec(o + 1);
      }
    } else {  // across tile rows or past the last tile (zeros): gathered lane by lane
      float lanes[4][4][kLanes] = {};
      for (int64_t l = 0; l < kLanes && g + l < count; ++l) {
        const int64_t lh = (t + l) / tiles_w, lw = (t + l) % tiles_w;
        for (int r = 0; r < 4; ++r) {
          const float *e = even + (2 * lh + r) * cols + lw, *o = odd + (2 * lh + r) * cols + lw;
          lanes[r][0][l] = e[0], lanes[r][1][l] = o[0], lanes[r][2][l] = e[1], lanes[r][3][l] = o[1];
        }
      }
      for (int r = 0; r < 4; ++r)
        for (int k = 0; k < 4; ++k) d[r][k] = LoadVec(lanes[r][k]);
    }
    InputTransform(d, out);
    for (int xi = 0; xi < 16; ++xi) StoreVec(vc + xi * xi_stride + g, out[xi]);
  }
}

// Y = A^T M A + bias [+ residual] [activated] of one output channel's tiles t0 .. t0 + count - 1 from
// mc[xi * xi_stride + g], written into the channel's plane yc (residual plane rc).
template <bool Residual, Activation Act>
static inline void WriteOutputTiles(const float *mc, int64_t xi_stride, float bc, int64_t t0, int64_t count,
                                    int64_t tiles_w, int64_t height, int64_t width, const float *rc, float *yc) {
  for (int64_t g = 0; g < count; g += kLanes) {  // 16 tiles (one per lane) from t0 + g
    const int64_t t = t0 + g, th = t / tiles_w, tw = t % tiles_w;
    Vec16 m[16], out[2][2];
    for (int xi = 0; xi < 16; ++xi) m[xi] = LoadVec(mc + xi * xi_stride + g);
    OutputTransform(m, out);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) out[i][j] += bc;
    if (tw + kLanes <= tiles_w && g + kLanes <= count && 2 * (tw + kLanes) <= width) {  // whole rows
      for (int i = 0; i < 2 && 2 * th + i < height; ++i) {  // interleave the two output columns
        typedef int Mask16 __attribute__((vector_size(64)));
        const Mask16 lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
        const Mask16 hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
        float *row = yc + (2 * th + i) * width + 2 * tw;
        Vec16 first = __builtin_shuffle(out[i][0], out[i][1], lo);
        Vec16 second = __builtin_shuffle(out[i][0], out[i][1], hi);
        if (Residual) {
          const float *res_row = rc + (2 * th + i) * width + 2 * tw;
          first += LoadVec(res_row);
          second += LoadVec(res_row + kLanes);
        }
        StoreVec(row, Activate<Act>(first));
        StoreVec(row + kLanes, Activate<Act>(second));
      }
    } else {  // pixel by pixel
      float values[2][2][kLanes];
      std::memcpy(values, out, sizeof(values));
      for (int64_t l = 0; l < kLanes && g + l < count; ++l) {
        const int64_t lh = (t + l) / tiles_w, lw = (t + l) % tiles_w;
        for (int i = 0; i < 2 && 2 * lh + i < height; ++i) {
          for (int j = 0; j < 2 && 2 * lw + j < width; ++j) {
            const int64_t at = (2 * lh + i) * width + 2 * lw + j;
            yc[at] = ActivateScalar<Act>(values[i][j][l] + (Residual ? rc[at] : 0.0f));
          }
        }
      }
    }
  }
}

// Tile grid and phase planes of an H x W map.
struct WinogradGeometry {
  int64_t tiles_h, tiles_w, tiles, rows, cols, phase;
  WinogradGeometry(int64_t height, int64_t width)
      : tiles_h((height + 1) / 2), tiles_w((width + 1) / 2), tiles(tiles_h * tiles_w), rows(2 * tiles_h + 2),
        cols(tiles_w + 1), phase(rows * cols) {}
};

template <bool PreRelu, bool Residual, Activation Act>
static int Winograd3x3(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != (Residual ? 5 : 4) || ndims[0] != 4 || ndims[1] != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *u = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const float *residual = Residual ? static_cast<const float *>(params[3]) : nullptr;
  float *y = static_cast<float *>(params[nparam - 1]);
  const int64_t batch = shapes[0][0], in_ch = shapes[0][1], height = shapes[0][2], width = shapes[0][3];
  const int64_t out_ch = shapes[1][2];
  if (shapes[1][0] != 16 || shapes[1][1] != in_ch || out_ch % 8) return 2;
  const WinogradGeometry geo(height, width);
  const int64_t tiles = geo.tiles;
  float *phases = Scratch(0, in_ch * 2 * geo.phase);
  constexpr int64_t block = kWinogradBlock;
  const int64_t blocks = (tiles + block - 1) / block, plane = height * width;
  const int64_t span = std::min(block, (tiles + kLanes - 1) / kLanes * kLanes);  // buffer row: tiles per block
  for (int64_t n = 0; n < batch; ++n) {
    FillPhases<2, PreRelu>(x + n * in_ch * plane, in_ch, height, width, geo.rows, geo.cols, phases);
    float *yn = y + n * out_ch * plane;
    const float *rn = Residual ? residual + n * out_ch * plane : nullptr;
    // work items: (block, slice of the output channels); few blocks (small maps) split the channels
    // instead, each item then repeating its block's (cheap) input transform
    const int64_t slices = std::min<int64_t>(out_ch / 8, std::max<int64_t>(1, (Threads() + blocks - 1) / blocks));
    ParallelFor(blocks * slices, tiles * in_ch * out_ch * 16, [&](int64_t begin, int64_t end) {
      // v_buf[xi][c][t], m_buf[xi][co][t]: t = tile index within the block, rows of `span` tiles;
      // every value read is written first (no zeroing)
      float *v_buf = Scratch(1, 16 * in_ch * span), *m_buf = Scratch(2, 16 * out_ch * span);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / slices, slice = item % slices;
        const int64_t co_begin = out_ch / 8 * slice / slices * 8, co_end = out_ch / 8 * (slice + 1) / slices * 8;
        const int64_t t0 = b * block, count = std::min(block, tiles - t0);
        const int64_t columns = (count + kLanes - 1) / kLanes * kLanes;  // GEMM columns: tiles, whole vectors
        for (int64_t c = 0; c < in_ch; ++c) {
          const float *even = phases + c * 2 * geo.phase;
          TransformInputTiles(even, even + geo.phase, geo.cols, geo.tiles_w, t0, count, columns, v_buf + c * span,
                              in_ch * span);
        }
        for (int xi = 0; xi < 16; ++xi)  // 16 GEMMs, each V[xi] kept hot across the output channels
          for (int64_t co = co_begin; co < co_end; co += 8)
            WinogradGemmColumns(u + xi * in_ch * out_ch + co, out_ch, in_ch, v_buf + xi * in_ch * span, span, columns,
                                m_buf + (xi * out_ch + co) * span, span);
        for (int64_t co = co_begin; co < co_end; ++co)
          WriteOutputTiles<Residual, Act>(m_buf + co * span, out_ch * span, bias[co], t0, count, geo.tiles_w, height,
                                          width, Residual ? rn + co * plane : nullptr, yn + co * plane);
      }
    });
  }
  return 0;
}

#define WINOGRAD_ENTRY(name, pre_relu, residual, act)                                            \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                      void *stream, void *extra) {                                               \
    return Winograd3x3<pre_relu, residual, act>(nparam, params, ndims, shapes);                   \
  }
WINOGRAD_ENTRY(Winograd3x3Plain, false, false, kNone)
WINOGRAD_ENTRY(Winograd3x3PreRelu, true, false, kNone)
WINOGRAD_ENTRY(Winograd3x3PreReluResidual, true, true, kNone)
WINOGRAD_ENTRY(Winograd3x3PostRelu, false, false, kRelu)

// G [g0, g1, g2] for one column (or row) of a 3x3 kernel: F(2x2, 3x3)'s Alpha = 4 rows or F(4x4, 3x3)'s 6.
template <int Alpha>
static inline void KernelRows(Vec16 g0, Vec16 g1, Vec16 g2, Vec16 out[Alpha]) {
  if constexpr (Alpha == 4) {
    const Vec16 half = (g0 + g2) * 0.5f;
    out[0] = g0, out[1] = half + g1 * 0.5f, out[2] = half - g1 * 0.5f, out[3] = g2;
  } else {
    const Vec16 a = (g0 + g2) * (-1.0f / 6.0f), b = g1 * (1.0f / 6.0f);
    const Vec16 e = g0 * (1.0f / 24.0f) + g2 * (1.0f / 6.0f), f = g1 * (1.0f / 12.0f);
    out[0] = g0 * 0.25f, out[1] = a - b, out[2] = a + b, out[3] = e + f, out[4] = e - f, out[5] = g2;
  }
}

// The 9 taps of 16 kernels, lane l's at base + index[l] (valid for every lane), one vector per tap, and
// their transform u[a][b] = (G g G^T)[a][b].
template <int Alpha>
static inline void GatherAndTransformKernels(const float *base, const int32_t *index, Vec16 u[Alpha][Alpha]) {
  Vec16 k[9];
  for (int tap = 0; tap < 9; ++tap) {
#ifdef __AVX512F__
    const __m512 gathered = _mm512_i32gather_ps(_mm512_loadu_si512(index), base + tap, 4);
    std::memcpy(&k[tap], &gathered, sizeof(Vec16));
#else
    float lanes[kLanes];
    for (int l = 0; l < kLanes; ++l) lanes[l] = base[index[l] + tap];
    k[tap] = LoadVec(lanes);
#endif
  }
  Vec16 gg[3][Alpha];  // G g, per kernel column j: gg[j][a]
  for (int j = 0; j < 3; ++j) KernelRows<Alpha>(k[j], k[3 + j], k[6 + j], gg[j]);
  for (int a = 0; a < Alpha; ++a) KernelRows<Alpha>(gg[0][a], gg[1][a], gg[2][a], u[a]);  // (G g) G^T
}

// The first n (<= 16) lanes of v to p.
static inline void StoreFirst(float *p, Vec16 v, int64_t n) {
  if (n == kLanes) {
    StoreVec(p, v);
  } else {
    float lanes[kLanes];
    std::memcpy(lanes, &v, sizeof(lanes));
    std::memcpy(p, lanes, n * sizeof(float));
  }
}

// U = G g G^T of output channels o0 .. o0 + rows - 1 from the raw weight g (Co, Ci, 3, 3), into
// ub[(xi * rows + r) * ci + c] (r = o - o0): 16 input channels per vector, read with a stride-9 gather.
static void TransformWeights(const float *g, int64_t ci, int64_t o0, int64_t rows, float *ub) {
  // input channel c + l at 9 l; in the last, partial vector the last channel repeated past the end
  alignas(64) int32_t index[kLanes], tail_index[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    index[l] = 9 * l;
    tail_index[l] = static_cast<int32_t>(9 * std::min<int64_t>(l, (ci - 1) % kLanes));
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float *go = g + (o0 + r) * ci * 9;
    for (int64_t c = 0; c < ci; c += kLanes) {
      const int64_t n = std::min<int64_t>(kLanes, ci - c);
      Vec16 u[4][4];
      GatherAndTransformKernels<4>(go + c * 9, n == kLanes ? index : tail_index, u);
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) StoreFirst(ub + ((a * 4 + b) * rows + r) * ci + c, u[a][b], n);
    }
  }
}

// Winograd F(2x2, 3x3) from the raw weight, by panels of tiles whose V (all images) fits kPanelValues
// floats (one panel up to 16M values, e.g. 1920 channels x 300 tiles): the panel's V first (shared), then
// per group of output channels its U (never the whole U in memory), 16 GEMMs over the panel's tiles and
// the output transform. The weights are read once per panel, as in a direct convolution, and V once per
// group. At 30x40 with 960-1920 input channels this took half the time of transforming the whole U first
// and streaming it per block of tiles (1920 -> 640: 99 vs 214 ms); at 15x20 it took 0.35-0.7x oneDNN's time.
constexpr int64_t kPanelValues = int64_t{1} << 24;  // 64 MB

template <bool Residual, Activation Act>
static int Winograd3x3Panels(const float *x, const float *g, const float *bias, const float *residual, float *y,
                             int64_t batch, int64_t in_ch, int64_t out_ch, int64_t height, int64_t width) {
  const WinogradGeometry geo(height, width);
  const int64_t plane = height * width;
  const int64_t panel = std::max<int64_t>(kLanes, kPanelValues / (16 * in_ch * batch) / kLanes * kLanes);
  const int64_t panel_columns = std::min(panel, (geo.tiles + kLanes - 1) / kLanes * kLanes);
  const int64_t v_size = 16 * in_ch * panel_columns;  // per image: v[xi][c][t]
  float *phases = Scratch(0, batch * in_ch * 2 * geo.phase), *v = Scratch(1, batch * v_size);
  for (int64_t n = 0; n < batch; ++n)
    FillPhases<2, false>(x + n * in_ch * plane, in_ch, height, width, geo.rows, geo.cols,
                      phases + n * in_ch * 2 * geo.phase);
  // groups of up to 8 blocks of 8 channels, at least 4 groups per thread where the channels allow
  const int64_t channel_blocks = out_ch / 8;
  const int64_t group = std::max<int64_t>(1, std::min<int64_t>(8, channel_blocks / (4 * Threads())));
  const int64_t groups = (channel_blocks + group - 1) / group;
  for (int64_t t0 = 0; t0 < geo.tiles; t0 += panel) {
    const int64_t count = std::min(panel, geo.tiles - t0), columns = (count + kLanes - 1) / kLanes * kLanes;
    ParallelFor(batch * in_ch, batch * in_ch * columns * 64, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {  // item = n * in_ch + c
        const float *even = phases + item * 2 * geo.phase;
        float *vc = v + item / in_ch * v_size + item % in_ch * columns;
        TransformInputTiles(even, even + geo.phase, geo.cols, geo.tiles_w, t0, count, columns, vc, in_ch * columns);
      }
    });
    ParallelFor(groups, batch * count * in_ch * out_ch * 16, [&](int64_t begin, int64_t end) {
      float *ub = Scratch(3, 16 * 8 * group * in_ch), *m = Scratch(2, 16 * 8 * group * columns);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t o0 = item * group * 8, rows = std::min(group * 8, out_ch - o0);
        TransformWeights(g, in_ch, o0, rows, ub);  // ub[xi][r][c]
        for (int64_t n = 0; n < batch; ++n) {
          const float *vn = v + n * v_size;
          for (int xi = 0; xi < 16; ++xi) {  // m[xi][r][t] = sum_c ub[xi][r][c] v[xi][c][t]
            const float *vx = vn + xi * in_ch * columns, *ux = ub + xi * rows * in_ch;
            float *mx = m + xi * rows * columns;
            int64_t t = 0;
            for (; t + 2 * kLanes <= columns; t += 2 * kLanes)
              for (int64_t r = 0; r < rows; r += 8)
                WinogradGemm<2, false>(ux + r * in_ch, in_ch, in_ch, vx + t, columns, mx + r * columns + t, columns);
            if (t < columns)
              for (int64_t r = 0; r < rows; r += 8)
                WinogradGemm<1, false>(ux + r * in_ch, in_ch, in_ch, vx + t, columns, mx + r * columns + t, columns);
          }
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t at = (n * out_ch + o0 + r) * plane;
            WriteOutputTiles<Residual, Act>(m + r * columns, rows * columns, bias[o0 + r], t0, count, geo.tiles_w,
                                            height, width, Residual ? residual + at : nullptr, y + at);
          }
        }
      }
    });
  }
  return 0;
}

// ---- Winograd F(4x4, 3x3) on large maps: 4x4 output tiles from 6x6 patches, 36 GEMMs, 4x fewer multiplies ----
// (Lavin & Gray's B, G, A with points 0, +-1, +-2.) Same scheme as Winograd3x3 above: blocks of 64
// consecutive tiles, input phases by column modulo 4, U (36, Ci, Co) transformed on every call.

// B^T d of six rows (or columns) d0..d5 of a 6x6 patch.
static inline void InputRows6(const Vec16 d[6], Vec16 out[6]) {
  const Vec16 d4_4d2 = d[4] - 4.0f * d[2], d3_4d1 = d[3] - 4.0f * d[1], d4_d2 = d[4] - d[2], d3_d1 = d[3] - d[1];
  out[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
  out[1] = d4_4d2 + d3_4d1;
  out[2] = d4_4d2 - d3_4d1;
  out[3] = d4_d2 + 2.0f * d3_d1;
  out[4] = d4_d2 - 2.0f * d3_d1;
  out[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

// A^T m of six rows (or columns) m0..m5 -> four.
static inline void OutputRows4(const Vec16 m[6], Vec16 y[4]) {
  const Vec16 s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  y[0] = m[0] + s12 + s34;
  y[1] = d12 + 2.0f * d34;
  y[2] = s12 + 4.0f * s34;
  y[3] = d12 + 8.0f * d34 + m[5];
}

// U = G g G^T (36, Ci, Co) from the raw weight g (Co, Ci, 3, 3): 16 output channels per vector, the
// rows of 16 filters read side by side with a gather (each row streams through its cache lines).
static void TransformWeights6x6(const float *g, int64_t ci, int64_t co, float *u) {
  ParallelFor((co + kLanes - 1) / kLanes, co * ci * 64, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t o0 = blk * kLanes, n = std::min<int64_t>(kLanes, co - o0);
      alignas(64) int32_t index[kLanes];  // filter o0 + l, the last one repeated past the end
      for (int l = 0; l < kLanes; ++l) index[l] = static_cast<int32_t>(std::min<int64_t>(l, n - 1) * ci * 9);
      for (int64_t c = 0; c < ci; ++c) {
        Vec16 t[6][6];
        GatherAndTransformKernels<6>(g + (o0 * ci + c) * 9, index, t);
        for (int r = 0; r < 6; ++r)
          for (int s = 0; s < 6; ++s) StoreFirst(u + ((r * 6 + s) * ci + c) * co + o0, t[r][s], n);
      }
    }
  });
}

constexpr int64_t kLargeMapMinTiles = 256, kLargeMapMaxU = int64_t{1} << 24;  // 4x4 tiles; U floats (64 MB)

template <bool Residual, Activation Act>
static int Winograd4x4Raw(const float *x, const float *g, const float *bias, const float *residual, float *y,
                          int64_t batch, int64_t in_ch, int64_t out_ch, int64_t height, int64_t width) {
  const int64_t tiles_h = (height + 3) / 4, tiles_w = (width + 3) / 4, tiles = tiles_h * tiles_w;
  // the input padded by one pixel, split by column modulo 4 (see FillPhases)
  const int64_t rows = 4 * tiles_h + 2, cols = tiles_w + 1, phase = rows * cols, plane = height * width;
  float *u = Scratch(3, 36 * in_ch * out_ch), *phases = Scratch(0, in_ch * 4 * phase);
  TransformWeights6x6(g, in_ch, out_ch, u);
  constexpr int64_t block = kWinogradBlock;
  const int64_t blocks = (tiles + block - 1) / block;
  const int64_t span = std::min(block, (tiles + kLanes - 1) / kLanes * kLanes);
  for (int64_t n = 0; n < batch; ++n) {
    FillPhases<4, false>(x + n * in_ch * plane, in_ch, height, width, rows, cols, phases);
    float *yn = y + n * out_ch * plane;
    const float *rn = Residual ? residual + n * out_ch * plane : nullptr;
    const int64_t slices = std::min<int64_t>(out_ch / 8, std::max<int64_t>(1, (Threads() + blocks - 1) / blocks));
    ParallelFor(blocks * slices, tiles * in_ch * out_ch * 36, [&](int64_t begin, int64_t end) {
      float *v_buf = Scratch(1, 36 * in_ch * span), *m_buf = Scratch(2, 36 * out_ch * span);  // [xi][c or co][t]
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / slices, slice = item % slices;
        const int64_t co_begin = out_ch / 8 * slice / slices * 8, co_end = out_ch / 8 * (slice + 1) / slices * 8;
        const int64_t t0 = b * block, count = std::min(block, tiles - t0);
        const int64_t columns = (count + kLanes - 1) / kLanes * kLanes;
        for (int64_t c = 0; c < in_ch; ++c) {  // input transform, 16 tiles per vector
          const float *pc = phases + c * 4 * phase;
          for (int64_t gi = 0; gi < columns; gi += kLanes) {
            const int64_t t = t0 + gi, th = t / tiles_w, tw = t % tiles_w;
            Vec16 d[6][6];
            if (tw + kLanes <= tiles_w && gi + kLanes <= count) {  // along one tile row: contiguous loads
              for (int r = 0; r < 6; ++r)
                for (int k = 0; k < 6; ++k)
                  d[r][k] = LoadVec(pc + (k & 3) * phase + (4 * th + r) * cols + tw + (k >> 2));
            } else {  // across tile rows or past the last tile (zeros): lane by lane
              float lanes[6][6][kLanes] = {};
              for (int64_t l = 0; l < kLanes && gi + l < count; ++l) {
                const int64_t lh = (t + l) / tiles_w, lw = (t + l) % tiles_w;
                for (int r = 0; r < 6; ++r)
                  for (int k = 0; k < 6; ++k)
                    lanes[r][k][l] = pc[(k & 3) * phase + (4 * lh + r) * cols + lw + (k >> 2)];
              }
              for (int r = 0; r < 6; ++r)
                for (int k = 0; k < 6; ++k) d[r][k] = LoadVec(lanes[r][k]);
            }
            Vec16 t1[6][6], col[6], out[6];
            for (int k = 0; k < 6; ++k) {  // B^T d, column by column
              for (int r = 0; r < 6; ++r) col[r] = d[r][k];
              InputRows6(col, out);
              for (int r = 0; r < 6; ++r) t1[r][k] = out[r];
            }
            float *vc = v_buf + c * span + gi;
            for (int r = 0; r < 6; ++r) {  // (B^T d) B, row by row
              InputRows6(t1[r], out);
              for (int s = 0; s < 6; ++s) StoreVec(vc + (r * 6 + s) * in_ch * span, out[s]);
            }
          }
        }
        for (int xi = 0; xi < 36; ++xi)  // 36 GEMMs, each V[xi] kept hot across the output channels
          for (int64_t co = co_begin; co < co_end; co += 8)
            WinogradGemmColumns(u + xi * in_ch * out_ch + co, out_ch, in_ch, v_buf + xi * in_ch * span, span, columns,
                                m_buf + (xi * out_ch + co) * span, span);
        for (int64_t co = co_begin; co < co_end; ++co) {  // output transform + bias [+ residual] [activated]
          const float *mc = m_buf + co * span;
          float *yc = yn + co * plane;
          const float *rc = Residual ? rn + co * plane : nullptr;
          for (int64_t gi = 0; gi < count; gi += kLanes) {
            const int64_t t = t0 + gi, th = t / tiles_w, tw = t % tiles_w;
            Vec16 t1[4][6], col[6], out[4][4];
            for (int k = 0; k < 6; ++k) {  // A^T m, column by column
              for (int r = 0; r < 6; ++r) col[r] = LoadVec(mc + (r * 6 + k) * out_ch * span + gi);
              Vec16 y4[4];
              OutputRows4(col, y4);
              for (int i = 0; i < 4; ++i) t1[i][k] = y4[i];
            }
            for (int i = 0; i < 4; ++i) {
              OutputRows4(t1[i], out[i]);
              for (int j = 0; j < 4; ++j) out[i][j] += bias[co];
            }
            if (tw + kLanes <= tiles_w && gi + kLanes <= count && 4 * (tw + kLanes) <= width) {  // whole rows
              typedef int Mask16 __attribute__((vector_size(64)));
              const Mask16 lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
              const Mask16 hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
              const Mask16 pairs_lo = {0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23};
              const Mask16 pairs_hi = {8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31};
              for (int i = 0; i < 4 && 4 * th + i < height; ++i) {  // interleave the four output columns
                const Vec16 a_lo = __builtin_shuffle(out[i][0], out[i][1], lo);
                const Vec16 a_hi = __builtin_shuffle(out[i][0], out[i][1], hi);
                const Vec16 b_lo = __builtin_shuffle(out[i][2], out[i][3], lo);
                const Vec16 b_hi = __builtin_shuffle(out[i][2], out[i][3], hi);
                const int64_t at = (4 * th + i) * width + 4 * tw;
                Vec16 quarters[4] = {__builtin_shuffle(a_lo, b_lo, pairs_lo), __builtin_shuffle(a_lo, b_lo, pairs_hi),
                                     __builtin_shuffle(a_hi, b_hi, pairs_lo), __builtin_shuffle(a_hi, b_hi, pairs_hi)};
                for (int q = 0; q < 4; ++q) {
                  if (Residual) quarters[q] += LoadVec(rc + at + q * kLanes);
                  StoreVec(yc + at + q * kLanes, Activate<Act>(quarters[q]));
                }
              }
            } else {  // pixel by pixel
              float values[4][4][kLanes];
              std::memcpy(values, out, sizeof(values));
              for (int64_t l = 0; l < kLanes && gi + l < count; ++l) {
                const int64_t lh = (t + l) / tiles_w, lw = (t + l) % tiles_w;
                for (int i = 0; i < 4 && 4 * lh + i < height; ++i)
                  for (int j = 0; j < 4 && 4 * lw + j < width; ++j) {
                    const int64_t at = (4 * lh + i) * width + 4 * lw + j;
                    yc[at] = ActivateScalar<Act>(values[i][j][l] + (Residual ? rc[at] : 0.0f));
                  }
              }
            }
          }
        }
      }
    });
  }
  return 0;
}

// Winograd3x3Raw{,Relu,ResidualRelu}: the same convolution from the raw weight (Co, Ci, 3, 3): x, weight,
// bias [, residual (N, Co, H, W)] -> (N, Co, H, W) [+ residual] [ReLU]. Large maps with a U of at most
// 64 MB take 4x4 tiles, the rest 2x2 tiles by panels.
template <bool Residual, Activation Act>
static int WinogradRaw(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != (Residual ? 5 : 4) || ndims[0] != 4 || ndims[1] != 4 || shapes[1][2] != 3 || shapes[1][3] != 3)
    return 1;
  const int64_t out_ch = shapes[1][0], in_ch = shapes[1][1];
  if (shapes[0][1] != in_ch || out_ch % 8) return 2;
  const float *x = static_cast<const float *>(params[0]), *g = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const float *residual = Residual ? static_cast<const float *>(params[3]) : nullptr;
  float *y = static_cast<float *>(params[nparam - 1]);
  const int64_t batch = shapes[0][0], height = shapes[0][2], width = shapes[0][3];
  if (36 * in_ch * out_ch <= kLargeMapMaxU && (height + 3) / 4 * ((width + 3) / 4) >= kLargeMapMinTiles)
    return Winograd4x4Raw<Residual, Act>(x, g, bias, residual, y, batch, in_ch, out_ch, height, width);
  return Winograd3x3Panels<Residual, Act>(x, g, bias, residual, y, batch, in_ch, out_ch, height, width);
}

#define WINOGRAD_RAW_ENTRY(name, residual, act)                                                  \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                      void *stream, void *extra) {                                               \
    return WinogradRaw<residual, act>(nparam, params, ndims, shapes);                             \
  }
WINOGRAD_RAW_ENTRY(Winograd3x3Raw, false, kNone)
WINOGRAD_RAW_ENTRY(Winograd3x3RawRelu, false, kRelu)
WINOGRAD_RAW_ENTRY(Winograd3x3RawResidualRelu, true, kRelu)

// ---- Elementwise and row kernels for the device layer (any shape, float32) ----

// exp(z) for z <= 0 (|relative error| ~2e-7, Cephes expf polynomial); z below -87 gives exp(-87).
static inline Vec16 ExpNonPositive(Vec16 z) {
  const Vec16 lowest = Vec16{} - 87.0f, magic = Vec16{} + 12582912.0f;  // 1.5 * 2^23: rounds to integers
  z = z < lowest ? lowest : z;
  const Vec16 n = (z * 1.44269504088896341f + magic) - magic;  // round(z / ln 2)
  const Vec16 r = (z - n * 0.693359375f) + n * 2.12194440e-4f;  // z - n ln 2 (Cody-Waite)
  Vec16 p = Vec16{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  typedef int Vec16i __attribute__((vector_size(64)));
  const Vec16i bits = (__builtin_convertvector(n, Vec16i) + 127) << 23;  // 2^n
  Vec16 scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Exact GELU x Phi(x) = relu(x) - |x| erfc(|x| / sqrt 2) / 2, erfc by Abramowitz & Stegun 7.1.26
// (|error| <= 7e-7 against float64); NaN stays NaN, infinities give NaN (as the ops fallback).
static inline Vec16 GeluErf(Vec16 x) {
  const Vec16 zero = Vec16{}, one = Vec16{} + 1.0f;
  const Vec16 a = x < zero ? -x : x;
  const Vec16 t = one / (a * (0.3275911f * 0.7071067811865476f) + 1.0f);
  const Vec16 poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
                                                                                      t * 1.061405429f))));
  return (x > zero ? x : zero) - a * poly * ExpNonPositive(x * x * -0.5f) * 0.5f;
}

// y = gelu(x), exact (erf) form; x and y of any shape.
extern "C" int GeluExact(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                         void *stream, void *extra) {
  if (nparam != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  int64_t total = 1;
  for (int d = 0; d < ndims[0]; ++d) total *= shapes[0][d];
  constexpr int64_t kPiece = 4096;
  ParallelFor((total + kPiece - 1) / kPiece, total * 32, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * kPiece, stop = std::min(end * kPiece, total); i < stop; i += kLanes) {
      if (i + kLanes <= stop) {
        StoreVec(y + i, GeluErf(LoadVec(x + i)));
      } else {
        float in[kLanes] = {}, out[kLanes];
        std::memcpy(in, x + i, (stop - i) * sizeof(float));
        StoreVec(out, GeluErf(LoadVec(in)));
        std::memcpy(y + i, out, (stop - i) * sizeof(float));
      }
    }
  });
  return 0;
}

// GEGLU: x (..., 2 D) -> y (..., D) = x[..., :D] * gelu(x[..., D:]) (exact GELU as GeluExact), D a
// multiple of 16. One pass instead of two slices, a GELU and a product (whose slices CPU graphs never
// free early).
extern "C" int GegluExact(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                          void *stream, void *extra) {
  if (nparam != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t width = shapes[0][ndims[0] - 1], half = width / 2;
  if (width % (2 * kLanes)) return 2;
  int64_t rows = 1;
  for (int d = 0; d + 1 < ndims[0]; ++d) rows *= shapes[0][d];
  ParallelFor(rows, rows * half * 32, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t i = 0; i < half; i += kLanes)
        StoreVec(y + r * half + i, LoadVec(x + r * width + i) * GeluErf(LoadVec(x + r * width + half + i)));
  });
  return 0;
}

// Sum of x[i] (Squared: of (x[i] - shift)^2) over n floats: 16-lane float partial sums over pieces of
// 4096 values, the pieces added in double.
template <bool Squared>
static inline double SumFloats(const float *x, int64_t n, float shift) {
  double total = 0.0;
  for (int64_t start = 0; start < n; start += 4096) {
    const int64_t stop = std::min(n, start + 4096);
    Vec16 acc = Vec16{};
    int64_t i = start;
    for (; i + kLanes <= stop; i += kLanes) {
      const Vec16 d = LoadVec(x + i) - shift;
      acc += Squared ? d * d : d;
    }
    float lanes[kLanes];
    std::memcpy(lanes, &acc, sizeof(acc));
    double piece = 0.0;
    for (int l = 0; l < kLanes; ++l) piece += lanes[l];
    for (; i < stop; ++i) piece += Squared ? (x[i] - shift) * (x[i] - shift) : x[i] - shift;
    total += piece;
  }
  return total;
}

// LayerNorm over the last axis: x (..., D), weight (D,), bias (D,), eps (1,) -> y (..., D); mean and
// variance per row with SumFloats (16-lane float partial sums, added in double), as GroupNorm.
extern "C" int LayerNormLastAxis(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  if (nparam != 5 || ndims[1] != 1 || ndims[2] != 1) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *weight = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const double eps = static_cast<const float *>(params[3])[0];
  float *y = static_cast<float *>(params[4]);
  const int64_t dim = shapes[0][ndims[0] - 1];
  if (shapes[1][0] != dim || shapes[2][0] != dim) return 2;
  int64_t rows = 1;
  for (int d = 0; d + 1 < ndims[0]; ++d) rows *= shapes[0][d];
  ParallelFor(rows, rows * dim * 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *xr = x + r * dim;
      float *yr = y + r * dim;
      const float shift = static_cast<float>(SumFloats<false>(xr, dim, 0.0f) / dim);  // mean
      const double squares = SumFloats<true>(xr, dim, shift);  // centred second pass
      const float scale = static_cast<float>(1.0 / std::sqrt(squares / dim + eps));
      for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] - shift) * scale * weight[i] + bias[i];
    }
  });
  return 0;
}

// ---- Fused attention: out = softmax(scale q k^T) v, without the (N, M) probabilities in memory ----

constexpr int64_t kQueryBlock = 32;  // query rows per work item (their scores stay in a per-thread buffer)
constexpr int64_t kAttnRows = 8;     // query rows per register block
constexpr int64_t kKeyChunk = 64;    // keys per pass of the probabilities . v product

// scores (rows x mpad) = q (rows x d, pre-scaled; rows a multiple of 8) . kt (d x mpad), 32 keys at a
// time for all rows, so that the 32 keys' slice of kt stays in L1.
static inline void ScoreBlock(const float *q, int64_t rows, int64_t d, const float *kt, int64_t mpad, float *scores) {
  for (int64_t j = 0; j < mpad; j += 2 * kLanes) {
    for (int64_t r0 = 0; r0 < rows; r0 += kAttnRows) {
      Vec16 acc[kAttnRows][2];
      for (int r = 0; r < kAttnRows; ++r) acc[r][0] = acc[r][1] = Vec16{};
      const float *q8 = q + r0 * d;
      for (int64_t c = 0; c < d; ++c) {
        const Vec16 k0 = LoadVec(kt + c * mpad + j), k1 = LoadVec(kt + c * mpad + j + kLanes);
        for (int r = 0; r < kAttnRows; ++r) {
          const float qv = q8[r * d + c];
          acc[r][0] += qv * k0;
          acc[r][1] += qv * k1;
        }
      }
      for (int r = 0; r < kAttnRows; ++r) {
        StoreVec(scores + (r0 + r) * mpad + j, acc[r][0]);
        StoreVec(scores + (r0 + r) * mpad + j + kLanes, acc[r][1]);
      }
    }
  }
}

// Row of scores -> exp(score - max) in place (padded columns 0); returns 1 / their sum.
static inline float SoftmaxRow(float *row, int64_t m, int64_t mpad) {
  for (int64_t j = m; j < mpad; ++j) row[j] = row[0];
  Vec16 vmax = LoadVec(row);
  for (int64_t j = kLanes; j < mpad; j += kLanes) {
    const Vec16 v = LoadVec(row + j);
    vmax = v > vmax ? v : vmax;
  }
  float lanes[kLanes], peak = -INFINITY;
  std::memcpy(lanes, &vmax, sizeof(vmax));
  for (int l = 0; l < kLanes; ++l) peak = std::max(peak, lanes[l]);
  Vec16 vsum = Vec16{};
  for (int64_t j = 0; j < mpad; j += kLanes) {
    Vec16 e = ExpNonPositive(LoadVec(row + j) - peak);
    if (j + kLanes > m) {  // zero the padded columns
      float tail[kLanes];
      std::memcpy(tail, &e, sizeof(e));
      for (int64_t l = std::max<int64_t>(0, m - j); l < kLanes; ++l) tail[l] = 0.0f;
      std::memcpy(&e, tail, sizeof(e));
    }
    StoreVec(row + j, e);
    vsum += e;
  }
  std::memcpy(lanes, &vsum, sizeof(vsum));
  double total = 0.0;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return static_cast<float>(1.0 / total);
}

// acc rows (8 x dv) += probabilities (8 x keys [j0, j1), row stride mpad) . v rows [j0, j1) (dv wide), for
// the NV vectors of columns from col.
template <int NV>
static inline void ValueTile(const float *probs, int64_t mpad, int64_t j0, int64_t j1, const float *v, int64_t dv,
                             int64_t col, float *acc_rows) {
  Vec16 acc[kAttnRows][NV];
  for (int r = 0; r < kAttnRows; ++r)
    for (int n = 0; n < NV; ++n) acc[r][n] = LoadVec(acc_rows + r * dv + col + n * kLanes);
  for (int64_t j = j0; j < j1; ++j) {
    Vec16 vv[NV];
    for (int n = 0; n < NV; ++n) vv[n] = LoadVec(v + j * dv + col + n * kLanes);
    for (int r = 0; r < kAttnRows; ++r) {
      const float p = probs[r * mpad + j];
      for (int n = 0; n < NV; ++n) acc[r][n] += p * vv[n];
    }
  }
  for (int r = 0; r < kAttnRows; ++r)
    for (int n = 0; n < NV; ++n) StoreVec(acc_rows + r * dv + col + n * kLanes, acc[r][n]);
}

// q (B, N, H * d), k (B, M, H * d), v (B, M, H * dv), scale (H,) -> out (B, N, H * dv): per head h (the
// h-th d / dv columns), softmax(scale q_h k_h^T) v_h; scale's length gives H (its values are all used as
// scale[0]). Heads side by side in the rows, as the projections produce them: no head transposes.
// d and dv multiples of 16. Work items are (batch, head, 32 query rows); each thread keeps k_h^T of its
// current (batch, head) (d x M padded to 32) and the item's scores (32 x M) in its scratch buffers.
extern "C" int Attention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                         void *stream, void *extra) {
  if (nparam != 5 || ndims[0] != 3 || ndims[1] != 3 || ndims[2] != 3 || ndims[3] != 1) return 1;
  const float *q = static_cast<const float *>(params[0]);
  const float *k = static_cast<const float *>(params[1]);
  const float *v = static_cast<const float *>(params[2]);
  const float scale = static_cast<const float *>(params[3])[0];
  float *out = static_cast<float *>(params[4]);
  const int64_t batch = shapes[0][0], n = shapes[0][1], m = shapes[1][1], heads = shapes[3][0];
  const int64_t qk_row = shapes[0][2], v_row = shapes[2][2], d = qk_row / heads, dv = v_row / heads;
  if (shapes[1][0] != batch || shapes[2][0] != batch || shapes[1][2] != qk_row || shapes[2][1] != m ||
      qk_row % heads || v_row % heads || d % kLanes || dv % kLanes || m < 1)
    return 2;
  const int64_t mpad = (m + 2 * kLanes - 1) / (2 * kLanes) * (2 * kLanes);
  const int64_t blocks = (n + kQueryBlock - 1) / kQueryBlock;
  ParallelFor(batch * heads * blocks, batch * n * m * (qk_row + v_row), [&](int64_t begin, int64_t end) {
    float *kt = Scratch(0, d * mpad);
    float *qs = Scratch(1, kQueryBlock * d);
    float *scores = Scratch(2, kQueryBlock * mpad);
    float *acc = Scratch(3, kQueryBlock * dv);
    float *vh = Scratch(4, m * dv);
    float inv_sum[kQueryBlock];
    int64_t loaded = -1;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t bh = item / blocks, b = bh / heads, h = bh % heads, row0 = item % blocks * kQueryBlock;
      const int64_t rows = std::min(kQueryBlock, n - row0);
      if (bh != loaded) {  // k_h^T (zero-padded columns) and v_h (contiguous) of this batch and head
        const float *kb = k + b * m * qk_row + h * d;
        for (int64_t c = 0; c < d; ++c) {
          float *dst = kt + c * mpad;
          for (int64_t j = 0; j < m; ++j) dst[j] = kb[j * qk_row + c];
          std::fill(dst + m, dst + mpad, 0.0f);
        }
        const float *vb = v + b * m * v_row + h * dv;
        for (int64_t j = 0; j < m; ++j) std::memcpy(vh + j * dv, vb + j * v_row, dv * sizeof(float));
        loaded = bh;
      }
      const float *qb = q + (b * n + row0) * qk_row + h * d;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < d; ++c) qs[r * d + c] = qb[r * qk_row + c] * scale;
      const int64_t rows8 = (rows + kAttnRows - 1) / kAttnRows * kAttnRows;
      std::fill(qs + rows * d, qs + rows8 * d, 0.0f);
      ScoreBlock(qs, rows8, d, kt, mpad, scores);
      for (int64_t r = 0; r < rows; ++r) inv_sum[r] = SoftmaxRow(scores + r * mpad, m, mpad);
      std::fill(acc, acc + rows8 * dv, 0.0f);
      for (int64_t j0 = 0; j0 < m; j0 += kKeyChunk) {  // kKeyChunk rows of v stay in L1 for all query rows
        const int64_t j1 = std::min(m, j0 + kKeyChunk);
        for (int64_t r0 = 0; r0 < rows8; r0 += kAttnRows) {
          int64_t col = 0;
          for (; col + 2 * kLanes <= dv; col += 2 * kLanes)
            ValueTile<2>(scores + r0 * mpad, mpad, j0, j1, vh, dv, col, acc + r0 * dv);
          if (col < dv) ValueTile<1>(scores + r0 * mpad, mpad, j0, j1, vh, dv, col, acc + r0 * dv);
        }
      }
      float *ob = out + (b * n + row0) * v_row + h * dv;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < dv; ++c) ob[r * v_row + c] = acc[r * dv + c] * inv_sum[r];
    }
  });
  return 0;
}

// x (A, R, C, D) -> y (A, C, R, D): axes 1 and 2 swapped, rows of D values moved whole (D = 1 for a
// matrix transpose), in 32 x 32 tiles of (R, C).
extern "C" int SwapAxes(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                        void *stream, void *extra) {
  if (nparam != 2 || ndims[0] != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t outer = shapes[0][0], rows = shapes[0][1], cols = shapes[0][2], inner = shapes[0][3];
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  ParallelFor(outer * row_tiles, outer * rows * cols * inner * 4, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t a = item / row_tiles, r0 = item % row_tiles * kTile, r1 = std::min(rows, r0 + kTile);
      const float *xa = x + a * rows * cols * inner;
      float *ya = y + a * rows * cols * inner;
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        const int64_t c1 = std::min(cols, c0 + kTile);
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t r = r0; r < r1; ++r)
            if (inner == 1) ya[c * rows + r] = xa[r * cols + c];
            else std::memcpy(ya + (c * rows + r) * inner, xa + (r * cols + c) * inner, inner * sizeof(float));
      }
    }
  });
  return 0;
}

// GroupNorm: x (N, C, *spatial), weight (C,), bias (C,), eps (G,) (its length gives the number of groups,
// its values eps) -> y shaped like x, optionally ReLU; statistics per (sample, group) in double.
template <bool Relu>
static int GroupNorm(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 5 || ndims[0] < 2 || ndims[1] != 1 || ndims[2] != 1 || ndims[3] != 1) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *weight = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const float eps = static_cast<const float *>(params[3])[0];
  float *y = static_cast<float *>(params[4]);
  const int64_t batch = shapes[0][0], channels = shapes[0][1], groups = shapes[3][0];
  if (groups <= 0 || channels % groups || shapes[1][0] != channels || shapes[2][0] != channels) return 2;
  int64_t spatial = 1;
  for (int d = 2; d < ndims[0]; ++d) spatial *= shapes[0][d];
  const int64_t per_group = channels / groups, count = per_group * spatial;
  ParallelFor(batch * groups, batch * channels * spatial * 8, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const float *xg = x + item * count;
      float *yg = y + item * count;
      const float shift = static_cast<float>(SumFloats<false>(xg, count, 0.0f) / count);  // mean
      const double var = SumFloats<true>(xg, count, shift) / count;  // centred second pass
      const float rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
      const int64_t c0 = (item % groups) * per_group;
      for (int64_t c = 0; c < per_group; ++c) {
        const float scale = rstd * weight[c0 + c], offset = bias[c0 + c] - shift * scale;
        const float *xc = xg + c * spatial;
        float *yc = yg + c * spatial;
        for (int64_t i = 0; i < spatial; ++i) {
          const float v = xc[i] * scale + offset;
          yc[i] = Relu ? std::max(v, 0.0f) : v;
        }
      }
    }
  });
  return 0;
}

extern "C" int GroupNormPlain(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                              void *stream, void *extra) {
  return GroupNorm<false>(nparam, params, ndims, shapes);
}

extern "C" int GroupNormRelu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  return GroupNorm<true>(nparam, params, ndims, shapes);
}

// ---- Channels-last (NHWC) kernels for the MiDaS small encoder: channels padded to a multiple of 16 ----

// Rows positions x NV * 16 output channels: y = act(x @ w + bias (+ residual)); x rows of ci floats,
// w (ci, co) row-major, y / residual rows of co floats.
template <int Rows, int NV, bool Residual, Activation Act>
static inline void PointwiseTile(const float *x, int64_t ci, const float *w, int64_t co, const float *bias,
                                 const float *res, float *y) {
  Vec16 acc[Rows][NV];
  for (int v = 0; v < NV; ++v) {
    const Vec16 b = LoadVec(bias + v * kLanes);
    for (int r = 0; r < Rows; ++r) acc[r][v] = b;
  }
  for (int64_t k = 0; k < ci; ++k) {
    Vec16 wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = LoadVec(w + k * co + v * kLanes);
    for (int r = 0; r < Rows; ++r) {
      const float a = x[r * ci + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * wv[v];
    }
  }
  for (int r = 0; r < Rows; ++r) {
    for (int v = 0; v < NV; ++v) {
      Vec16 o = acc[r][v];
      if (Residual) o += LoadVec(res + r * co + v * kLanes);
      StoreVec(y + r * co + v * kLanes, Activate<Act>(o));
    }
  }
}

// 1x1 convolution as a GEMM over the N * H * W positions: x (N, H, W, Ci), weight (Ci, Co), bias (Co,)
// [, residual (N, H, W, Co)] -> (N, H, W, Co); Ci and Co multiples of 16.
template <bool Residual, Activation Act>
static int PointwiseNhwc(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != (Residual ? 5 : 4) || ndims[0] != 4 || ndims[1] != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const float *res = Residual ? static_cast<const float *>(params[3]) : nullptr;
  float *y = static_cast<float *>(params[nparam - 1]);
  const int64_t rows = shapes[0][0] * shapes[0][1] * shapes[0][2], ci = shapes[0][3], co = shapes[1][1];
  if (shapes[1][0] != ci || ci % kLanes || co % kLanes) return 2;
  constexpr int64_t kRows = 6, kPanel = 4 * kLanes;  // 24 accumulators: 6 positions x 64 channels
  const int64_t panels = (co + kPanel - 1) / kPanel, tiles = (rows + kRows - 1) / kRows;
  // One tile: kRows positions (fewer at the end, one at a time) x one panel of up to 64 channels.
  auto run = [&](int64_t tile, int64_t panel) {
    const int64_t r0 = tile * kRows, c0 = panel * kPanel, nr = std::min(kRows, rows - r0);
    const int64_t vectors = std::min(kPanel, co - c0) / kLanes;
    const float *xt = x + r0 * ci, *wp = w + c0, *bp = bias + c0;
    const float *rt = Residual ? res + r0 * co + c0 : nullptr;
    float *yt = y + r0 * co + c0;
    if (nr == kRows) {
      switch (vectors) {
        case 4: return PointwiseTile<kRows, 4, Residual, Act>(xt, ci, wp, co, bp, rt, yt);
        case 3: return PointwiseTile<kRows, 3, Residual, Act>(xt, ci, wp, co, bp, rt, yt);
        case 2: return PointwiseTile<kRows, 2, Residual, Act>(xt, ci, wp, co, bp, rt, yt);
        default: return PointwiseTile<kRows, 1, Residual, Act>(xt, ci, wp, co, bp, rt, yt);
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      const float *rr = Residual ? rt + r * co : nullptr;
      for (int64_t v = 0; v < vectors; ++v)
        PointwiseTile<1, 1, Residual, Act>(xt + r * ci, ci, wp + v * kLanes, co, bp + v * kLanes,
                                           Residual ? rr + v * kLanes : nullptr, yt + r * co + v * kLanes);
    }
  };
  const int64_t work = rows * ci * co;
  if (ci * co > rows * ci) {  // weights larger than the input: split the channel panels
    ParallelFor(panels, work, [&](int64_t begin, int64_t end) {
      for (int64_t panel = begin; panel < end; ++panel)
        for (int64_t tile = 0; tile < tiles; ++tile) run(tile, panel);
    });
  } else {  // split the positions; each tile's inputs stay hot across the panels
    ParallelFor(tiles, work, [&](int64_t begin, int64_t end) {
      for (int64_t tile = begin; tile < end; ++tile)
        for (int64_t panel = 0; panel < panels; ++panel) run(tile, panel);
    });
  }
  return 0;
}

// One output position, 16 channels: taps ky in [ky0, ky1), kx in [kx0, kx1) of the k x k window
// whose top-left input pixel is `in` (row stride `row`, pixel stride `pixel` floats). Border pixels.
static inline void DepthwisePixel(const float *in, int64_t row, int64_t pixel, const float *w, int64_t k,
                                  int64_t channels, const float *bias, int64_t ky0, int64_t ky1, int64_t kx0,
                                  int64_t kx1, float *out) {
  Vec16 acc = LoadVec(bias);
  for (int64_t ky = ky0; ky < ky1; ++ky)
    for (int64_t kx = kx0; kx < kx1; ++kx)
      acc += LoadVec(w + (ky * k + kx) * channels) * LoadVec(in + ky * row + kx * pixel);
  StoreVec(out, Activate<kRelu6>(acc));
}

// P neighbouring output positions of one row, 16 channels, every column tap inside the image: each
// weight vector is loaded once for the P positions.
template <int K, int S, int P>
static inline void DepthwiseRun(const float *in, int64_t row, int64_t pixel, const float *w, int64_t channels,
                                const float *bias, int64_t ky0, int64_t ky1, float *out) {
  Vec16 acc[P];
  const Vec16 b = LoadVec(bias);
  for (int p = 0; p < P; ++p) acc[p] = b;
  for (int64_t ky = ky0; ky < ky1; ++ky) {
    const float *r = in + ky * row;
    for (int kx = 0; kx < K; ++kx) {
      const Vec16 wv = LoadVec(w + (ky * K + kx) * channels);
      for (int p = 0; p < P; ++p) acc[p] += wv * LoadVec(r + (p * S + kx) * pixel);
    }
  }
  for (int p = 0; p < P; ++p) StoreVec(out + p * pixel, Activate<kRelu6>(acc[p]));
}

// Depthwise K x K convolution, stride S, TF "same" padding, + bias + ReLU6: x (N, H, W, C),
// weight (K * K, C), bias (C,) -> (N, ceil(H / S), ceil(W / S), C); C a multiple of 16.
template <int K, int S>
static int DepthwiseNhwc(int nparam, void **params, int *ndims, int64_t **shapes) {
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  const int64_t batch = shapes[0][0], height = shapes[0][1], width = shapes[0][2], channels = shapes[0][3];
  const int64_t out_h = shapes[3][1], out_w = shapes[3][2];
  const int64_t pad_top = std::max<int64_t>((out_h - 1) * S + K - height, 0) / 2;
  const int64_t pad_left = std::max<int64_t>((out_w - 1) * S + K - width, 0) / 2;
  const int64_t row = width * channels;
  // output columns whose K column taps all lie inside the image
  const int64_t inner_lo = std::min<int64_t>((pad_left + S - 1) / S, out_w);
  const int64_t inner_hi = std::max<int64_t>(inner_lo, std::min<int64_t>(out_w, (width - K + pad_left) / S + 1));
  constexpr int P = 8;
  ParallelFor(batch * out_h, batch * out_h * out_w * channels * K * K, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / out_h, oy = p % out_h, iy = oy * S - pad_top;
      const int64_t ky0 = std::max<int64_t>(0, -iy), ky1 = std::min<int64_t>(K, height - iy);
      const float *in_row = x + (n * height + iy) * row;  // window row origin (may lie outside)
      float *out_row = y + (n * out_h + oy) * out_w * channels;
      for (int64_t c = 0; c < channels; c += kLanes) {
        auto border = [&](int64_t ox) {
          const int64_t ix = ox * S - pad_left;
          DepthwisePixel(in_row + ix * channels + c, row, channels, w + c, K, channels, bias + c, ky0, ky1,
                         std::max<int64_t>(0, -ix), std::min<int64_t>(K, width - ix), out_row + ox * channels + c);
        };
        int64_t ox = 0;
        for (; ox < inner_lo; ++ox) border(ox);
        for (; ox + P <= inner_hi; ox += P)
          DepthwiseRun<K, S, P>(in_row + (ox * S - pad_left) * channels + c, row, channels, w + c, channels,
                                bias + c, ky0, ky1, out_row + ox * channels + c);
        for (; ox < inner_hi; ++ox)
          DepthwiseRun<K, S, 1>(in_row + (ox * S - pad_left) * channels + c, row, channels, w + c, channels,
                                bias + c, ky0, ky1, out_row + ox * channels + c);
        for (; ox < out_w; ++ox) border(ox);
      }
    }
  });
  return 0;
}

// Checks the shapes, then runs the K x K kernel (K = 3 or 5).
template <int S>
static int DepthwiseNhwcAny(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 4 || ndims[0] != 4 || ndims[1] != 2 || ndims[3] != 4) return 1;
  if (shapes[1][1] != shapes[0][3] || shapes[0][3] % kLanes) return 2;
  if (shapes[1][0] == 9) return DepthwiseNhwc<3, S>(nparam, params, ndims, shapes);
  if (shapes[1][0] == 25) return DepthwiseNhwc<5, S>(nparam, params, ndims, shapes);
  return 3;
}

// The EfficientNet stem: 3x3 convolution, stride 2, TF "same" padding, + bias + ReLU6, from NCHW to
// NHWC: x (N, Ci, H, W), weight (9 * Ci, Co) rows ordered (ky, kx, ci), bias (Co,) -> (N, ceil(H / 2),
// ceil(W / 2), Co); Co a multiple of 16, at most 64.
static int StemConv3x3Stride2(int nparam, void **params, int *ndims, int64_t **shapes) {
  if (nparam != 4 || ndims[0] != 4 || ndims[1] != 2 || ndims[3] != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  constexpr int64_t K = 3, S = 2, kMaxVectors = 4;
  const int64_t batch = shapes[0][0], in_ch = shapes[0][1], height = shapes[0][2], width = shapes[0][3];
  const int64_t out_ch = shapes[1][1], out_h = shapes[3][1], out_w = shapes[3][2], vectors = out_ch / kLanes;
  if (shapes[1][0] != K * K * in_ch || out_ch % kLanes || vectors > kMaxVectors) return 2;
  const int64_t pad_top = std::max<int64_t>((out_h - 1) * S + K - height, 0) / 2;
  const int64_t pad_left = std::max<int64_t>((out_w - 1) * S + K - width, 0) / 2;
  ParallelFor(batch * out_h, batch * out_h * out_w * out_ch * K * K * in_ch, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / out_h, oy = p % out_h;
      for (int64_t ox = 0; ox < out_w; ++ox) {
        Vec16 acc[kMaxVectors];
        for (int64_t v = 0; v < vectors; ++v) acc[v] = LoadVec(bias + v * kLanes);
        for (int64_t ky = 0; ky < K; ++ky) {
          const int64_t iy = oy * S - pad_top + ky;
          if (iy < 0 || iy >= height) continue;
          for (int64_t kx = 0; kx < K; ++kx) {
            const int64_t ix = ox * S - pad_left + kx;
            if (ix < 0 || ix >= width) continue;
            for (int64_t c = 0; c < in_ch; ++c) {
              const float value = x[((n * in_ch + c) * height + iy) * width + ix];
              const float *row = w + ((ky * K + kx) * in_ch + c) * out_ch;
              for (int64_t v = 0; v < vectors; ++v) acc[v] += value * LoadVec(row + v * kLanes);
            }
          }
        }
        float *out = y + ((n * out_h + oy) * out_w + ox) * out_ch;
        for (int64_t v = 0; v < vectors; ++v) StoreVec(out + v * kLanes, Activate<kRelu6>(acc[v]));
      }
    }
  });
  return 0;
}

#define NHWC_ENTRY(name, call)                                                                   \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                      void *stream, void *extra) {                                               \
    return call(nparam, params, ndims, shapes);                                                  \
  }
NHWC_ENTRY(PointwiseNhwcPlain, (PointwiseNhwc<false, kNone>))
NHWC_ENTRY(PointwiseNhwcRelu6, (PointwiseNhwc<false, kRelu6>))
NHWC_ENTRY(PointwiseNhwcResidual, (PointwiseNhwc<true, kNone>))
NHWC_ENTRY(DepthwiseNhwcStride1, DepthwiseNhwcAny<1>)
NHWC_ENTRY(DepthwiseNhwcStride2, DepthwiseNhwcAny<2>)
NHWC_ENTRY(StemConv3x3Stride2Nhwc, StemConv3x3Stride2)

#define CONV_ENTRY(name, k, pre_relu, residual, act, nhwc_in)                                    \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                      void *stream, void *extra) {                                               \
    return ConvKxK<k, pre_relu, residual, act, nhwc_in>(nparam, params, ndims, shapes);           \
  }
CONV_ENTRY(Conv3x3Plain, 3, false, false, kNone, false)
CONV_ENTRY(Conv3x3PreRelu, 3, true, false, kNone, false)
CONV_ENTRY(Conv3x3PreReluResidual, 3, true, true, kNone, false)
CONV_ENTRY(Conv3x3PostRelu, 3, false, false, kRelu, false)
CONV_ENTRY(Conv1x1Plain, 1, false, false, kNone, false)
CONV_ENTRY(Conv3x3FromNhwc, 3, false, false, kNone, true)
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


CONV_KERNELS = ("Conv3x3Plain", "Conv3x3PreRelu", "Conv3x3PreReluResidual", "Conv3x3PostRelu", "Conv1x1Plain",
                "Conv3x3FromNhwc", "Winograd3x3Plain", "Winograd3x3PreRelu", "Winograd3x3PreReluResidual",
                "Winograd3x3PostRelu", "Winograd3x3Raw",
                "Winograd3x3RawRelu", "Winograd3x3RawResidualRelu")
PACK = 8  # output channels per register block of the conv kernels


def _custom_op(kernel: str, out_shape):
    """``ops.Custom`` running the native function ``kernel`` (output dtype = first input's), or None
    when the library is unavailable."""
    library = native_library()
    if library is None:
        return None

    def out_dtype(x_dtype, *other_dtypes):
        return x_dtype

    return ops.Custom(f"{library}:{kernel}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot")


@functools.lru_cache(maxsize=None)
def native_conv_op(kernel: str):
    """``ops.Custom`` for the conv kernel named ``kernel`` (one of CONV_KERNELS), or None when unavailable."""
    if kernel not in CONV_KERNELS:
        return None

    def out_shape(x_shape, weight_shape, bias_shape, *residual_shape):
        if kernel.endswith("FromNhwc"):  # (N, H, W, C') in
            return (x_shape[0], bias_shape[0], x_shape[1], x_shape[2])
        if "Raw" in kernel:  # raw (Co, Ci, 3, 3) weight
            return (x_shape[0], weight_shape[0], x_shape[2], x_shape[3])
        return (x_shape[0], bias_shape[0], x_shape[2], x_shape[3])

    return _custom_op(kernel, out_shape)


@functools.lru_cache(maxsize=None)
def native_elementwise_op(kernel: str):
    """``ops.Custom`` for 'GeluExact' (x -> gelu(x)), 'LayerNormLastAxis' (x, weight, bias, eps (1,) -> y)
    or 'GroupNormPlain' / 'GroupNormRelu' (x (N, C, ...), weight, bias, eps (groups,) -> y), output
    shaped like x; None when unavailable."""
    if kernel not in ("GeluExact", "LayerNormLastAxis", "GroupNormPlain", "GroupNormRelu", "SwapAxes", "GegluExact"):
        return None

    def out_shape(x_shape, *other_shapes):
        if kernel == "GegluExact":  # (..., 2 D) -> (..., D)
            return tuple(x_shape[:-1]) + (x_shape[-1] // 2,)
        if kernel == "SwapAxes":  # (A, R, C, D) -> (A, C, R, D)
            return (x_shape[0], x_shape[2], x_shape[1], x_shape[3])
        return x_shape

    return _custom_op(kernel, out_shape)


@functools.lru_cache(maxsize=None)
def native_attention_op():
    """``ops.Custom`` for 'Attention': q (B, N, H * d), k (B, M, H * d), v (B, M, H * dv), scale (H,) (its length
    gives the heads H) -> per head softmax(scale q_h k_h^T) v_h, (B, N, H * dv); d and dv multiples of 16;
    None when unavailable."""

    def out_shape(q_shape, k_shape, v_shape, scale_shape):
        return (q_shape[0], q_shape[1], v_shape[2])

    return _custom_op("Attention", out_shape)


NHWC_LANES = 16  # channel padding of the NHWC kernels


def padded_channels(channels: int) -> int:
    """``channels`` rounded up to a multiple of NHWC_LANES (the NHWC kernels' channel padding)."""
    return -(-channels // NHWC_LANES) * NHWC_LANES


@functools.lru_cache(maxsize=None)
def native_pointwise_op(variant: str):
    """``ops.Custom`` for the NHWC 1x1 kernel ``PointwiseNhwc{variant}`` (Plain, Relu6, Residual), or None."""
    if variant not in ("Plain", "Relu6", "Residual"):
        return None

    def out_shape(x_shape, weight_shape, bias_shape, *residual_shape):
        return (x_shape[0], x_shape[1], x_shape[2], weight_shape[1])

    return _custom_op(f"PointwiseNhwc{variant}", out_shape)


@functools.lru_cache(maxsize=None)
def native_depthwise_nhwc_op(stride: int):
    """``ops.Custom`` for the NHWC depthwise conv + bias + ReLU6 with ``stride`` (1 or 2), or None."""
    if stride not in (1, 2):
        return None

    def out_shape(x_shape, weight_shape, bias_shape):
        return (x_shape[0], -(-x_shape[1] // stride), -(-x_shape[2] // stride), x_shape[3])

    return _custom_op(f"DepthwiseNhwcStride{stride}", out_shape)


@functools.lru_cache(maxsize=None)
def native_stem_op():
    """``ops.Custom`` for the stem conv (3x3, stride 2) + bias + ReLU6 from NCHW to NHWC, or None."""

    def out_shape(x_shape, weight_shape, bias_shape):
        return (x_shape[0], -(-x_shape[2] // 2), -(-x_shape[3] // 2), weight_shape[1])

    return _custom_op("StemConv3x3Stride2Nhwc", out_shape)


def pack_stem(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Co, Ci, 3, 3), (Co,) -> (9 * Ci, Co'), (Co',): rows (ky, kx, ci), channels zero-padded."""
    co, ci, k = weight.shape[:3]
    packed = np.zeros((k * k * ci, padded_channels(co)), np.float32)
    packed[:, :co] = weight.transpose(2, 3, 1, 0).reshape(k * k * ci, co)
    return packed, _pad_bias(bias, padded_channels(co))


def pack_pointwise(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Co, Ci, 1, 1), (Co,) -> (Ci', Co'), (Co',): transposed, zero-padded to multiples of NHWC_LANES."""
    co, ci = weight.shape[:2]
    packed = np.zeros((padded_channels(ci), padded_channels(co)), np.float32)
    packed[:ci, :co] = weight.reshape(co, ci).T
    return packed, _pad_bias(bias, padded_channels(co))


def pack_depthwise(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, 1, k, k), (C,) -> (k * k, C'), (C',): taps major, channels zero-padded to NHWC_LANES."""
    c, k = weight.shape[0], weight.shape[2]
    packed = np.zeros((k * k, padded_channels(c)), np.float32)
    packed[:, :c] = weight.reshape(c, k * k).T
    return packed, _pad_bias(bias, padded_channels(c))


def _pad_bias(bias: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, np.float32)
    out[:bias.shape[0]] = bias
    return out


WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def pack_winograd(weight: np.ndarray) -> np.ndarray:
    """(Co, Ci, 3, 3) -> U (16, Ci, Co) = G g G^T per channel pair, in float64 then float32."""
    co, ci = weight.shape[:2]
    u = np.einsum("ak,oikl,bl->abio", WINOGRAD_G, weight.astype(np.float64), WINOGRAD_G)  # (4, 4, Ci, Co)
    return np.ascontiguousarray(u.reshape(16, ci, co), np.float32)


def pack_conv(weight: np.ndarray) -> np.ndarray:
    """(Co, Ci, k, k) -> (Co / 8, Ci, k * k, 8): eight output channels side by side per input channel and tap."""
    co, ci, k = weight.shape[:3]
    return np.ascontiguousarray(weight.reshape(co // PACK, PACK, ci, k * k).transpose(0, 2, 3, 1), np.float32)
