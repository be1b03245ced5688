// Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC'11), shared verbatim by the C++ and the CUDA kernels.
//
// Every random op takes (seed, offset). The seed is the 64-bit key; the offset selects
// an independent stream (it fills the upper half of the 128-bit counter), so a caller
// gives each call its own offset (the training step, say) and never has to count draws.
//
// Element i of a tensor draws 32-bit word  j = (i / 16) % 4  of the Philox block at
// counter  c = 16 * (i / 64) + i % 16.  Word j of 16 consecutive counters therefore
// covers 16 consecutive elements, so a 16-lane vector of one output word maps onto a
// contiguous run of memory (see ../../../shared KERNELS.md: scattering random words back
// into element order, not the Philox rounds, is what costs time on the CPU). The CUDA
// kernels use the same mapping, so CPU and GPU draw the same bits for every element.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define AETK_HD __host__ __device__ __forceinline__
#else
#define AETK_HD inline
#endif

namespace aetk {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

// Elements per Philox "block": 16 counters x 4 words.
constexpr int64_t kBlockElems = 64;
constexpr int kStreamsPerBlock = 16;

// Scalar 32x32 -> 64 multiply, split into high and low words.
AETK_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  lo = a * b;
  hi = __umulhi(a, b);
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  lo = static_cast<uint32_t>(p);
  hi = static_cast<uint32_t>(p >> 32);
#endif
}

// Round keys: round r uses (key0 + r * W0, key1 + r * W1) mod 2^32, the same as bumping
// the key by (W0, W1) between rounds.
struct ScalarKeys {
  uint32_t key0, key1;
  AETK_HD uint32_t k0(int r) const { return key0 + static_cast<uint32_t>(r) * kPhiloxW0; }
  AETK_HD uint32_t k1(int r) const { return key1 + static_cast<uint32_t>(r) * kPhiloxW1; }
};

// Ten rounds over a counter (c0..c3). U is uint32_t or, on the CPU, a SIMD vector of
// uint32 lanes; Keys gives round keys (ScalarKeys, or precomputed broadcast vectors);
// MulHiLo computes the 32x32 -> 64 products for U.
template <class U, class Keys, class MulHiLo>
AETK_HD void philox10(U& c0, U& c1, U& c2, U& c3, const Keys& keys, MulHiLo mulhilo) {
#if defined(__CUDACC__)
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 10
#endif
  for (int r = 0; r < 10; ++r) {
    U hi0, lo0, hi1, lo1;
    mulhilo(kPhiloxM0, c0, hi0, lo0);
    mulhilo(kPhiloxM1, c2, hi1, lo1);
    const U n0 = hi1 ^ c1 ^ keys.k0(r);
    const U n2 = hi0 ^ c3 ^ keys.k1(r);
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
}

struct ScalarMulHiLo {
  AETK_HD void operator()(uint32_t m, uint32_t a, uint32_t& hi, uint32_t& lo) const {
    mulhilo32(m, a, hi, lo);
  }
};

// One Philox4x32-10 call: 128-bit counter, 64-bit key, four 32-bit words out.
AETK_HD void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  philox10(c0, c1, c2, c3, ScalarKeys{key[0], key[1]}, ScalarMulHiLo{});
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// The four words of counter `c` (= 16 * block + stream) of stream `offset` under `seed`.
AETK_HD void philox_words(uint64_t seed, uint64_t offset, uint64_t c, uint32_t out[4]) {
  const uint32_t ctr[4] = {static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32),
                           static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  philox4x32_10(ctr, key, out);
}

// The 32-bit word that element `i` draws (reference mapping; kernels compute whole blocks).
AETK_HD uint32_t element_word(uint64_t seed, uint64_t offset, uint64_t i) {
  uint32_t w[4];
  philox_words(seed, offset, kStreamsPerBlock * (i / kBlockElems) + i % kStreamsPerBlock, w);
  return w[(i / kStreamsPerBlock) % 4];
}

}  // namespace aetk
