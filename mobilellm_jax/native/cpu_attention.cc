// Fused causal grouped-query attention for XLA:CPU (float32), called through the XLA FFI.
//
// Why: XLA:CPU runs attention as separate batched matmuls and element-wise passes, each writing
// its [queries, keys] intermediate to memory; with head_dim 32 those matmuls reach ~30 GFLOP/s.
// Here each (batch, kv head) pair is one work item that keeps its score tiles in cache and does
// the softmax in the same loop (FlashAttention-2 style: forward keeps out + log-sum-exp,
// backward recomputes probabilities tile by tile). Work items are spread over XLA's own
// intra-op thread pool. On the causal diagonal, a score tile's fully masked 32-key half is not
// computed; off it, the softmax skips the mask.
//
// Layouts (row-major): q, out, dout, dq [B, L, H, E]; k, v, dk, dv [B, L, K, E]; lse [B, H, L].
// Query head h uses kv head h / (H / K). E must be a multiple of 8 (checked in Python).
// The "fused" entry points take q, k and v as slices of one projection qkv [B, L, (H + 2K) E]
// and the RoPE angles sin, cos [B, L, E/2]: each item rotates its query and key rows as it
// gathers them, and rotates the gradients back as it writes dqkv [B, L, (H + 2K) E] whole.

#include <cmath>
#include <limits>
#include <vector>

#include "cpu_common.h"

namespace {

constexpr int64_t kTile = 64;  // keys per tile (and queries per forward tile)

struct Dims {
  int64_t B, L, H, K, E;
  // Floats from one position's row to the next in q (and dq) and in k, v (and dk, dv): H * E and
  // K * E for separate arrays, (H + 2K) * E when all three are slices of one fused projection.
  int64_t q_stride, kv_stride;
  // RoPE angles [B, L, E/2] (rotate-half layout), or null: q and k arrive already rotated.
  const float* sin = nullptr;
  const float* cos = nullptr;
  int64_t G() const { return H / K; }
  int64_t q_at(int64_t b, int64_t pos, int64_t h) const { return (b * L + pos) * q_stride + h * E; }
  int64_t kv_at(int64_t b, int64_t pos, int64_t kh) const {
    return (b * L + pos) * kv_stride + kh * E;
  }
};

// dst = x rotated by the RoPE angles of (b, pos), or rotated back when `back` (the rotation's
// transpose: how a gradient passes through it); a copy when the Dims carry no angles.
inline void rope_row(const float* x, const Dims& d, int64_t b, int64_t pos, bool back,
                     float* dst) {
  if (!d.sin) {
    std::memcpy(dst, x, d.E * sizeof(float));
    return;
  }
  const int64_t half = d.E / 2;
  const float* s = d.sin + (b * d.L + pos) * half;
  const float* c = d.cos + (b * d.L + pos) * half;
  const float sign = back ? -1.0f : 1.0f;
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    dst[i] = x1 * c[i] - sign * x2 * s[i];
    dst[i + half] = x2 * c[i] + sign * x1 * s[i];
  }
}

// A load the compiler must keep in a register: where two FMAs use the same vector, GCC would
// otherwise fold the load into both (twice the loads, and these loops are bound by loads).
inline v8 load8_once(const float* p) {
  v8 r = load8(p);
  asm("" : "+x"(r));
  return r;
}

// The rows an item reads and writes are strided (one head of each position), and the loops
// over them were latency-bound: each asks for the row kPrefetchRows positions ahead.
constexpr int64_t kPrefetchRows = 8;
inline void prefetch_row(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);  // one 64-byte line each
}
inline void prefetch_row_for_write(float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 1);
}

// Lane j of tile vector t is key k0 + 8t + j: visible to query `pos` when k0 + 8t + j <= pos.
inline v8i visible_mask(int64_t t, int64_t limit) {
  const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
  return (lane + static_cast<int32_t>(8 * t)) < static_cast<int32_t>(limit);
}

// s[j] = scale * sum_e row[e] * colsT[e][j], j < kTile (colsT is [E][kTile]).
inline void row_times_tile(const float* row, const float* colsT, int64_t E, float scale,
                           float* s) {
  v8 acc[kTile / 8] = {};
  for (int64_t e = 0; e < E; ++e) {
    const v8 r = splat(row[e]);
    const float* c = colsT + e * kTile;
    for (int64_t t = 0; t < kTile / 8; ++t) acc[t] += r * load8(c + 8 * t);
  }
  for (int64_t t = 0; t < kTile / 8; ++t) store8(s + 8 * t, acc[t] * scale);
}

