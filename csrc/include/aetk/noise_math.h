// Turning Philox words into uniform and Gaussian draws, identically on CPU and GPU.
//
// The same templates run on plain floats (CUDA threads, scalar CPU code) and on the CPU's
// SIMD vectors. Only correctly rounded operations are used (+, -, *, sqrt, explicit fused
// multiply-add, integer ops) in a fixed order, with implicit FMA contraction disabled in
// the build (-ffp-contract=off, nvcc -fmad=false), so every back end rounds identically:
// Gaussian draws agree bit for bit, which is stronger than the 1e-6 the API promises. log and sin/cos are our own
// Cephes-style minimax polynomials rather than libm/CUDA intrinsics for the same reason.
//
// A "Lanes" policy L supplies the types and the few operations that differ between
// scalars and vectors:  F (float lanes), I (int32 lanes), U (uint32 lanes),
// L::to_float(I), L::as_int(F), L::as_float(I), L::sel(mask, a, b), L::sel_i(mask, a, b),
// L::sqrt(F), L::fma(a, b, c) = a * b + c rounded once, L::to_int(U), L::splat(float).
#pragma once
#include <cstdint>
#include <cstring>

#include "philox.h"

namespace aetk {

// 2^-24: a 24-bit integer times this is an exact float in [0, 1).
constexpr float kTwoPowM24 = 5.9604644775390625e-08f;
// 2*pi / 2^24: converts a 24-bit signed turn fraction into radians.
constexpr float kTwoPiTwoPowM24 = 6.2831853071795864769f * 5.9604644775390625e-08f;

struct ScalarLanes {
  using F = float;
  using I = int32_t;
  using U = uint32_t;
  AETK_HD static F splat(float v) { return v; }
  AETK_HD static F to_float(I v) { return static_cast<float>(v); }
  AETK_HD static I to_int(U v) { return static_cast<int32_t>(v); }
  AETK_HD static I as_int(F v) {
#if defined(__CUDA_ARCH__)
    return __float_as_int(v);
#else
    I r;
    std::memcpy(&r, &v, sizeof r);
    return r;
#endif
  }
  AETK_HD static F as_float(I v) {
#if defined(__CUDA_ARCH__)
    return __int_as_float(v);
#else
    F r;
    std::memcpy(&r, &v, sizeof r);
    return r;
#endif
  }
  AETK_HD static F sel(bool m, F a, F b) { return m ? a : b; }
  AETK_HD static I sel_i(bool m, I a, I b) { return m ? a : b; }
  AETK_HD static F sqrt(F v) {
#if defined(__CUDA_ARCH__)
    return __fsqrt_rn(v);
#else
    return __builtin_sqrtf(v);
#endif
  }
  AETK_HD static F fma(F a, F b, F c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return __builtin_fmaf(a, b, c);
#endif
  }
};

// Uniform in [0, 1) from the top 24 bits: exact, so thresholds compare identically.
template <class L>
AETK_HD typename L::F uniform01(typename L::U w) {
  return L::to_float(L::to_int(w >> 8)) * kTwoPowM24;
}

// Natural log for x in [2^-24, 1] (Cephes logf: range-reduce to [sqrt(1/2), sqrt(2)).
template <class L>
AETK_HD typename L::F log_unit(typename L::F x) {
  using F = typename L::F;
  using I = typename L::I;
  const I bits = L::as_int(x);
  I e = (bits >> 23) - 127;
  F m = L::as_float((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const auto big = m > 1.41421356f;
  m = L::sel(big, m * 0.5f, m);
  e = L::sel_i(big, e + 1, e);
  const F f = m - 1.0f;
  const F z = f * f;
  F y = L::splat(7.0376836292e-2f);
  y = L::fma(y, f, L::splat(-1.1514610310e-1f));
  y = L::fma(y, f, L::splat(1.1676998740e-1f));
  y = L::fma(y, f, L::splat(-1.2420140846e-1f));
  y = L::fma(y, f, L::splat(1.4249322787e-1f));
  y = L::fma(y, f, L::splat(-1.6668057665e-1f));
  y = L::fma(y, f, L::splat(2.0000714765e-1f));
  y = L::fma(y, f, L::splat(-2.4999993993e-1f));
  y = L::fma(y, f, L::splat(3.3333331174e-1f));
  y = y * f * z;
  const F fe = L::to_float(e);
  y = L::fma(fe, L::splat(-2.12194440e-4f), y);
  y = L::fma(z, L::splat(-0.5f), y);
  F r = f + y;
  r = L::fma(fe, L::splat(0.693359375f), r);
  return r;
}

// sin and cos of 2*pi*u where u = (w >> 8) / 2^24. The quadrant comes from the integer
// bits, so range reduction is exact; the remainder lies in [-pi/4, pi/4).
template <class L>
AETK_HD void sincos_turn(typename L::U w, typename L::F& s, typename L::F& c) {
  using F = typename L::F;
  using I = typename L::I;
  const I k = L::to_int(w >> 8);                 // [0, 2^24)
  const I q = (k + (1 << 21)) >> 22;             // nearest quarter turn, 0..4
  const I rem = k - (q << 22);                   // [-2^21, 2^21)
  const F a = L::to_float(rem) * kTwoPiTwoPowM24;
  const F z = a * a;
  F sp = L::splat(-1.9515295891e-4f);
  sp = L::fma(sp, z, L::splat(8.3321608736e-3f));
  sp = L::fma(sp, z, L::splat(-1.6666654611e-1f));
  const F sin_a = L::fma(sp * z, a, a);
  F cp = L::splat(2.443315711809948e-5f);
  cp = L::fma(cp, z, L::splat(-1.388731625493765e-3f));
  cp = L::fma(cp, z, L::splat(4.166664568298827e-2f));
  const F cos_a = L::fma(cp * z, z, L::fma(z, L::splat(-0.5f), L::splat(1.0f)));
  // Rotate by q quarter turns: swap on odd q, then fix the signs.
  const auto odd = (q & 1) != 0;
  const F s0 = L::sel(odd, cos_a, sin_a);
  const F c0 = L::sel(odd, sin_a, cos_a);
  const auto neg_s = (q & 2) != 0;
  const auto neg_c = ((q + 1) & 2) != 0;
  s = L::sel(neg_s, -s0, s0);
  c = L::sel(neg_c, -c0, c0);
}

// Box-Muller: two words give two independent standard normals.
template <class L>
AETK_HD void box_muller(typename L::U wa, typename L::U wb, typename L::F& na,
                        typename L::F& nb) {
  using F = typename L::F;
  // (0, 1]: never log(0).
  const F u = L::to_float(L::to_int((wa >> 8) + 1u)) * kTwoPowM24;
  const F r = L::sqrt(-2.0f * log_unit<L>(u));
  F s, c;
  sincos_turn<L>(wb, s, c);
  na = r * c;
  nb = r * s;
}

}  // namespace aetk
