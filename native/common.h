// Shared by every native kernel: the entry-point signature MindSpore calls, the worker pool, per-thread
// scratch buffers and 16-lane float vectors (GCC vector extensions, one AVX-512 register or two AVX2 ones).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

// A kernel as MindSpore's ops.Custom(func_type="aot") calls it: params holds the inputs then the output,
// shapes[i] has ndims[i] entries. Returns 0, or an error code when the shapes do not fit.
#define DEPTH_MS_KERNEL(name)                                                                     \
  extern "C" __attribute__((visibility("default"))) int name(                                     \
      [[maybe_unused]] int nparam, void **params, [[maybe_unused]] int *ndims, int64_t **shapes,  \
      [[maybe_unused]] const char **dtypes, [[maybe_unused]] void *stream, [[maybe_unused]] void *extra)

namespace depth_ms {

// Threads the kernels use: DEPTH_MS_NATIVE_THREADS if set, else the CPUs this process may run on (its
// affinity mask, capped by a cgroup CPU quota); between 1 and 16.
int64_t Threads();

// Threads() - 1 persistent workers sleeping on a condition variable (no spinning, which would fight
// MindSpore's own pool). Starting threads per call cost ~30 us each, ~90 times per MiDaS frame.
// One job at a time: a caller that finds the pool busy (MindSpore may launch kernels concurrently)
// or in a forked child is told to run the job itself.
class WorkerPool {
 public:
  static WorkerPool &Get();
  // Runs part(p) for p in [0, parts), the caller taking p = 0; false (nothing run) if unavailable.
  bool Run(int64_t parts, const std::function<void(int64_t)> &part);

 private:
  struct State;
  explicit WorkerPool(int64_t workers);
  void Loop(int64_t index);
  State *state_;
};

// Runs body(begin, end) over [0, count) split across up to Threads() threads, the caller taking the
// first share; small jobs (< 2M multiply-adds) stay serial.
template <typename Body>
void ParallelFor(int64_t count, int64_t work, Body body) {
  const int64_t parts = std::min<int64_t>(work >= (int64_t{1} << 21) ? Threads() : 1, count);
  if (parts > 1) {
    const std::function<void(int64_t)> part = [&](int64_t p) { body(count * p / parts, count * (p + 1) / parts); };
    if (WorkerPool::Get().Run(parts, part)) return;
  }
  body(0, count);
}

// A per-thread scratch buffer of at least `size` floats (slot 0-4: which of the caller's buffers), kept
// between calls so that large temporaries do not page-fault on every convolution.
float *Scratch(int slot, size_t size);

typedef float Vec16 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;
enum Activation { kNone, kRelu, kRelu6 };

template <Activation Act>
inline float ActivateScalar(float v) {
  if (Act != kNone) v = std::max(v, 0.0f);
  if (Act == kRelu6) v = std::min(v, 6.0f);
  return v;
}

template <Activation Act>
inline Vec16 Activate(Vec16 v) {
  if (Act == kNone) return v;
  const Vec16 zero = Vec16{};
  v = v > zero ? v : zero;
  if (Act == kRelu6) {
    const Vec16 six = Vec16{} + 6.0f;
    v = v < six ? v : six;
  }
  return v;
}

inline Vec16 LoadVec(const float *p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void StoreVec(float *p, Vec16 v) { std::memcpy(p, &v, sizeof(v)); }

}  // namespace depth_ms
