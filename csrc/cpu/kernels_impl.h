// The CPU kernels, written once and compiled per instruction set by kernels_<isa>.cpp,
// each of which defines AETK_ISA_NS before including this file.
//
// Layout of the random draws (philox.h): block b covers elements [64b, 64b + 64); its
// 16 Philox counters (streams) give four words each, and word j of stream s belongs to
// element 64b + 16j + s. A vector of kLanes consecutive streams therefore maps each word
// onto kLanes consecutive elements: loads and stores stay contiguous.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "aetk/kernels.h"
#include "aetk/noise_math.h"
#include "simd.h"

namespace aetk {
namespace cpu {
namespace AETK_ISA_NS {

using F = fvec;
using I = ivec;
using U = uvec;
using L = VecLanes;

// Below this many 64-element blocks a single thread is faster than waking the team.
constexpr int64_t kParallelBlocks = 512;
// A block's 16 streams are processed kSub vectors at a time ("sub-blocks" of kLanes).
constexpr int kSub = kStreamsPerBlock / kLanes;

// The four Philox words of streams [h*kLanes, (h+1)*kLanes) of block b. Word j lane l
// belongs to element 64b + 16j + h*kLanes + l.
inline void block_words(const VecKeys& keys, uint64_t offset, uint64_t b, int h, U w[4]) {
  const uint64_t c = b * kStreamsPerBlock + static_cast<uint64_t>(h * kLanes);
  U lane;
  for (int l = 0; l < kLanes; ++l) lane[l] = static_cast<uint32_t>(l);
  U c0 = lane + static_cast<uint32_t>(c);  // c is a multiple of kLanes: no carry from the lane
  U c1 = U{} + static_cast<uint32_t>(c >> 32);
  U c2 = U{} + static_cast<uint32_t>(offset);
  U c3 = U{} + static_cast<uint32_t>(offset >> 32);
  philox10(c0, c1, c2, c3, keys, VecMulHiLo{});
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

// Two sub-blocks' Philox rounds interleaved: the dependent multiply chains of one fill the
// other's latency (about 1.45x faster than one after the other on AVX2).
struct Pair {
  U a, b;
};
inline Pair operator^(const Pair& x, const Pair& y) { return {x.a ^ y.a, x.b ^ y.b}; }
struct PairKeys {
  const VecKeys& k;
  Pair k0(int r) const { return {k.k0(r), k.k0(r)}; }
  Pair k1(int r) const { return {k.k1(r), k.k1(r)}; }
};
struct PairMulHiLo {
  void operator()(uint32_t m, const Pair& x, Pair& hi, Pair& lo) const {
    VecMulHiLo f;
    f(m, x.a, hi.a, lo.a);
    f(m, x.b, hi.b, lo.b);
  }
};

// The words of every sub-block of block b: w[h][j].
inline void block_words_all(const VecKeys& keys, uint64_t offset, uint64_t b, U w[kSub][4]) {
  if constexpr (kSub == 1) {
    block_words(keys, offset, b, 0, w[0]);
  } else {
    U lane;
    for (int l = 0; l < kLanes; ++l) lane[l] = static_cast<uint32_t>(l);
    const U c2 = U{} + static_cast<uint32_t>(offset), c3 = U{} + static_cast<uint32_t>(offset >> 32);
    for (int h = 0; h < kSub; h += 2) {
      const uint64_t c = b * kStreamsPerBlock + static_cast<uint64_t>(h * kLanes);
      const U hi = U{} + static_cast<uint32_t>(c >> 32);  // same for both: c is a multiple of 16
      Pair p0{lane + static_cast<uint32_t>(c), lane + static_cast<uint32_t>(c + kLanes)};
      Pair p1{hi, hi}, p2{c2, c2}, p3{c3, c3};
      philox10(p0, p1, p2, p3, PairKeys{keys}, PairMulHiLo{});
      w[h][0] = p0.a, w[h][1] = p1.a, w[h][2] = p2.a, w[h][3] = p3.a;
      w[h + 1][0] = p0.b, w[h + 1][1] = p1.b, w[h + 1][2] = p2.b, w[h + 1][3] = p3.b;
    }
  }
}

// Standard normals of every sub-block of block b: Box-Muller on words (0, 1) and (2, 3).
inline void block_normals_all(const VecKeys& keys, uint64_t offset, uint64_t b, F n[kSub][4]) {
  U w[kSub][4];
  block_words_all(keys, offset, b, w);
  for (int h = 0; h < kSub; ++h) {
    box_muller<L>(w[h][0], w[h][1], n[h][0], n[h][1]);
    box_muller<L>(w[h][2], w[h][3], n[h][2], n[h][3]);
  }
}

// Copies word j of sub-block h into a 64-entry array in element order.
template <class V, class T>
inline void scatter_sub(const V (&v)[4], int h, T* flat64) {
  for (int j = 0; j < 4; ++j) std::memcpy(flat64 + 16 * j + h * kLanes, &v[j], sizeof(V));
}

inline void block_words_flat(const VecKeys& keys, uint64_t offset, uint64_t b, uint32_t out[64]) {
  U w[kSub][4];
  block_words_all(keys, offset, b, w);
  for (int h = 0; h < kSub; ++h) scatter_sub(w[h], h, out);
}

inline void block_normals_flat(const VecKeys& keys, uint64_t offset, uint64_t b, float out[64]) {
  F n[kSub][4];
  block_normals_all(keys, offset, b, n);
  for (int h = 0; h < kSub; ++h) scatter_sub(n[h], h, out);
}

// ---------------------------------------------------------------------------------------
// corrupt: y = keep ? x + add : repl. Additive kinds (gaussian, uniform) keep every
// element and add noise; replacing kinds (masking, salt-and-pepper) add nothing.
// ---------------------------------------------------------------------------------------

struct SubNoise {
  F add[4];   // additive kinds
  I keep[4];  // replacing kinds: -1 keep, 0 replace
  F repl[4];
};

inline bool is_additive(CorruptKind k) {
  return k == CorruptKind::kGaussian || k == CorruptKind::kUniform;
}

inline void corrupt_sub_noise(const CorruptParams& p, const U (&w)[4], SubNoise& o) {
  switch (p.kind) {
    case CorruptKind::kGaussian: {
      F n[4];
      box_muller<L>(w[0], w[1], n[0], n[1]);
      box_muller<L>(w[2], w[3], n[2], n[3]);
      for (int j = 0; j < 4; ++j) o.add[j] = n[j] * p.level;
      break;
    }
    case CorruptKind::kUniform:
      for (int j = 0; j < 4; ++j) o.add[j] = (uniform01<L>(w[j]) * 2.0f - 1.0f) * p.level;
      break;
    case CorruptKind::kMasking:
      for (int j = 0; j < 4; ++j) {
        o.keep[j] = uniform01<L>(w[j]) >= p.level;
        o.repl[j] = F{};
      }
      break;
    case CorruptKind::kSaltPepper:
      for (int j = 0; j < 4; ++j) {
        o.keep[j] = uniform01<L>(w[j]) >= p.level;
        o.repl[j] = L::sel((L::to_int(w[j]) & 1) != 0, L::splat(p.hi), L::splat(p.lo));
      }
      break;
    case CorruptKind::kMaskingExact:
      break;  // row-wise, see corrupt_masking_exact
  }
}

// A whole float32 block present: vector loads, selects and stores, sub-block by sub-block.
inline void apply_block_f32(const CorruptParams& p, const VecKeys& keys, uint64_t b, const float* x, float* y,
                            uint8_t* mask, bool additive, bool backward) {
  U w[kSub][4];
  block_words_all(keys, p.offset, b, w);
  for (int h = 0; h < kSub; ++h) {
    SubNoise nz;
    corrupt_sub_noise(p, w[h], nz);
    for (int j = 0; j < 4; ++j) {
      const int e = 16 * j + h * kLanes;
      const F xv = loadv(x + e);
      F yv;
      if (additive)
        yv = backward ? xv : xv + nz.add[j];
      else
        yv = L::sel(nz.keep[j], xv, backward ? F{} : nz.repl[j]);
      storev(y + e, yv);
      if (mask) {
        const u8vec m = additive ? u8vec{} + 1 : __builtin_convertvector((nz.keep[j] == 0) & 1, u8vec);
        std::memcpy(mask + e, &m, sizeof m);
      }
    }
  }
}

// Any block (partial, or float64), element by element from the noise laid out in memory.
template <class T>
inline void apply_block_generic(const CorruptParams& p, const VecKeys& keys, uint64_t b, const T* x, T* y,
                                uint8_t* mask, int count, bool additive, bool backward) {
  float add[64], repl[64];
  int32_t keep[64];
  U w[kSub][4];
  block_words_all(keys, p.offset, b, w);
  for (int h = 0; h < kSub; ++h) {
    SubNoise nz;
    corrupt_sub_noise(p, w[h], nz);
    if (additive) {
      scatter_sub(nz.add, h, add);
    } else {
      scatter_sub(nz.keep, h, keep);
      scatter_sub(nz.repl, h, repl);
    }
  }
  for (int e = 0; e < count; ++e) {
    if (additive) {
      y[e] = backward ? x[e] : x[e] + static_cast<T>(add[e]);
      if (mask) mask[e] = 1;
    } else {
      y[e] = keep[e] ? x[e] : (backward ? T(0) : static_cast<T>(repl[e]));
      if (mask) mask[e] = keep[e] ? 0 : 1;
    }
  }
}

// Words for the flat element range [start, start + count), in element order.
inline void range_words(const VecKeys& keys, uint64_t offset, int64_t start, int64_t count,
                        uint32_t* out) {
  if (count <= 0) return;
  const int64_t end = start + count;
  for (int64_t b = start / kBlockElems; b * kBlockElems < end; ++b) {
    uint32_t flat[64];
    block_words_flat(keys, offset, static_cast<uint64_t>(b), flat);
    const int64_t lo = std::max(start, b * kBlockElems), hi = std::min(end, (b + 1) * kBlockElems);
    for (int64_t e = lo; e < hi; ++e) out[e - start] = flat[e - b * kBlockElems];
  }
}

// masking_exact: in each row, zero the round(level * cols) elements with the smallest
// keys (word << 32 | column). Keys are unique, so exactly that many are zeroed.
template <class T>
void corrupt_masking_exact(const T* x, T* y, uint8_t* mask, const CorruptParams& p,
                           bool backward) {
  const VecKeys keys(p.seed);
  const int64_t rows = p.rows, cols = p.cols;
  const int64_t k = static_cast<int64_t>(std::floor(static_cast<double>(p.level) * cols + 0.5));
#pragma omp parallel if (rows * cols >= kParallelBlocks * kBlockElems)
  {
    std::vector<uint32_t> words(cols);
    std::vector<uint64_t> sort_keys(cols);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t base = r * cols;
      uint64_t threshold = 0;  // drop elements whose key <= threshold
      bool drop_none = k <= 0, drop_all = k >= cols;
      range_words(keys, p.offset, base, cols, words.data());
      if (!drop_none && !drop_all) {
        for (int64_t c = 0; c < cols; ++c)
          sort_keys[c] = (static_cast<uint64_t>(words[c]) << 32) | static_cast<uint64_t>(c);
        std::nth_element(sort_keys.begin(), sort_keys.begin() + (k - 1), sort_keys.end());
        threshold = sort_keys[k - 1];
      }
      for (int64_t c = 0; c < cols; ++c) {
        const uint64_t key = (static_cast<uint64_t>(words[c]) << 32) | static_cast<uint64_t>(c);
        const bool drop = drop_all || (!drop_none && key <= threshold);
        y[base + c] = drop ? T(0) : x[base + c];
        if (mask) mask[base + c] = drop ? 1 : 0;
      }
    }
  }
  (void)backward;  // the gradient is masked exactly like the input
}

template <class T>
void corrupt_impl(const T* x, T* y, uint8_t* mask, const CorruptParams& p, bool backward) {
  const VecKeys keys(p.seed);
  if (p.kind == CorruptKind::kMaskingExact) {
    corrupt_masking_exact(x, y, mask, p, backward);
    return;
  }
  const bool additive = is_additive(p.kind);
  const int64_t n = p.rows * p.cols;
  if (backward && additive) {  // d(x + noise)/dx = 1
    if (x != y) std::memcpy(y, x, sizeof(T) * n);
    return;
  }
  const int64_t nb = (n + kBlockElems - 1) / kBlockElems;
#pragma omp parallel for schedule(static) if (nb >= kParallelBlocks)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t base = b * kBlockElems;
    const int count = static_cast<int>(std::min<int64_t>(kBlockElems, n - base));
    uint8_t* m = mask ? mask + base : nullptr;
    if constexpr (std::is_same_v<T, float>) {
      if (count == kBlockElems) {
        apply_block_f32(p, keys, static_cast<uint64_t>(b), x + base, y + base, m, additive, backward);
        continue;
      }
    }
    apply_block_generic(p, keys, static_cast<uint64_t>(b), x + base, y + base, m, count, additive,
                        backward);
  }
}

// ---------------------------------------------------------------------------------------
// reparameterize: z = mu + exp(logvar/2) * eps, kl_r = -1/2 sum(1 + logvar - mu^2 - exp(logvar))
// Work is split into chunks of whole rows so each row's KL is summed by one thread in a
// fixed order (results do not depend on the thread count).
// ---------------------------------------------------------------------------------------

inline int64_t rows_per_chunk(int64_t cols) {
  return std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1));
}

