// Channels-last (NHWC) kernels of the MiDaS small encoder: pointwise, depthwise and the stem.

#include "common.h"

namespace depth_ms {

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
static int DepthwiseNhwc(void **params, int64_t **shapes) {
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
  if (shapes[1][0] == 9) return DepthwiseNhwc<3, S>(params, shapes);
  if (shapes[1][0] == 25) return DepthwiseNhwc<5, S>(params, shapes);
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

#define NHWC_ENTRY(name, call)                                                                    \
  DEPTH_MS_KERNEL(name) {                                                                         \
    return call(nparam, params, ndims, shapes);                                                   \
  }
NHWC_ENTRY(PointwiseNhwcPlain, (PointwiseNhwc<false, kNone>))
NHWC_ENTRY(PointwiseNhwcRelu6, (PointwiseNhwc<false, kRelu6>))
NHWC_ENTRY(PointwiseNhwcResidual, (PointwiseNhwc<true, kNone>))
NHWC_ENTRY(DepthwiseNhwcStride1, DepthwiseNhwcAny<1>)
NHWC_ENTRY(DepthwiseNhwcStride2, DepthwiseNhwcAny<2>)
NHWC_ENTRY(StemConv3x3Stride2Nhwc, StemConv3x3Stride2)

}  // namespace depth_ms
