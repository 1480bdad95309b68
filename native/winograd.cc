// Winograd 3x3 convolutions: F(2x2, 3x3) on pre-transformed weights or by panels from the raw weight,
// F(4x4, 3x3) on large maps.

#include "common.h"

#ifdef __AVX512F__
// GCC 12 reports its own gather intrinsic's undefined pass-through operand as maybe uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace depth_ms {

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

#define WINOGRAD_ENTRY(name, pre_relu, residual, act)                                             \
  DEPTH_MS_KERNEL(name) {                                                                         \
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

#define WINOGRAD_RAW_ENTRY(name, residual, act)                                                   \
  DEPTH_MS_KERNEL(name) {                                                                         \
    return WinogradRaw<residual, act>(nparam, params, ndims, shapes);                             \
  }
WINOGRAD_RAW_ENTRY(Winograd3x3Raw, false, kNone)
WINOGRAD_RAW_ENTRY(Winograd3x3RawRelu, false, kRelu)
WINOGRAD_RAW_ENTRY(Winograd3x3RawResidualRelu, true, kRelu)

}  // namespace depth_ms