// Calls fn(block, lo, hi) for each block overlapping the flat range [begin, end), with
// [lo, hi) the part of the block inside the range.
template <class Fn>
inline void for_blocks(int64_t begin, int64_t end, Fn&& fn) {
  for (int64_t b = begin / kBlockElems; b * kBlockElems < end; ++b)
    fn(b, std::max(begin, b * kBlockElems), std::min(end, (b + 1) * kBlockElems));
}

// One whole float32 block inside one row: z for its 64 elements, returns the sum of the
// KL terms (each stream summed over its 4 words, then the 16 streams in a fixed order).
inline float reparam_block_forward_f32(const VecKeys& keys, uint64_t offset, int64_t b,
                                       const float* mu, const float* lv, float* z) {
  const int64_t base = b * kBlockElems;
  float t16[16];
  F nn[kSub][4];
  block_normals_all(keys, offset, static_cast<uint64_t>(b), nn);
  for (int h = 0; h < kSub; ++h) {
    F t = F{};
    for (int j = 0; j < 4; ++j) {
      const int64_t e = base + 16 * j + h * kLanes;
      const F m = loadv(mu + e), v = loadv(lv + e);
      const F sd = expv(v * 0.5f);
      storev(z + e, m + sd * nn[h][j]);
      t += 1.0f + v - m * m - sd * sd;
    }
    std::memcpy(t16 + h * kLanes, &t, sizeof t);
  }
  return hsum16(t16);
}