// acc[0:8V] = acc * c + sum_{j < n} w[j] * rows[j][0:8V]. V (= E / 8) is a template argument
// so the accumulators stay in registers; two sets (even/odd j) hide the FMA latency.
template <int V>
void accumulate_rows_v(const float* w, const float* rows, int64_t n, float c, float* acc) {
  constexpr int E = 8 * V;
  v8 even[V], odd[V];
  for (int t = 0; t < V; ++t) { even[t] = load8(acc + 8 * t) * c; odd[t] = v8{}; }
  int64_t j = 0;
  for (; j + 1 < n; j += 2) {
    for (int t = 0; t < V; ++t) {
      even[t] += w[j] * load8(rows + j * E + 8 * t);
      odd[t] += w[j + 1] * load8(rows + (j + 1) * E + 8 * t);
    }
  }
  if (j < n)
    for (int t = 0; t < V; ++t) even[t] += w[j] * load8(rows + j * E + 8 * t);
  for (int t = 0; t < V; ++t) store8(acc + 8 * t, even[t] + odd[t]);
}

// Any E (multiple of 8): chunks of 4 vectors.
inline void accumulate_rows(const float* w, const float* rows, int64_t n, int64_t E, float c,
                            float* acc) {
  switch (E) {
    case 8: return accumulate_rows_v<1>(w, rows, n, c, acc);
    case 16: return accumulate_rows_v<2>(w, rows, n, c, acc);
    case 32: return accumulate_rows_v<4>(w, rows, n, c, acc);
    case 64: return accumulate_rows_v<8>(w, rows, n, c, acc);
  }
  for (int64_t e0 = 0; e0 < E; e0 += 8) {
    v8 x = load8(acc + e0) * c;
    for (int64_t j = 0; j < n; ++j) x += w[j] * load8(rows + j * E + e0);
    store8(acc + e0, x);
  }
}

// Two query rows at a time share every load of the key tile: sa / sb[j] = scale * a / b . col j
// for j < keys rounded up to 32 (on the causal diagonal the rest of the tile is masked anyway;
// the caller's mask ignores what is left there). Half a tile (4 vectors) per pass keeps the 8
// accumulators and the operands in 16 registers.
static_assert(kTile % 32 == 0, "two_rows_times_tile works in halves of 4 vectors");
inline void two_rows_times_tile(const float* a, const float* b, const float* colsT, int64_t E,
                                float scale, float* sa, float* sb, int64_t keys = kTile) {
  for (int64_t h = 0; h < kTile / 8 && 8 * h < keys; h += 4) {
    v8 xa[4] = {}, xb[4] = {};
    for (int64_t e = 0; e < E; ++e) {
      const v8 ra = splat(a[e]), rb = splat(b[e]);
      const float* c = colsT + e * kTile + 8 * h;
      for (int t = 0; t < 4; ++t) {
        const v8 col = load8_once(c + 8 * t);
        xa[t] += ra * col;
        xb[t] += rb * col;
      }
    }
    for (int t = 0; t < 4; ++t) {
      store8(sa + 8 * (h + t), xa[t] * scale);
      store8(sb + 8 * (h + t), xb[t] * scale);
    }
  }
}

// accumulate_rows for two rows sharing the loads of `rows`: acc_a = acc_a * ca + wa . rows, and
// the same for b; E in chunks of up to 4 vectors (8 accumulators in registers).
template <int V>
void accumulate_two_rows_v(const float* wa, const float* wb, const float* rows, int64_t n,
                           int64_t E, float ca, float cb, float* acc_a, float* acc_b) {
  v8 xa[V], xb[V];
  for (int t = 0; t < V; ++t) { xa[t] = load8(acc_a + 8 * t) * ca; xb[t] = load8(acc_b + 8 * t) * cb; }
  for (int64_t j = 0; j < n; ++j) {
    const v8 ba = splat(wa[j]), bb = splat(wb[j]);
    for (int t = 0; t < V; ++t) {
      const v8 r = load8_once(rows + j * E + 8 * t);
      xa[t] += ba * r;
      xb[t] += bb * r;
    }
  }
  for (int t = 0; t < V; ++t) { store8(acc_a + 8 * t, xa[t]); store8(acc_b + 8 * t, xb[t]); }
}

