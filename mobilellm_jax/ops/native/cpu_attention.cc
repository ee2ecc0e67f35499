// Fused causal grouped-query attention for XLA:CPU (float32), called through the XLA FFI.
//
// Why: XLA:CPU runs attention as separate batched matmuls and element-wise passes, each writing
// its [queries, keys] intermediate to memory, and its small batched matmuls (head_dim 32-64) run
// far below its matmul peak (bench/attention_kernel.py times this kernel per shape).
// Here each (batch, kv head) pair is one work item that gathers its keys and values once and
// keeps its intermediates in cache; work items are spread over XLA's own intra-op thread pool.
// Forward: blocks of 6 query rows get their scores against every key they see, one exact
// softmax per row, then probabilities x values (the item's keys and values stay in cache, so
// no running rescale is needed). Backward: per key tile, blocks of 6 query rows recompute
// probabilities from the saved log-sum-exp, add their dQ, and keep probabilities and score
// gradients for a chunk of rows, which then go into the tile's dK and dV in one pass. Every
// product runs through one 6-row register-blocked loop (accumulate_block).
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

constexpr int64_t kTile = 64;  // keys per tile

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

// The rows an item reads and writes are strided (one head of each position), and the loops
// over them are bound by memory latency: each asks for the row kPrefetchRows positions ahead.
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

// The one register-blocked product every matmul of the kernel runs through:
//   acc[r][0:W] (+)= sum_{j < n} w[r * wr + j * wj] * x[j * x_stride + 0:W],  r < R,
// W = 8V floats. R rows of w (scores, probabilities, score gradients, or query rows) against a
// panel of x rows: each x load feeds R FMAs and each broadcast of w feeds V. R = 6, V = 2 keeps
// 12 accumulators in registers, enough independent FMA chains to hide the FMA latency (fewer
// accumulators leave the FMA units waiting on their own results).
constexpr int kBlockRows = 6;

template <int R, int V>
void accumulate_block(const float* w, int64_t wr, int64_t wj, const float* x, int64_t x_stride,
                      int64_t n, float* const* acc, bool fresh) {
  v8 sum[R][V];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < V; ++t) sum[r][t] = fresh ? v8{} : load8(acc[r] + 8 * t);
  for (int64_t j = 0; j < n; ++j) {
    v8 col[V];
    for (int t = 0; t < V; ++t) col[t] = load8(x + j * x_stride + 8 * t);
    for (int r = 0; r < R; ++r) {
      const v8 b = splat(w[r * wr + j * wj]);
      for (int t = 0; t < V; ++t) sum[r][t] += b * col[t];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < V; ++t) store8(acc[r] + 8 * t, sum[r][t]);
}

template <int R>
void accumulate_rows_of(const float* w, int64_t wr, int64_t wj, const float* x, int64_t x_stride,
                        int64_t n, int64_t width, float* const* acc, bool fresh) {
  for (int64_t c = 0; c < width; c += 16) {
    float* at[R];
    for (int r = 0; r < R; ++r) at[r] = acc[r] + c;
    if (c + 16 <= width) accumulate_block<R, 2>(w, wr, wj, x + c, x_stride, n, at, fresh);
    else accumulate_block<R, 1>(w, wr, wj, x + c, x_stride, n, at, fresh);
  }
}