// One whole float32 block inside one row whose KL gradient is gk.
inline void reparam_block_backward_f32(const VecKeys& keys, uint64_t offset, int64_t b,
                                       const float* mu, const float* lv, const float* gz,
                                       float gk, float* gmu, float* glv) {
  const int64_t base = b * kBlockElems;
  F nn[kSub][4];
  if (gz) block_normals_all(keys, offset, static_cast<uint64_t>(b), nn);
  for (int h = 0; h < kSub; ++h) {
    for (int j = 0; j < 4; ++j) {
      const int64_t e = base + 16 * j + h * kLanes;
      const F m = loadv(mu + e), v = loadv(lv + e);
      const F sd = expv(v * 0.5f);
      const F g = gz ? loadv(gz + e) : F{};
      storev(gmu + e, g + gk * m);
      storev(glv + e, (gz ? g * 0.5f * sd * nn[h][j] : F{}) + gk * 0.5f * (sd * sd - 1.0f));
    }
  }
}

template <class T>
void reparam_forward_impl(const T* mu, const T* lv, T* z, T* kl, int64_t rows, int64_t cols,
                          uint64_t seed, uint64_t offset) {
  const VecKeys keys(seed);
  const bool parallel = rows * cols >= kParallelBlocks * kBlockElems;
  if constexpr (std::is_same_v<T, float>) {
    if (cols % kBlockElems == 0) {  // every block lies in one row: no index arithmetic
      const int64_t per_row = cols / kBlockElems;
#pragma omp parallel for schedule(static) if (parallel)
      for (int64_t r = 0; r < rows; ++r) {
        float acc = 0.0f;
        for (int64_t b = r * per_row; b < (r + 1) * per_row; ++b)
          acc += reparam_block_forward_f32(keys, offset, b, mu, lv, z);
        kl[r] = -0.5f * acc;
      }
      return;
    }
  }
  const int64_t chunk = rows_per_chunk(cols);
  const int64_t nchunks = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t ci = 0; ci < nchunks; ++ci) {
    const int64_t r0 = ci * chunk, r1 = std::min(rows, r0 + chunk);
    std::vector<T> acc(r1 - r0, T(0));
    for_blocks(r0 * cols, r1 * cols, [&](int64_t b, int64_t lo, int64_t hi) {
      const int64_t base = b * kBlockElems;
      if constexpr (std::is_same_v<T, float>) {
        if (lo == base && hi == base + kBlockElems && lo / cols == (hi - 1) / cols) {
          acc[lo / cols - r0] += reparam_block_forward_f32(keys, offset, b, mu, lv, z);
          return;
        }
      }
      float eps[64];
      block_normals_flat(keys, offset, static_cast<uint64_t>(b), eps);
      for (int64_t e = lo; e < hi; ++e) {
        const T m = mu[e], v = lv[e];
        const T sd = std::exp(v * T(0.5));
        z[e] = m + sd * static_cast<T>(eps[e - base]);
        acc[e / cols - r0] += T(1) + v - m * m - sd * sd;
      }
    });
    for (int64_t r = r0; r < r1; ++r) kl[r] = T(-0.5) * acc[r - r0];
  }
}

