// Elementwise activations: exact GELU and GEGLU.

#include "common.h"
#include "vector_math.h"

namespace depth_ms {

// y = gelu(x), exact (erf) form; x and y of any shape.
DEPTH_MS_KERNEL(GeluExact) {
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
DEPTH_MS_KERNEL(GegluExact) {
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

}  // namespace depth_ms