// accumulate_block over a width that is a multiple of 8, for any R <= kBlockRows.
void accumulate(int64_t R, const float* w, int64_t wr, int64_t wj, const float* x,
                int64_t x_stride, int64_t n, int64_t width, float* const* acc, bool fresh) {
  switch (R) {
    case 6: return accumulate_rows_of<6>(w, wr, wj, x, x_stride, n, width, acc, fresh);
    case 5: return accumulate_rows_of<5>(w, wr, wj, x, x_stride, n, width, acc, fresh);
    case 4: return accumulate_rows_of<4>(w, wr, wj, x, x_stride, n, width, acc, fresh);
    case 3: return accumulate_rows_of<3>(w, wr, wj, x, x_stride, n, width, acc, fresh);
    case 2: return accumulate_rows_of<2>(w, wr, wj, x, x_stride, n, width, acc, fresh);
    case 1: return accumulate_rows_of<1>(w, wr, wj, x, x_stride, n, width, acc, fresh);
  }
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

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
// The transpose goes 8 x 8 blocks at a time, in registers: element by element it would be a
// scalar load and store per float.
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
// when the Dims carry angles, plus kBlockRows zero rows of padding: contiguous rows at one
// stride (G * E) for the loops below, whose last block of rows may run past L.
std::vector<float> gather_queries(const float* q, const Dims& d, int64_t b, int64_t kh) {
  const int64_t G = d.G(), E = d.E;
  std::vector<float> rows((d.L + kBlockRows) * G * E, 0.0f);
  for (int64_t pos = 0; pos < d.L; ++pos) {
    prefetch_row(q + d.q_at(b, std::min(pos + kPrefetchRows, d.L - 1), kh * G), G * E);
    for (int64_t g = 0; g < G; ++g)
      rope_row(q + d.q_at(b, pos, kh * G + g), d, b, pos, false, &rows[(pos * G + g) * E]);
  }
  return rows;
}

// Scores of kBlockRows query rows (from `rows`, stride G * E) against keys [0, keys) (rounded up
// to 8), unscaled, into s [kBlockRows][stride]; kT holds every key tile as [E][kTile].
void block_scores(const float* rows, int64_t row_stride, const float* kT, int64_t keys,
                  int64_t E, float* s, int64_t stride) {
  for (int64_t k0 = 0; k0 < keys; k0 += kTile) {
    float* at[kBlockRows];
    for (int r = 0; r < kBlockRows; ++r) at[r] = s + r * stride + k0;
    accumulate(kBlockRows, rows, row_stride, 1, kT + k0 * E, kTile, E,
               round_up(std::min(kTile, keys - k0), 8), at, true);
  }
}

// Each block of kBlockRows query rows sees keys [0, last row's position]: its scores for all of
// them first (one row of s per query), then one exact softmax per row (one max and one sum over
// the row, no running rescale), then the probabilities times the value rows.
void forward_item(const float* q, const float* k, const float* v, float* out, float* lse,
                  const Dims& d, int64_t b, int64_t kh) {
  const int64_t G = d.G(), E = d.E, L = d.L;
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  const int64_t padded = round_up(L, kTile);
  // Every key tile, transposed, and every value row of this item, gathered once (zero past L:
  // a zero probability times an unset row must stay 0).
  std::vector<float> kT(padded * E), vrows(padded * E, 0.0f), s(kBlockRows * padded),
      acc(kBlockRows * E);
  for (int64_t k0 = 0; k0 < L; k0 += kTile) {
    const int64_t kn = std::min(kTile, L - k0);
    load_tile(k, d, b, kh, k0, kn, true, &kT[k0 * E], nullptr);
    for (int64_t j = 0; j < kn; ++j) {
      prefetch_row(v + d.kv_at(b, k0 + std::min(j + kPrefetchRows, kn - 1), kh), E);
      std::memcpy(&vrows[(k0 + j) * E], v + d.kv_at(b, k0 + j, kh), E * sizeof(float));
    }
  }
  const std::vector<float> qrows = gather_queries(q, d, b, kh);
  float* acc_rows[kBlockRows];
  for (int r = 0; r < kBlockRows; ++r) acc_rows[r] = &acc[r * E];
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = kh * G + g;
    for (int64_t p0 = 0; p0 < L; p0 += kBlockRows) {
      const int64_t rows = std::min<int64_t>(kBlockRows, L - p0), keys = p0 + rows;
      const int64_t width = round_up(keys, 8);
      block_scores(&qrows[(p0 * G + g) * E], G * E, kT.data(), keys, E, s.data(), padded);
      float l[kBlockRows], m[kBlockRows];
      for (int64_t r = 0; r < kBlockRows; ++r) {
        float* sr = &s[r * padded];
        if (r >= rows) {  // padding rows: weight 0
          std::fill(sr, sr + width, 0.0f);
          continue;
        }
        // Row pos sees keys [0, pos]: whole vectors first, then one masked vector (if any),
        // then zeros up to the block's width.
        const int64_t visible = p0 + r + 1, whole = visible / 8;
        const v8 minus_inf = v8{} - std::numeric_limits<float>::infinity();
        v8 mx0 = minus_inf, mx1 = minus_inf;  // two chains: max has latency, not throughput
        int64_t t = 0;
        for (; t + 1 < whole; t += 2) {
          const v8 x0 = load8(sr + 8 * t), x1 = load8(sr + 8 * t + 8);
          mx0 = x0 > mx0 ? x0 : mx0;
          mx1 = x1 > mx1 ? x1 : mx1;
        }
        for (; 8 * t < width; ++t) {
          const v8 x = load8(sr + 8 * t);
          mx0 = (visible_mask(t, visible) & (x > mx0)) ? x : mx0;
        }
        mx0 = mx0 > mx1 ? mx0 : mx1;
        m[r] = hmax(mx0) * scale;
        v8 sum0 = {}, sum1 = {};
        for (t = 0; t + 1 < whole; t += 2) {
          const v8 e0 = exp8(load8(sr + 8 * t) * scale - m[r]);
          const v8 e1 = exp8(load8(sr + 8 * t + 8) * scale - m[r]);
          store8(sr + 8 * t, e0);
          store8(sr + 8 * t + 8, e1);
          sum0 += e0;
          sum1 += e1;
        }
        for (; 8 * t < width; ++t) {
          const v8 e = exp8(load8(sr + 8 * t) * scale - m[r]);
          const v8 p = visible_mask(t, visible) ? e : v8{};
          store8(sr + 8 * t, p);
          sum0 += p;
        }
        const v8 sum = sum0 + sum1;
        l[r] = hsum(sum);
      }
      accumulate(kBlockRows, s.data(), padded, 1, vrows.data(), E, keys, E, acc_rows, true);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t pos = p0 + r;
        const float inv = 1.0f / l[r];
        float* o = out + ((b * L + pos) * d.H + h) * E;
        for (int64_t e = 0; e < E; ++e) o[e] = acc[r * E + e] * inv;
        lse[(b * d.H + h) * L + pos] = m[r] + std::log(l[r]);
      }
    }
  }
}

