// Normalisations: LayerNorm over the last axis, GroupNorm.

#include "common.h"

namespace depth_ms {

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
DEPTH_MS_KERNEL(LayerNormLastAxis) {
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

DEPTH_MS_KERNEL(GroupNormPlain) {
  return GroupNorm<false>(nparam, params, ndims, shapes);
}

DEPTH_MS_KERNEL(GroupNormRelu) {
  return GroupNorm<true>(nparam, params, ndims, shapes);
}

}  // namespace depth_ms