inline void accumulate_two_rows(const float* wa, const float* wb, const float* rows, int64_t n,
                                int64_t E, float ca, float cb, float* acc_a, float* acc_b) {
  for (int64_t e0 = 0; e0 < E; e0 += 32) {
    const float* r = rows + e0;
    switch (std::min<int64_t>(4, (E - e0) / 8)) {
      case 1: accumulate_two_rows_v<1>(wa, wb, r, n, E, ca, cb, acc_a + e0, acc_b + e0); break;
      case 2: accumulate_two_rows_v<2>(wa, wb, r, n, E, ca, cb, acc_a + e0, acc_b + e0); break;
      case 3: accumulate_two_rows_v<3>(wa, wb, r, n, E, ca, cb, acc_a + e0, acc_b + e0); break;
      default: accumulate_two_rows_v<4>(wa, wb, r, n, E, ca, cb, acc_a + e0, acc_b + e0); break;
    }
  }
}

// dst[j][0:E] += sum_i w[i][j] * x[i][0:E] for j < n: w is [kRows][kTile], x has kRows rows.
constexpr int64_t kRows = 4;
static_assert(kRows % 2 == 0, "the backward pass scores rows in pairs");
inline void add_outer_rows(const float* w, const float* const* x, int64_t n, int64_t E,
                           float* dst) {
  for (int64_t e0 = 0; e0 < E; e0 += 16) {  // two vectors of E at a time: 8 x-vectors in registers
    const bool two = e0 + 8 < E;
    v8 xa[kRows], xb[kRows];
    for (int64_t i = 0; i < kRows; ++i) {
      xa[i] = load8(x[i] + e0);
      xb[i] = two ? load8(x[i] + e0 + 8) : v8{};
    }
    for (int64_t j = 0; j < n; ++j) {
      float* row = dst + j * E + e0;
      v8 a = load8(row), c = two ? load8(row + 8) : v8{};
      for (int64_t i = 0; i < kRows; ++i) {
        a += w[i * kTile + j] * xa[i];
        c += w[i * kTile + j] * xb[i];
      }
      store8(row, a);
      if (two) store8(row + 8, c);
    }
  }
}