// Query rows per pass of the backward pass's dK / dV products: their probabilities and score
// gradients against one key tile are kept ([kChunkRows][kTile] each) and then multiplied into
// the tile's dK, dV accumulators in one pass, so those are read and written once per chunk.
constexpr int64_t kChunkRows = 8 * kBlockRows;

void backward_item(const float* q, const float* k, const float* v, const float* out,
                   const float* lse, const float* dout, float* dq, float* dk, float* dv,
                   const Dims& d, int64_t b, int64_t kh) {
  const int64_t G = d.G(), E = d.E, L = d.L, stride = G * E;
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  std::vector<float> kT(E * kTile), krows(kTile * E, 0.0f), vT(E * kTile),
      p(kChunkRows * kTile), ds(kChunkRows * kTile), dp(kBlockRows * kTile);
  std::vector<float> dk_acc(kTile * E), dv_acc(kTile * E), delta(G * L);
  // Query rows, their gradient and dout's rows in [L][G][E] item order, padded like
  // gather_queries (RoPE applied to the queries; the gradient is rotated back as it is written
  // out), and delta = rowsum(dout * out) in the same pass over memory as dout's rows.
  const std::vector<float> qrows = gather_queries(q, d, b, kh);
  std::vector<float> dqrows((L + kBlockRows) * stride, 0.0f), dorows((L + kBlockRows) * stride,
                                                                      0.0f);
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
      // Rows before k0 see none of this tile's keys.
      for (int64_t c0 = k0; c0 < L; c0 += kChunkRows) {
        const int64_t chunk = round_up(std::min(kChunkRows, L - c0), kBlockRows);
        for (int64_t p0 = c0; p0 < c0 + chunk; p0 += kBlockRows) {
          const int64_t keys = std::min(kn, p0 + kBlockRows - k0);  // the block's last row's
          const int64_t width = round_up(keys, 8);
          float* pb = &p[(p0 - c0) * kTile];
          float* db = &ds[(p0 - c0) * kTile];
          float* at[kBlockRows];
          for (int r = 0; r < kBlockRows; ++r) at[r] = pb + r * kTile;
          accumulate(kBlockRows, &qrows[(p0 * G + g) * E], stride, 1, kT.data(), kTile, E,
                     width, at, true);
          for (int r = 0; r < kBlockRows; ++r) at[r] = &dp[r * kTile];
          accumulate(kBlockRows, &dorows[(p0 * G + g) * E], stride, 1, vT.data(), kTile, E,
                     width, at, true);
          for (int64_t r = 0; r < kBlockRows; ++r) {
            const int64_t pos = p0 + r;
            float* pr = pb + r * kTile;
            float* dr = db + r * kTile;
            if (pos >= L) {  // padding rows: weight 0
              std::fill(pr, pr + kTile, 0.0f);
              std::fill(dr, dr + kTile, 0.0f);
              continue;
            }
            const int64_t visible = std::min(kn, pos - k0 + 1);
            const float row_lse = lse[(b * d.H + h) * L + pos], row_delta = delta[g * L + pos];
            int64_t t = 0;
            for (; t < visible / 8; ++t) {  // whole vectors of visible keys
              const v8 pt = exp8(load8(pr + 8 * t) * scale - row_lse);
              const v8 dst = (load8(&dp[r * kTile + 8 * t]) - row_delta) * scale;
              store8(pr + 8 * t, pt);
              store8(dr + 8 * t, pt * dst);
            }
            for (; 8 * t < width; ++t) {  // masked lanes -> 0
              const v8i lanes = visible_mask(t, visible);
              const v8 pt = lanes ? exp8(load8(pr + 8 * t) * scale - row_lse) : v8{};
              const v8 dst = (load8(&dp[r * kTile + 8 * t]) - row_delta) * scale;
              store8(pr + 8 * t, pt);
              store8(dr + 8 * t, lanes ? pt * dst : v8{});
            }
            std::fill(pr + width, pr + kTile, 0.0f);  // keys no row of the block sees
            std::fill(dr + width, dr + kTile, 0.0f);
          }
          // dq rows += ds . k rows
          for (int r = 0; r < kBlockRows; ++r) at[r] = &dqrows[((p0 + r) * G + g) * E];
          accumulate(kBlockRows, db, kTile, 1, krows.data(), E, keys, E, at, false);
        }
        // dk rows += ds^T . q rows and dv rows += p^T . dout rows, over the chunk; key j sees
        // rows from position k0 + j on.
        for (int64_t j0 = 0; j0 < kn; j0 += kBlockRows) {
          const int64_t R = std::min<int64_t>(kBlockRows, kn - j0);
          const int64_t first = std::max<int64_t>(0, k0 + j0 - c0);
          if (first >= chunk) continue;
          float* at[kBlockRows];
          const int64_t from = ((c0 + first) * G + g) * E;
          for (int r = 0; r < R; ++r) at[r] = &dk_acc[(j0 + r) * E];
          accumulate(R, &ds[first * kTile + j0], 1, kTile, &qrows[from], stride, chunk - first,
                     E, at, false);
          for (int r = 0; r < R; ++r) at[r] = &dv_acc[(j0 + r) * E];
          accumulate(R, &p[first * kTile + j0], 1, kTile, &dorows[from], stride, chunk - first,
                     E, at, false);
        }
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
