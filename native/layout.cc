// Layout: swapping two axes of a 4-D tensor.

#include "common.h"

namespace depth_ms {

// x (A, R, C, D) -> y (A, C, R, D): axes 1 and 2 swapped, rows of D values moved whole (D = 1 for a
// matrix transpose), in 32 x 32 tiles of (R, C).
DEPTH_MS_KERNEL(SwapAxes) {
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

}  // namespace depth_ms
