// SIMD vectors for the CPU kernels, written once with GCC/Clang vector extensions and
// compiled three times with one native register per vector: 16 float lanes (AVX-512),
// 8 (AVX2) or 4 (baseline SSE2); see kernels_*.cpp. Wider-than-native vector types would
// live in memory, which is slow. The language defines what every vector operation computes, so the three
// builds give bit-identical results; only Philox's 32x32->64 multiply and sqrt use
// intrinsics, because the compiler does not lower those generic forms well.
//
// This header is included by each ISA translation unit inside its own namespace
// (AETK_ISA_NS) so the differently-compiled copies never collide at link time.
#pragma once
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define AETK_X86 1
#endif

#include <cstdint>
#include <cstring>

#include "aetk/philox.h"

// Lanes per vector: one native register of the target (set by each kernels_<isa>.cpp).
#ifndef AETK_LANES
#error "define AETK_LANES (4, 8 or 16) before including simd.h"
#endif
constexpr int kLanes = AETK_LANES;

typedef float fvec __attribute__((vector_size(4 * AETK_LANES)));
typedef int32_t ivec __attribute__((vector_size(4 * AETK_LANES)));
typedef uint32_t uvec __attribute__((vector_size(4 * AETK_LANES)));
typedef uint64_t u64vec __attribute__((vector_size(4 * AETK_LANES)));
typedef uint8_t u8vec __attribute__((vector_size(AETK_LANES)));

namespace aetk {
namespace cpu {
namespace AETK_ISA_NS {

struct VecLanes {
  using F = fvec;
  using I = ivec;
  using U = uvec;
  static inline F splat(float v) { return F{} + v; }
  static inline F to_float(I v) { return __builtin_convertvector(v, F); }
  static inline I to_int(U v) { return (I)v; }
  static inline I as_int(F v) { return (I)v; }
  static inline F as_float(I v) { return (F)v; }
  static inline F sel(I m, F a, F b) { return m ? a : b; }
  static inline I sel_i(I m, I a, I b) { return m ? a : b; }
  // a * b + c with one rounding: the FMA instruction where the build has one, else
  // libm's correctly rounded fmaf lane by lane (same result, slower).
  static inline F fma(F a, F b, F c) {
#if defined(AETK_X86) && AETK_LANES == 16
    return (F)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(AETK_X86) && AETK_LANES == 8
    return (F)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    for (int l = 0; l < kLanes; ++l) a[l] = __builtin_fmaf(a[l], b[l], c[l]);
    return a;
#endif
  }
  static inline F sqrt(F v) {
#if defined(AETK_X86) && AETK_LANES == 16
    return (F)_mm512_sqrt_ps((__m512)v);
#elif defined(AETK_X86) && AETK_LANES == 8
    return (F)_mm256_sqrt_ps((__m256)v);
#elif defined(AETK_X86) && AETK_LANES == 4
    return (F)_mm_sqrt_ps((__m128)v);
#else
    for (int l = 0; l < kLanes; ++l) v[l] = __builtin_sqrtf(v[l]);
    return v;
#endif
  }
};

// hi:lo = m * a per lane: even and odd 32-bit lanes go through pmuludq separately.
// Round keys broadcast once per kernel call (hoisted out of the per-block loop).
struct VecKeys {
  uvec rk0[10], rk1[10];
  explicit VecKeys(uint64_t seed) {
    const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      rk0[r] = uvec{} + (key0 + static_cast<uint32_t>(r) * aetk::kPhiloxW0);
      rk1[r] = uvec{} + (key1 + static_cast<uint32_t>(r) * aetk::kPhiloxW1);
    }
  }
  const uvec& k0(int r) const { return rk0[r]; }
  const uvec& k1(int r) const { return rk1[r]; }
};

struct VecMulHiLo {
  inline void operator()(uint32_t m, uvec a, uvec& hi, uvec& lo) const {
    u64vec pe, po;
#if defined(AETK_X86) && AETK_LANES == 16
    const __m512i va = (__m512i)a, vm = _mm512_set1_epi64(m);
    pe = (u64vec)_mm512_mul_epu32(va, vm);
    po = (u64vec)_mm512_mul_epu32(_mm512_srli_epi64(va, 32), vm);
#elif defined(AETK_X86) && AETK_LANES == 8
    // Blends instead of and/or: two fewer instructions per product on AVX2.
    const __m256i va = (__m256i)a, vm = _mm256_set1_epi64x(m);
    const __m256i e = _mm256_mul_epu32(va, vm);
    const __m256i o = _mm256_mul_epu32(_mm256_srli_epi64(va, 32), vm);
    hi = (uvec)_mm256_blend_epi32(_mm256_srli_epi64(e, 32), o, 0xAA);
    lo = (uvec)_mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
    return;
#elif defined(AETK_X86) && AETK_LANES == 4
    const __m128i va = (__m128i)a, vm = _mm_set1_epi64x(m);
    pe = (u64vec)_mm_mul_epu32(va, vm);
    po = (u64vec)_mm_mul_epu32(_mm_srli_epi64(va, 32), vm);
#else
    const u64vec a64 = (u64vec)a;
    pe = (a64 & 0xffffffffull) * (uint64_t)m;
    po = (a64 >> 32) * (uint64_t)m;
#endif
    const uint64_t low = 0xffffffffull;
    hi = (uvec)((pe >> 32) | (po & ~low));
    lo = (uvec)((pe & low) | (po << 32));
  }
};

inline fvec loadv(const float* p) {
  fvec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storev(float* p, fvec v) { std::memcpy(p, &v, sizeof v); }

// exp(x) for float lanes (Cephes expf, about 1 ulp); inputs clamped to the finite range.
inline fvec expv(fvec x) {
  x = x > 88.0f ? VecLanes::splat(88.0f) : x;  // keeps 2^t finite
  x = x < -87.3365447504f ? VecLanes::splat(-87.3365447504f) : x;
  fvec fx = x * 1.44269504088896341f + 0.5f;
  ivec t = __builtin_convertvector(fx, ivec);  // truncates toward zero
  fvec tf = __builtin_convertvector(t, fvec);
  const ivec too_big = tf > fx;                  // floor for negative values
  t = too_big ? t - 1 : t;
  fx = __builtin_convertvector(t, fvec);
  x = x - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  const fvec z = x * x;
  fvec y = VecLanes::splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const ivec pow2 = (t + 127) << 23;
  return y * (fvec)pow2;
}

// Sum of 16 floats in a fixed pairwise order, identical on every ISA build.
inline float hsum16(const float (&a16)[16]) {
  float a[16];
  std::memcpy(a, a16, sizeof a);
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) a[l] += a[l + w];
  return a[0];
}

}  // namespace AETK_ISA_NS
}  // namespace cpu
}  // namespace aetk