template <class T>
void reparam_backward_impl(const T* mu, const T* lv, const T* gz, const T* gkl, T* gmu, T* glv,
                           int64_t rows, int64_t cols, uint64_t seed, uint64_t offset) {
  const VecKeys keys(seed);
  const int64_t n = rows * cols;
  const int64_t nb = (n + kBlockElems - 1) / kBlockElems;
  if constexpr (std::is_same_v<T, float>) {
    if (cols % kBlockElems == 0) {
      const int64_t per_row = cols / kBlockElems;
#pragma omp parallel for schedule(static) if (nb >= kParallelBlocks)
      for (int64_t r = 0; r < rows; ++r) {
        const float gk = gkl ? gkl[r] : 0.0f;
        for (int64_t b = r * per_row; b < (r + 1) * per_row; ++b)
          reparam_block_backward_f32(keys, offset, b, mu, lv, gz, gk, gmu, glv);
      }
      return;
    }
  }
#pragma omp parallel for schedule(static) if (nb >= kParallelBlocks)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t base = b * kBlockElems, hi = std::min(n, base + kBlockElems);
    if constexpr (std::is_same_v<T, float>) {
      if (hi == base + kBlockElems && base / cols == (hi - 1) / cols) {
        reparam_block_backward_f32(keys, offset, b, mu, lv, gz, gkl ? gkl[base / cols] : 0.0f,
                                   gmu, glv);
        continue;
      }
    }
    float eps[64];
    if (gz) block_normals_flat(keys, offset, static_cast<uint64_t>(b), eps);
    for (int64_t e = base; e < hi; ++e) {
      const T m = mu[e], v = lv[e];
      const T sd = std::exp(v * T(0.5));
      const T gk = gkl ? gkl[e / cols] : T(0);
      const T g = gz ? gz[e] : T(0);
      gmu[e] = g + gk * m;
      glv[e] = (gz ? g * T(0.5) * sd * static_cast<T>(eps[e - base]) : T(0)) +
               gk * T(0.5) * (sd * sd - T(1));
    }
  }
}

