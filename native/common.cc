// The worker pool, the thread count and the per-thread scratch buffers.
#include "common.h"

#include <sched.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace depth_ms {
namespace {

// CPUs a cgroup quota allows (cgroup v2 cpu.max, else v1 cfs quota / period), or 0 without a quota.
int64_t CgroupCpus() {
  std::ifstream v2("/sys/fs/cgroup/cpu.max");
  std::string quota;
  int64_t period = 0;
  if (v2 >> quota >> period) {
    if (quota == "max" || period <= 0) return 0;
    return std::max<int64_t>(1, (std::atoll(quota.c_str()) + period - 1) / period);
  }
  std::ifstream v1_quota("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), v1_period("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  int64_t quota_us = -1;
  if (v1_quota >> quota_us && v1_period >> period && quota_us > 0 && period > 0)
    return std::max<int64_t>(1, (quota_us + period - 1) / period);
  return 0;
}

int64_t AvailableCpus() {
  int64_t cpus = static_cast<int64_t>(std::thread::hardware_concurrency());
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  const int64_t quota = CgroupCpus();
  return quota > 0 ? std::min(cpus, quota) : cpus;
}

}  // namespace

int64_t Threads() {
  static const int64_t threads = [] {
    const char *env = std::getenv("DEPTH_MS_NATIVE_THREADS");
    const int64_t n = env && *env ? std::atoll(env) : AvailableCpus();
    return std::max<int64_t>(1, std::min<int64_t>(n, 16));
  }();
  return threads;
}

struct WorkerPool::State {
  State(pid_t pid, int64_t workers) : pid(pid), workers(workers) {}
  pid_t pid;
  int64_t workers;
  std::mutex run_mutex, mutex;
  std::condition_variable wake, done;
  const std::function<void(int64_t)> *part = nullptr;
  int64_t parts = 0, pending = 0;
  uint64_t generation = 0;
};

WorkerPool &WorkerPool::Get() {
  static WorkerPool *pool = new WorkerPool(Threads() - 1);  // never destroyed: workers outlive exit
  return *pool;
}

WorkerPool::WorkerPool(int64_t workers) : state_(new State(getpid(), workers)) {
  for (int64_t i = 1; i <= workers; ++i) std::thread([this, i] { Loop(i); }).detach();
}

bool WorkerPool::Run(int64_t parts, const std::function<void(int64_t)> &part) {
  State &s = *state_;
  if (getpid() != s.pid || parts - 1 > s.workers) return false;
  std::unique_lock<std::mutex> busy(s.run_mutex, std::try_to_lock);
  if (!busy.owns_lock()) return false;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.part = &part, s.parts = parts, s.pending = parts - 1, ++s.generation;
  }
  s.wake.notify_all();
  part(0);
  std::unique_lock<std::mutex> lock(s.mutex);
  s.done.wait(lock, [&s] { return s.pending == 0; });
  return true;
}

void WorkerPool::Loop(int64_t index) {
  State &s = *state_;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t)> *part;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      s.wake.wait(lock, [&] { return s.generation != seen; });
      seen = s.generation;
      if (index >= s.parts) continue;
      part = s.part;
    }
    (*part)(index);
    std::lock_guard<std::mutex> lock(s.mutex);
    if (--s.pending == 0) s.done.notify_one();
  }
}

float *Scratch(int slot, size_t size) {
  thread_local std::vector<float> buffers[5];
  std::vector<float> &buffer = buffers[slot];
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

}  // namespace depth_ms

// The thread count the kernels use (for callers and tests).
extern "C" __attribute__((visibility("default"))) int64_t NativeThreads() { return depth_ms::Threads(); }