// c[i][j] = r[j][i] for an 8 x 8 block (the unpack / shuffle / 128-bit-lane-swap transpose).
inline void transpose8x8(const v8 r[8], v8 c[8]) {
  v8 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * i + 1] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int h = 0; h < 8; h += 4) {
    u[h] = __builtin_shufflevector(t[h], t[h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 1] = __builtin_shufflevector(t[h], t[h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[h + 2] = __builtin_shufflevector(t[h + 1], t[h + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 3] = __builtin_shufflevector(t[h + 1], t[h + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; ++i) {
    c[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    c[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// Loads keys [k0, k0 + n) of kv head `kh` of batch b into a transposed [E][kTile] tile (zero
// padded) and, if `rows` is given, also as rows [kTile][E]; rotated by RoPE when `rotate`.
// The transpose goes 8 x 8 blocks at a time: element by element it was ~10% of the kernel.
void load_tile(const float* x, const Dims& d, int64_t b, int64_t kh, int64_t k0, int64_t n,
               bool rotate, float* tileT, float* rows) {
  const int64_t E = d.E;
  if (n < kTile) std::fill(tileT, tileT + E * kTile, 0.0f);
  const bool rotating = rotate && d.sin;
  std::vector<float> scratch(rotating && !rows ? kTile * E : 0);  // rotated keys, if no `rows`
  float* block = rows ? rows : scratch.data();
  for (int64_t j = 0; j < n && (rows || rotating); ++j) {
    prefetch_row(x + d.kv_at(b, k0 + std::min(j + kPrefetchRows, n - 1), kh), E);
    const float* src = x + d.kv_at(b, k0 + j, kh);
    if (rotating) rope_row(src, d, b, k0 + j, false, block + j * E);
    else std::memcpy(block + j * E, src, E * sizeof(float));
  }
  auto row = [&](int64_t j) {
    return (rows || rotating) ? block + j * E : x + d.kv_at(b, k0 + j, kh);
  };
  int64_t j0 = 0;
  for (; j0 + 8 <= n; j0 += 8) {
    if (!rows && !rotating)  // reading x in place: ask for the next block's rows
      for (int64_t i = 0; i < 8; ++i) prefetch_row(row(std::min(j0 + 8 + i, n - 1)), E);
    for (int64_t e0 = 0; e0 < E; e0 += 8) {
      v8 r[8], c[8];
      for (int i = 0; i < 8; ++i) r[i] = load8(row(j0 + i) + e0);
      transpose8x8(r, c);
      for (int i = 0; i < 8; ++i) store8(tileT + (e0 + i) * kTile + j0, c[i]);
    }
  }
  for (int64_t j = j0; j < n; ++j)
    for (int64_t e = 0; e < E; ++e) tileT[e * kTile + j] = row(j)[e];
}

// This item's query rows (its G heads, every position) gathered into [L][G][E], rotated by RoPE
// when the Dims carry angles: contiguous rows for the loops below.
std::vector<float> gather_queries(const float* q, const Dims& d, int64_t b, int64_t kh) {
  const int64_t G = d.G(), E = d.E;
  std::vector<float> rows(d.L * G * E);
  for (int64_t pos = 0; pos < d.L; ++pos) {
    prefetch_row(q + d.q_at(b, std::min(pos + kPrefetchRows, d.L - 1), kh * G), G * E);
    for (int64_t g = 0; g < G; ++g)
      rope_row(q + d.q_at(b, pos, kh * G + g), d, b, pos, false, &rows[(pos * G + g) * E]);
  }
  return rows;
}


// Online-softmax step for one query row over one key tile: s holds the tile's scores and
// becomes its probabilities exp(s - m_new) (0 past `visible`); m and l (running max and sum)
// are updated. Returns the factor that rescales the row's earlier accumulation.
inline float softmax_tile(float* s, int64_t visible, float& m, float& l) {
  // Off the diagonal every key is visible: the mask would only cost time there.
  const bool masked = visible < kTile;
  v8 tile_max = v8{} - std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < kTile / 8; ++t) {
    const v8 x = load8(&s[8 * t]);
    const v8 larger = x > tile_max ? x : tile_max;
    tile_max = masked ? (visible_mask(t, visible) ? larger : tile_max) : larger;
  }
  const float m_new = std::max(m, hmax(tile_max));
  const float correction = std::exp(m - m_new);
  v8 sum = {};
  for (int64_t t = 0; t < kTile / 8; ++t) {
    const v8 e = exp8(load8(&s[8 * t]) - m_new);
    const v8 p = masked ? (visible_mask(t, visible) ? e : v8{}) : e;
    store8(&s[8 * t], p);
    sum += p;
  }
  l = l * correction + hsum(sum);
  m = m_new;
  return correction;
}

void forward_item(const float* q, const float* k, const float* v, float* out, float* lse,
                  const Dims& d, int64_t b, int64_t kh) {
  const int64_t G = d.G(), E = d.E, L = d.L, R = G * kTile;
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  const int64_t tiles = (L + kTile - 1) / kTile;
  // Every key tile, transposed, and every value row of this item, gathered once (not once per
  // query tile).
  std::vector<float> kT(tiles * E * kTile), vrows(tiles * kTile * E), s(2 * kTile), m(R), l(R),
      acc(R * E);
  for (int64_t k0 = 0; k0 < L; k0 += kTile) {
    const int64_t kn = std::min(kTile, L - k0);
    load_tile(k, d, b, kh, k0, kn, true, &kT[k0 * E], nullptr);
    for (int64_t j = 0; j < kn; ++j) {
      prefetch_row(v + d.kv_at(b, k0 + std::min(j + kPrefetchRows, kn - 1), kh), E);
      std::memcpy(&vrows[(k0 + j) * E], v + d.kv_at(b, k0 + j, kh), E * sizeof(float));
    }
  }
  const std::vector<float> qrows = gather_queries(q, d, b, kh);
  for (int64_t q0 = 0; q0 < L; q0 += kTile) {
    const int64_t qn = std::min(kTile, L - q0);
    std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
    std::fill(l.begin(), l.end(), 0.0f);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t k0 = 0; k0 < q0 + qn; k0 += kTile) {
      const int64_t kn = std::min(kTile, L - k0);
      const float* tileT = &kT[k0 * E];
      const float* tile_rows = &vrows[k0 * E];
      for (int64_t g = 0; g < G; ++g) {
        const float* qh = &qrows[g * E];  // row pos at qh + pos * G * E
        int64_t i = 0;
        for (; i + 1 < qn; i += 2) {  // pairs of rows share the tile loads
          const int64_t pos = q0 + i, r = g * kTile + i;
          const int64_t visible = std::min(kn, pos - k0 + 1), visible_b = std::min(kn, visible + 1);
          two_rows_times_tile(qh + pos * G * E, qh + (pos + 1) * G * E, tileT, E, scale,
                              s.data(), s.data() + kTile, visible_b);
          const float ca = softmax_tile(s.data(), visible, m[r], l[r]);
          const float cb = softmax_tile(s.data() + kTile, visible_b, m[r + 1], l[r + 1]);
          accumulate_two_rows(s.data(), s.data() + kTile, tile_rows, visible_b, E, ca, cb,
                              &acc[r * E], &acc[(r + 1) * E]);
        }
        if (i < qn) {  // an odd row out
          const int64_t pos = q0 + i, r = g * kTile + i;
          const int64_t visible = std::min(kn, pos - k0 + 1);
          row_times_tile(qh + pos * G * E, tileT, E, scale, s.data());
          const float c = softmax_tile(s.data(), visible, m[r], l[r]);
          accumulate_rows(s.data(), tile_rows, visible, E, c, &acc[r * E]);
        }
      }
    }
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kh * G + g;
      for (int64_t i = 0; i < qn; ++i) {
        const int64_t pos = q0 + i, r = g * kTile + i;
        const float inv = 1.0f / l[r];
        float* o = out + ((b * L + pos) * d.H + h) * E;
        prefetch_row_for_write(o + std::min(kPrefetchRows, q0 + qn - 1 - pos) * d.H * E, E);
        for (int64_t e = 0; e < E; ++e) o[e] = acc[r * E + e] * inv;
        lse[(b * d.H + h) * L + pos] = m[r] + std::log(l[r]);
      }
    }
  }
}

void backward_item(const float* q, const float* k, const float* v, const float* out,
                   const float* lse, const float* dout, float* dq, float* dk, float* dv,
                   const Dims& d, int64_t b, int64_t kh) {
  const int64_t G = d.G(), E = d.E, L = d.L;
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  std::vector<float> kT(E * kTile), krows(kTile * E), vT(E * kTile), p(kRows * kTile),
      ds(kRows * kTile);
  std::vector<float> dk_acc(kTile * E), dv_acc(kTile * E), delta(G * L);
  // Query rows and their gradient in [L][G][E] item order (rotated by RoPE, when it applies;
  // the gradient is rotated back as it is written out).
  const std::vector<float> qrows = gather_queries(q, d, b, kh);
  std::vector<float> dqrows(L * G * E, 0.0f);
  // dout's rows gathered in the same [L][G][E] order (every key tile reads them again), and
  // delta = rowsum(dout * out) in the same pass over memory.
  std::vector<float> dorows(L * G * E);
  for (int64_t pos = 0; pos < L; ++pos) {
    const int64_t ahead = ((b * L + std::min(pos + kPrefetchRows, L - 1)) * d.H + kh * G) * E;
    prefetch_row(dout + ahead, G * E);
    prefetch_row(out + ahead, G * E);
    for (int64_t g = 0; g < G; ++g) {
      const int64_t at = ((b * L + pos) * d.H + kh * G + g) * E;
      float* row = &dorows[(pos * G + g) * E];
      v8 sum = {};
      for (int64_t e = 0; e < E; e += 8) {
        const v8 x = load8(dout + at + e);
        store8(row + e, x);
        sum += x * load8(out + at + e);
      }
      delta[g * L + pos] = hsum(sum);
    }
  }
  for (int64_t k0 = 0; k0 < L; k0 += kTile) {
    const int64_t kn = std::min(kTile, L - k0);
    load_tile(k, d, b, kh, k0, kn, true, kT.data(), krows.data());
    load_tile(v, d, b, kh, k0, kn, false, vT.data(), nullptr);
    std::fill(dk_acc.begin(), dk_acc.end(), 0.0f);
    std::fill(dv_acc.begin(), dv_acc.end(), 0.0f);
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kh * G + g;
      // Query rows in groups of kRows: the dk/dv tile accumulators are read and written once
      // per group instead of once per row.
      for (int64_t p0 = k0; p0 < L; p0 += kRows) {
        const int64_t rows = std::min(kRows, L - p0);
        const float* qs[kRows];
        const float* dos[kRows];
        float* dqs[kRows];
        int64_t visible_of[kRows];
        for (int64_t i = 0; i < kRows; ++i) {
          const int64_t pos = p0 + std::min(i, rows - 1);  // pad by repeating a row, weight 0
          qs[i] = &qrows[(pos * G + g) * E];
          dos[i] = &dorows[(pos * G + g) * E];
          dqs[i] = &dqrows[(pos * G + g) * E];
          visible_of[i] = std::min(kn, pos - k0 + 1);
        }
        for (int64_t i = 0; i < kRows; i += 2) {  // scores and dp = dout . v, two rows at a time
          two_rows_times_tile(qs[i], qs[i + 1], kT.data(), E, scale, &p[i * kTile],
                              &p[(i + 1) * kTile], visible_of[i + 1]);
          two_rows_times_tile(dos[i], dos[i + 1], vT.data(), E, 1.0f, &ds[i * kTile],
                              &ds[(i + 1) * kTile], visible_of[i + 1]);
        }
        for (int64_t i = 0; i < kRows; ++i) {
          float* pi = &p[i * kTile];
          float* dsi = &ds[i * kTile];
          if (i >= rows) {
            std::fill(pi, pi + kTile, 0.0f);
            std::fill(dsi, dsi + kTile, 0.0f);
            continue;
          }
          const int64_t pos = p0 + i;
          const float row_lse = lse[(b * d.H + h) * L + pos], row_delta = delta[g * L + pos];
          for (int64_t t = 0; t < kTile / 8; ++t) {  // masked lanes (stale past `keys`) -> 0
            const v8i lanes = visible_mask(t, visible_of[i]);
            const v8 pt = lanes ? exp8(load8(pi + 8 * t) - row_lse) : v8{};
            const v8 dst = (load8(dsi + 8 * t) - row_delta) * scale;
            store8(pi + 8 * t, pt);
            store8(dsi + 8 * t, lanes ? pt * dst : v8{});
          }
        }
        for (int64_t i = 0; i < rows; i += 2) {  // dq rows += ds . k rows
          if (i + 1 < rows) {
            accumulate_two_rows(&ds[i * kTile], &ds[(i + 1) * kTile], krows.data(),
                                visible_of[i + 1], E, 1.0f, 1.0f, dqs[i], dqs[i + 1]);
          } else {  // the padding repeats this row's dq: accumulate it alone
            accumulate_rows(&ds[i * kTile], krows.data(), visible_of[i], E, 1.0f, dqs[i]);
          }
        }
        const int64_t visible = std::min(kn, p0 + rows - 1 - k0 + 1);  // the group's last row
        add_outer_rows(ds.data(), qs, visible, E, dk_acc.data());
        add_outer_rows(p.data(), dos, visible, E, dv_acc.data());
      }
    }
    for (int64_t j = 0; j < kn; ++j) {
      const int64_t at = d.kv_at(b, k0 + j, kh);
      const int64_t ahead = d.kv_at(b, k0 + std::min(j + kPrefetchRows, kn - 1), kh);
      prefetch_row_for_write(dk + ahead, E);
      prefetch_row_for_write(dv + ahead, E);
      rope_row(&dk_acc[j * E], d, b, k0 + j, true, dk + at);
      std::memcpy(dv + at, &dv_acc[j * E], E * sizeof(float));
    }
  }
  for (int64_t pos = 0; pos < L; ++pos) {
    prefetch_row_for_write(dq + d.q_at(b, std::min(pos + kPrefetchRows, L - 1), kh * G), G * E);
    for (int64_t g = 0; g < G; ++g)
      rope_row(&dqrows[(pos * G + g) * E], d, b, pos, true, dq + d.q_at(b, pos, kh * G + g));
  }
}

Dims dims_of(ffi::Buffer<ffi::F32>& q, ffi::Buffer<ffi::F32>& k) {
  auto qd = q.dimensions(), kd = k.dimensions();
  return Dims{qd[0], qd[1], qd[2], kd[2], qd[3], qd[2] * qd[3], kd[2] * qd[3]};
}

// q, k and v as slices of one fused projection qkv [B, L, (H + 2K) E] (H query heads first, then
// K key heads, then K value heads), RoPE applied inside; H and E come from out [B, L, H, E].
Dims fused_dims_of(ffi::Buffer<ffi::F32>& qkv, ffi::Buffer<ffi::F32>& sin,
                   ffi::Buffer<ffi::F32>& cos, ffi::Span<const int64_t> out_dims) {
  auto d = qkv.dimensions();
  const int64_t H = out_dims[2], E = out_dims[3];
  Dims dims{d[0], d[1], H, (d[2] / E - H) / 2, E, d[2], d[2]};
  dims.sin = sin.typed_data();
  dims.cos = cos.typed_data();
  return dims;
}

void run_forward(ffi::ThreadPool& pool, const float* q, const float* k, const float* v,
                 float* out, float* lse, const Dims& d) {
  parallel_for(pool, d.B * d.K, [&](int64_t i) {
    forward_item(q, k, v, out, lse, d, i / d.K, i % d.K);
  });
}

void run_backward(ffi::ThreadPool& pool, const float* q, const float* k, const float* v,
                  const float* out, const float* lse, const float* dout, float* dq, float* dk,
                  float* dv, const Dims& d) {
  parallel_for(pool, d.B * d.K, [&](int64_t i) {
    backward_item(q, k, v, out, lse, dout, dq, dk, dv, d, i / d.K, i % d.K);
  });
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                   ffi::Buffer<ffi::F32> v, ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> lse) {
  run_forward(pool, q.typed_data(), k.typed_data(), v.typed_data(), out->typed_data(),
              lse->typed_data(), dims_of(q, k));
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                    ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> out,
                    ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> dout,
                    ffi::ResultBuffer<ffi::F32> dq, ffi::ResultBuffer<ffi::F32> dk,
                    ffi::ResultBuffer<ffi::F32> dv) {
  run_backward(pool, q.typed_data(), k.typed_data(), v.typed_data(), out.typed_data(),
               lse.typed_data(), dout.typed_data(), dq->typed_data(), dk->typed_data(),
               dv->typed_data(), dims_of(q, k));
  return ffi::Error::Success();
}

ffi::Error FusedForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> sin,
                        ffi::Buffer<ffi::F32> cos, ffi::ResultBuffer<ffi::F32> out,
                        ffi::ResultBuffer<ffi::F32> lse) {
  const Dims d = fused_dims_of(qkv, sin, cos, out->dimensions());
  const float* x = qkv.typed_data();
  run_forward(pool, x, x + d.H * d.E, x + (d.H + d.K) * d.E, out->typed_data(),
              lse->typed_data(), d);
  return ffi::Error::Success();
}

ffi::Error FusedBackward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv,
                         ffi::Buffer<ffi::F32> sin, ffi::Buffer<ffi::F32> cos,
                         ffi::Buffer<ffi::F32> out, ffi::Buffer<ffi::F32> lse,
                         ffi::Buffer<ffi::F32> dout, ffi::ResultBuffer<ffi::F32> dqkv) {
  const Dims d = fused_dims_of(qkv, sin, cos, out.dimensions());
  const float* x = qkv.typed_data();
  float* dx = dqkv->typed_data();
  const int64_t k_off = d.H * d.E, v_off = (d.H + d.K) * d.E;
  run_backward(pool, x, x + k_off, x + v_off, out.typed_data(), lse.typed_data(),
               dout.typed_data(), dx, dx + k_off, dx + v_off, d);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilellmAttentionForward, Forward,  // q, k, v -> out, lse
                              WITH_POOL F32_IN F32_IN F32_IN F32_OUT F32_OUT);
// q, k, v, out, lse, dout -> dq, dk, dv
XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilellmAttentionBackward, Backward,
                              WITH_POOL F32_IN F32_IN F32_IN F32_IN F32_IN F32_IN
                                  F32_OUT F32_OUT F32_OUT);
XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilellmFusedAttentionForward, FusedForward,  // qkv, sin, cos
                              WITH_POOL F32_IN F32_IN F32_IN F32_OUT F32_OUT);
// qkv, sin, cos, out, lse, dout -> dqkv
XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilellmFusedAttentionBackward, FusedBackward,
                              WITH_POOL F32_IN F32_IN F32_IN F32_IN F32_IN F32_IN F32_OUT);
