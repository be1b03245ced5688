// Run-time choice of the CPU kernel build: AVX-512, AVX2 or baseline, whichever is the
// best the CPU supports (override with set_simd_path or AETK_SIMD=baseline|avx2|avx512).
// All three compute bit-identical results; only their speed differs.
#include <cstdlib>
#include <cstring>

#include "dispatch.h"

namespace aetk {
namespace cpu {
namespace {

bool cpu_supports(const Kernels* k) {
#if defined(__x86_64__) || defined(_M_X64)
  if (k == &kernels_avx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (k == &kernels_avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return k == &kernels_baseline;
}

const Kernels* by_name(const char* name) {
  if (std::strcmp(name, "baseline") == 0) return &kernels_baseline;
#if defined(__x86_64__) || defined(_M_X64)
  if (std::strcmp(name, "avx2") == 0) return &kernels_avx2;
  if (std::strcmp(name, "avx512") == 0) return &kernels_avx512;
#endif
  return nullptr;
}

const Kernels* best() {
  if (const char* env = std::getenv("AETK_SIMD")) {
    const Kernels* k = by_name(env);
    if (k && cpu_supports(k)) return k;
  }
#if defined(__x86_64__) || defined(_M_X64)
  if (cpu_supports(&kernels_avx512)) return &kernels_avx512;
  if (cpu_supports(&kernels_avx2)) return &kernels_avx2;
#endif
  return &kernels_baseline;
}

const Kernels*& active() {
  static const Kernels* k = best();
  return k;
}

}  // namespace

const char* simd_path() { return active()->name; }

bool set_simd_path(const char* name) {
  const Kernels* k = by_name(name);
  if (!k || !cpu_supports(k)) return false;
  active() = k;
  return true;
}

void corrupt(const void* x, void* y, uint8_t* mask, DType dtype, const CorruptParams& p) {
  active()->corrupt(x, y, mask, dtype, p);
}
void corrupt_backward(const void* g, void* gx, DType dtype, const CorruptParams& p) {
  active()->corrupt_backward(g, gx, dtype, p);
}
void reparameterize_forward(const void* mu, const void* logvar, void* z, void* kl, int64_t rows,
                            int64_t cols, DType dtype, uint64_t seed, uint64_t offset) {
  active()->reparameterize_forward(mu, logvar, z, kl, rows, cols, dtype, seed, offset);
}
void reparameterize_backward(const void* mu, const void* logvar, const void* gz, const void* gkl,
                             void* gmu, void* glv, int64_t rows, int64_t cols, DType dtype,
                             uint64_t seed, uint64_t offset) {
  active()->reparameterize_backward(mu, logvar, gz, gkl, gmu, glv, rows, cols, dtype, seed, offset);
}
void contractive_forward(const void* h, const void* w, void* out, int64_t rows, int64_t hidden,
                         int64_t inputs, DType dtype) {
  active()->contractive_forward(h, w, out, rows, hidden, inputs, dtype);
}
void contractive_backward(const void* h, const void* w, const void* g, void* gh, void* gw,
                          int64_t rows, int64_t hidden, int64_t inputs, DType dtype) {
  active()->contractive_backward(h, w, g, gh, gw, rows, hidden, inputs, dtype);
}
void random_words(uint32_t* out, int64_t n, uint64_t seed, uint64_t offset) {
  active()->random_words(out, n, seed, offset);
}
void normal_noise(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  active()->normal_noise(out, n, seed, offset);
}

}  // namespace cpu
}  // namespace aetk