// ---------------------------------------------------------------------------------------
// contractive penalty of a sigmoid layer: out_r = sum_j (h_rj (1 - h_rj))^2 * ||W_j||^2
// Reductions run in 16 independent lanes summed in a fixed order, so every ISA build
// (and every thread count) gives the same bits.
// ---------------------------------------------------------------------------------------

template <class T>
inline T lanes_sum(const T (&acc)[16]) {
  T a[16];
  for (int l = 0; l < 16; ++l) a[l] = acc[l];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) a[l] += a[l + w];
  return a[0];
}

template <class T>
void squared_row_norms(const T* w, T* w2, int64_t hidden, int64_t inputs) {
#pragma omp parallel for schedule(static) if (hidden * inputs >= (1 << 16))
  for (int64_t j = 0; j < hidden; ++j) {
    const T* row = w + j * inputs;
    T acc[16] = {};
    int64_t i = 0;
    for (; i + 16 <= inputs; i += 16)
      for (int l = 0; l < 16; ++l) acc[l] += row[i + l] * row[i + l];
    for (int l = 0; i + l < inputs; ++l) acc[l] += row[i + l] * row[i + l];
    w2[j] = lanes_sum(acc);
  }
}

template <class T>
void contractive_forward_impl(const T* h, const T* w, T* out, int64_t rows, int64_t hidden,
                              int64_t inputs) {
  std::vector<T> w2(hidden);
  squared_row_norms(w, w2.data(), hidden, inputs);
#pragma omp parallel for schedule(static) if (rows * hidden >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const T* hr = h + r * hidden;
    T acc[16] = {};
    int64_t j = 0;
    for (; j + 16 <= hidden; j += 16)
      for (int l = 0; l < 16; ++l) {
        const T s = hr[j + l] * (T(1) - hr[j + l]);
        acc[l] += s * s * w2[j + l];
      }
    for (int l = 0; j + l < hidden; ++l) {
      const T s = hr[j + l] * (T(1) - hr[j + l]);
      acc[l] += s * s * w2[j + l];
    }
    out[r] = lanes_sum(acc);
  }
}

