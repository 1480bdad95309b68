// Direct KxK convolutions (NCHW, MiDaS decoder) on packed weights.

#include "common.h"

namespace depth_ms {

constexpr int64_t kBlockCo = 8;  // output channels per register block
constexpr int64_t kChunk = 32;   // flattened output positions per register block (2 vectors)

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

#define CONV_ENTRY(name, k, pre_relu, residual, act, nhwc_in)                                     \
  DEPTH_MS_KERNEL(name) {                                                                         \
    return ConvKxK<k, pre_relu, residual, act, nhwc_in>(nparam, params, ndims, shapes);           \
  }
CONV_ENTRY(Conv3x3Plain, 3, false, false, kNone, false)
CONV_ENTRY(Conv3x3PreRelu, 3, true, false, kNone, false)
CONV_ENTRY(Conv3x3PreReluResidual, 3, true, true, kNone, false)
CONV_ENTRY(Conv3x3PostRelu, 3, false, false, kRelu, false)
CONV_ENTRY(Conv1x1Plain, 1, false, false, kNone, false)
CONV_ENTRY(Conv3x3FromNhwc, 3, false, false, kNone, true)

}  // namespace depth_ms
