// Fused multi-head attention.

#include "common.h"
#include "vector_math.h"

namespace depth_ms {

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
DEPTH_MS_KERNEL(Attention) {
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

}  // namespace depth_ms
