// What the CPU kernels share: 8-float vectors (GCC/Clang vector extensions, AVX2 with
// -march=native), a vectorised exp, and a parallel loop on XLA's intra-op thread pool.
// Everything is in an anonymous namespace: each kernel file gets its own copy.

#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace {

namespace ffi = xla::ffi;

typedef float v8 __attribute__((vector_size(32)));  // 8 floats
typedef int32_t v8i __attribute__((vector_size(32)));

inline v8 load8(const float* p) { v8 r; std::memcpy(&r, p, sizeof(r)); return r; }
inline void store8(float* p, v8 x) { std::memcpy(p, &x, sizeof(x)); }
inline v8 splat(float x) { return v8{x, x, x, x, x, x, x, x}; }  // one vbroadcastss

inline float hmax(v8 x) {
  float m = x[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, x[i]);
  return m;
}

inline float hsum(v8 x) {
  float s = 0.0f;
  for (int i = 0; i < 8; ++i) s += x[i];
  return s;
}

// exp(x) for x <= 0, 8 lanes at once: Cody-Waite reduction by ln 2, a degree-7 Taylor
// polynomial on [-ln2/2, ln2/2] (relative error ~1e-7), 2^n through the exponent bits; below -87
// gives 0.
inline v8 exp8(v8 x) {
  const v8 xc = x < -87.0f ? v8{} - 87.0f : x;
  const v8 round = v8{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const v8 n = (xc * 1.44269504088896341f + round) - round;
  v8 r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  v8 p = v8{} + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const v8i bits = (v8i)p + (__builtin_convertvector(n, v8i) << 23);
  return x < -87.0f ? v8{} : (v8)bits;
}

// Runs fn(i) for i in [0, n) on the caller and XLA's intra-op pool. Pool tasks that start after
// all items are claimed touch only the shared counter, so the caller never waits on a task
// that has not started (no deadlock when every pool thread is busy).
template <typename Fn>
void parallel_for(ffi::ThreadPool& pool, int64_t n, const Fn& fn) {
  struct State {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, n, &fn]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      fn(i);
      state->done.fetch_add(1);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([state, n, work]() {
      if (state->next.load() < n) work();
    });
  }
  work();
  while (state->done.load() < n) std::this_thread::yield();
}

}  // namespace

// The handlers' signatures: XLA's intra-op thread pool, float32 input buffers, float32 outputs.
#define F32_IN .Arg<ffi::Buffer<ffi::F32>>()
#define F32_OUT .Ret<ffi::Buffer<ffi::F32>>()
#define WITH_POOL ffi::Ffi::Bind().Ctx<ffi::ThreadPool>()