template <class T>
void contractive_backward_impl(const T* h, const T* w, const T* g, T* gh, T* gw, int64_t rows,
                               int64_t hidden, int64_t inputs) {
  if (gh) {
    std::vector<T> w2(hidden);
    squared_row_norms(w, w2.data(), hidden, inputs);
    // d out_r / d h_rj = 2 s (1 - 2h) ||W_j||^2, with s = h (1 - h)
#pragma omp parallel for schedule(static) if (rows * hidden >= (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
      const T* hr = h + r * hidden;
      T* ghr = gh + r * hidden;
      const T gr = g[r] * T(2);
      for (int64_t j = 0; j < hidden; ++j) {
        const T s = hr[j] * (T(1) - hr[j]);
        ghr[j] = gr * s * (T(1) - T(2) * hr[j]) * w2[j];
      }
    }
  }
  if (gw) {
    // d sum_r g_r out_r / d W_ji = 2 W_ji c_j, with c_j = sum_r g_r s_rj^2.
    // Columns of h are split between threads; each sums over all rows in order.
    std::vector<T> c(hidden, T(0));
    constexpr int64_t kCols = 64;
    const int64_t nchunks = (hidden + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (rows * hidden >= (1 << 16))
    for (int64_t ci = 0; ci < nchunks; ++ci) {
      const int64_t j0 = ci * kCols, j1 = std::min(hidden, j0 + kCols);
      for (int64_t r = 0; r < rows; ++r) {
        const T* hr = h + r * hidden;
        const T gr = g[r];
        for (int64_t j = j0; j < j1; ++j) {
          const T s = hr[j] * (T(1) - hr[j]);
          c[j] += gr * s * s;
        }
      }
    }
#pragma omp parallel for schedule(static) if (hidden * inputs >= (1 << 16))
    for (int64_t j = 0; j < hidden; ++j) {
      const T cj = T(2) * c[j];
      const T* wr = w + j * inputs;
      T* gwr = gw + j * inputs;
      for (int64_t i = 0; i < inputs; ++i) gwr[i] = wr[i] * cj;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Entry points of this ISA build (dispatch.cpp picks one build at run time).
// ---------------------------------------------------------------------------------------


inline void corrupt(const void* x, void* y, uint8_t* mask, DType dt, const CorruptParams& p) {
  if (dt == DType::kFloat64)
    corrupt_impl(static_cast<const double*>(x), static_cast<double*>(y), mask, p, false);
  else
    corrupt_impl(static_cast<const float*>(x), static_cast<float*>(y), mask, p, false);
}

inline void corrupt_backward(const void* g, void* gx, DType dt, const CorruptParams& p) {
  if (dt == DType::kFloat64)
    corrupt_impl(static_cast<const double*>(g), static_cast<double*>(gx), nullptr, p, true);
  else
    corrupt_impl(static_cast<const float*>(g), static_cast<float*>(gx), nullptr, p, true);
}

inline void reparameterize_forward(const void* mu, const void* lv, void* z, void* kl,
                                   int64_t rows, int64_t cols, DType dt, uint64_t seed,
                                   uint64_t offset) {
  if (dt == DType::kFloat64)
    reparam_forward_impl(static_cast<const double*>(mu), static_cast<const double*>(lv),
                         static_cast<double*>(z), static_cast<double*>(kl), rows, cols, seed,
                         offset);
  else
    reparam_forward_impl(static_cast<const float*>(mu), static_cast<const float*>(lv),
                         static_cast<float*>(z), static_cast<float*>(kl), rows, cols, seed, offset);
}

inline void reparameterize_backward(const void* mu, const void* lv, const void* gz,
                                    const void* gkl, void* gmu, void* glv, int64_t rows,
                                    int64_t cols, DType dt, uint64_t seed, uint64_t offset) {
  if (dt == DType::kFloat64)
    reparam_backward_impl(static_cast<const double*>(mu), static_cast<const double*>(lv),
                          static_cast<const double*>(gz), static_cast<const double*>(gkl),
                          static_cast<double*>(gmu), static_cast<double*>(glv), rows, cols, seed,
                          offset);
  else
    reparam_backward_impl(static_cast<const float*>(mu), static_cast<const float*>(lv),
                          static_cast<const float*>(gz), static_cast<const float*>(gkl),
                          static_cast<float*>(gmu), static_cast<float*>(glv), rows, cols, seed,
                          offset);
}

inline void contractive_forward(const void* h, const void* w, void* out, int64_t rows,
                                int64_t hidden, int64_t inputs, DType dt) {
  if (dt == DType::kFloat64)
    contractive_forward_impl(static_cast<const double*>(h), static_cast<const double*>(w),
                             static_cast<double*>(out), rows, hidden, inputs);
  else
    contractive_forward_impl(static_cast<const float*>(h), static_cast<const float*>(w),
                             static_cast<float*>(out), rows, hidden, inputs);
}

inline void contractive_backward(const void* h, const void* w, const void* g, void* gh, void* gw,
                                 int64_t rows, int64_t hidden, int64_t inputs, DType dt) {
  if (dt == DType::kFloat64)
    contractive_backward_impl(static_cast<const double*>(h), static_cast<const double*>(w),
                              static_cast<const double*>(g), static_cast<double*>(gh),
                              static_cast<double*>(gw), rows, hidden, inputs);
  else
    contractive_backward_impl(static_cast<const float*>(h), static_cast<const float*>(w),
                              static_cast<const float*>(g), static_cast<float*>(gh),
                              static_cast<float*>(gw), rows, hidden, inputs);
}

inline void random_words(uint32_t* out, int64_t n, uint64_t seed, uint64_t offset) {
  const VecKeys keys(seed);
  const int64_t nb = (n + kBlockElems - 1) / kBlockElems;
#pragma omp parallel for schedule(static) if (nb >= kParallelBlocks)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t base = b * kBlockElems;
    range_words(keys, offset, base, std::min<int64_t>(kBlockElems, n - base), out + base);
  }
}

inline void normal_noise(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  const VecKeys keys(seed);
  const int64_t nb = (n + kBlockElems - 1) / kBlockElems;
#pragma omp parallel for schedule(static) if (nb >= kParallelBlocks)
  for (int64_t b = 0; b < nb; ++b) {
    float flat[64];
    block_normals_flat(keys, offset, static_cast<uint64_t>(b), flat);
    const int64_t base = b * kBlockElems;
    const int64_t count = std::min<int64_t>(kBlockElems, n - base);
    std::memcpy(out + base, flat, sizeof(float) * count);
  }
}

}  // namespace AETK_ISA_NS
}  // namespace cpu
}  // namespace aetk
