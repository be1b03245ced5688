// 16-lane SIMD vectors for the CPU kernels, written once with GCC/Clang vector
// extensions and compiled three times (AVX-512, AVX2, baseline SSE2; see
// kernels_*.cpp). The language defines what every vector operation computes, so the three
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

typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint64_t u64x8 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));

namespace aetk {
namespace cpu {
namespace AETK_ISA_NS {

struct VecLanes {
  using F = f32x16;
  using I = i32x16;
  using U = u32x16;
  static inline F splat(float v) { return F{} + v; }
  static inline F to_float(I v) { return __builtin_convertvector(v, F); }
  static inline I to_int(U v) { return (I)v; }
  static inline I as_int(F v) { return (I)v; }
  static inline F as_float(I v) { return (F)v; }
  static inline F sel(I m, F a, F b) { return m ? a : b; }
  static inline I sel_i(I m, I a, I b) { return m ? a : b; }
  static inline F sqrt(F v) {
#if !defined(AETK_X86)
    for (int l = 0; l < 16; ++l) v[l] = __builtin_sqrtf(v[l]);
    return v;
#elif defined(__AVX512F__)
    return (F)_mm512_sqrt_ps((__m512)v);
#elif defined(__AVX__)
    __m256 h[2];
    std::memcpy(h, &v, sizeof v);
    h[0] = _mm256_sqrt_ps(h[0]);
    h[1] = _mm256_sqrt_ps(h[1]);
    std::memcpy(&v, h, sizeof v);
    return v;
#else
    __m128 q[4];
    std::memcpy(q, &v, sizeof v);
    for (auto& x : q) x = _mm_sqrt_ps(x);
    std::memcpy(&v, q, sizeof v);
    return v;
#endif
  }
};

// hi:lo = m * a for 16 lanes: even and odd 32-bit lanes go through pmuludq separately.
struct VecMulHiLo {
  inline void operator()(uint32_t m, u32x16 a, u32x16& hi, u32x16& lo) const {
    u64x8 pe, po;
#if !defined(AETK_X86)
    const u64x8 a64 = (u64x8)a;
    pe = (a64 & 0xffffffffull) * (uint64_t)m;
    po = (a64 >> 32) * (uint64_t)m;
#elif defined(__AVX512F__)
    const __m512i va = (__m512i)a, vm = _mm512_set1_epi64(m);
    pe = (u64x8)_mm512_mul_epu32(va, vm);
    po = (u64x8)_mm512_mul_epu32(_mm512_srli_epi64(va, 32), vm);
#elif defined(__AVX2__)
    __m256i h[2], e[2], o[2];
    std::memcpy(h, &a, sizeof a);
    const __m256i vm = _mm256_set1_epi64x(m);
    for (int k = 0; k < 2; ++k) {
      e[k] = _mm256_mul_epu32(h[k], vm);
      o[k] = _mm256_mul_epu32(_mm256_srli_epi64(h[k], 32), vm);
    }
    std::memcpy(&pe, e, sizeof pe);
    std::memcpy(&po, o, sizeof po);
#else
    __m128i q[4], e[4], o[4];
    std::memcpy(q, &a, sizeof a);
    const __m128i vm = _mm_set1_epi64x(m);
    for (int k = 0; k < 4; ++k) {
      e[k] = _mm_mul_epu32(q[k], vm);
      o[k] = _mm_mul_epu32(_mm_srli_epi64(q[k], 32), vm);
    }
    std::memcpy(&pe, e, sizeof pe);
    std::memcpy(&po, o, sizeof po);
#endif
    const uint64_t low = 0xffffffffull;
    hi = (u32x16)((pe >> 32) | (po & ~low));
    lo = (u32x16)((pe & low) | (po << 32));
  }
};

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

// exp(x) for float lanes (Cephes expf, about 1 ulp); inputs clamped to the finite range.
inline f32x16 exp16(f32x16 x) {
  x = x > 88.0f ? VecLanes::splat(88.0f) : x;  // keeps 2^t finite
  x = x < -87.3365447504f ? VecLanes::splat(-87.3365447504f) : x;
  f32x16 fx = x * 1.44269504088896341f + 0.5f;
  i32x16 t = __builtin_convertvector(fx, i32x16);  // truncates toward zero
  f32x16 tf = __builtin_convertvector(t, f32x16);
  const i32x16 too_big = tf > fx;                  // floor for negative values
  t = too_big ? t - 1 : t;
  fx = __builtin_convertvector(t, f32x16);
  x = x - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  const f32x16 z = x * x;
  f32x16 y = VecLanes::splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const i32x16 pow2 = (t + 127) << 23;
  return y * (f32x16)pow2;
}

inline float hsum16(f32x16 v) {
  // Fixed pairwise order, identical on every ISA build.
  float a[16];
  std::memcpy(a, &v, sizeof a);
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) a[l] += a[l + w];
  return a[0];
}

}  // namespace AETK_ISA_NS
}  // namespace cpu
}  // namespace aetk
