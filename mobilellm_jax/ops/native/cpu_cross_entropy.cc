// Softmax cross-entropy of one chunk of logits and its gradient, in one pass over memory, for
// XLA:CPU (float32), called through the XLA FFI.
//
// Why: XLA:CPU runs the log-sum-exp (a max pass, then an exp-and-sum pass), the target gather and
// the gradient (softmax minus one-hot, exp again) as separate loops over the whole
// [tokens, vocab] chunk, each reading it from memory. Here each row (16 KB at vocab 4096) is
// read from memory once and its gradient written once; the passes between stay in cache.

#include <cmath>
#include <limits>

#include "cpu_common.h"

namespace {

constexpr int64_t kRowsPerItem = 16;

// nll = logsumexp(x) - x[target]; g = (softmax(x) - onehot(target)) * scale. A target outside
// [0, V) gives a NaN loss and no one-hot (as jnp.take_along_axis and jax.nn.one_hot do).
float row_loss_and_grad(const float* x, int64_t V, int32_t target, float scale, float* g) {
  const bool valid = target >= 0 && target < V;
  v8 vmax = v8{} - std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + 8 <= V; j += 8) {
    const v8 a = load8(x + j);
    vmax = a > vmax ? a : vmax;
  }
  float m = hmax(vmax);
  for (; j < V; ++j) m = std::max(m, x[j]);
  v8 vsum = {};
  for (j = 0; j + 8 <= V; j += 8) {
    const v8 e = exp8(load8(x + j) - m);
    store8(g + j, e);
    vsum += e;
  }
  float sum = hsum(vsum);
  for (; j < V; ++j) {
    g[j] = std::exp(x[j] - m);
    sum += g[j];
  }
  const float factor = scale / sum;  // the row is still in cache: scaling it costs no memory pass
  for (j = 0; j + 8 <= V; j += 8) store8(g + j, load8(g + j) * factor);
  for (; j < V; ++j) g[j] *= factor;
  if (!valid) return std::numeric_limits<float>::quiet_NaN();
  g[target] -= scale;
  return m + std::log(sum) - x[target];
}

ffi::Error SoftmaxCrossEntropy(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> logits,
                               ffi::Buffer<ffi::S32> targets, float scale,
                               ffi::ResultBuffer<ffi::F32> grad, ffi::ResultBuffer<ffi::F32> nll) {
  const int64_t N = targets.element_count(), V = logits.element_count() / std::max<int64_t>(N, 1);
  const float* x = logits.typed_data();
  const int32_t* t = targets.typed_data();
  float *g = grad->typed_data(), *out = nll->typed_data();
  parallel_for(pool, (N + kRowsPerItem - 1) / kRowsPerItem, [&](int64_t item) {
    for (int64_t r = item * kRowsPerItem; r < std::min(N, (item + 1) * kRowsPerItem); ++r)
      out[r] = row_loss_and_grad(x + r * V, V, t[r], scale, g + r * V);
  });
  return ffi::Error::Success();
}

}  // namespace

// logits [N, V], targets [N] (int32), attribute scale -> (softmax - onehot) * scale [N, V],
// per-row loss [N]
XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilellmSoftmaxCrossEntropy, SoftmaxCrossEntropy,
                              WITH_POOL F32_IN.Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<float>("scale") F32_OUT F32_OUT);
