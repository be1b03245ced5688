// The framework-free API of aetk's native core: raw pointers, sizes, a dtype code and,
// for CUDA, a stream handle. Nothing here knows about PyTorch; aetk/ops/ validates
// tensors and hands their data pointers over.
//
// Conventions shared by every op:
//  * Tensors are contiguous. Dimension 0 is the batch: "rows" is size(0), "cols" the
//    product of the remaining sizes (1 for a 1-D tensor).
//  * Random ops take (seed, offset) and draw element i's bits as philox.h describes.
//  * CPU kernels take float32 or float64; CUDA kernels take float32, float16, bfloat16.
//    Random draws are computed in float32 whatever the storage type.
#pragma once
#include <cstdint>

namespace aetk {

enum class DType : int32_t { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

enum class CorruptKind : int32_t {
  kGaussian = 0,      // y = x + level * N(0, 1)
  kMasking = 1,       // y = 0 with probability level, else x
  kMaskingExact = 2,  // exactly round(level * cols) elements of each row set to 0
  kSaltPepper = 3,    // with probability level, y = lo or hi on a fair coin, else x
  kUniform = 4,       // y = x + U(-level, level)
};

struct CorruptParams {
  CorruptKind kind;
  float level;
  float lo;  // salt-and-pepper values
  float hi;
  uint64_t seed;
  uint64_t offset;
  int64_t rows;
  int64_t cols;
};

namespace cpu {

// Name of the instruction-set path chosen at run time ("avx512", "avx2" or "baseline").
const char* simd_path();
// Force a path (for tests and benchmarks); returns false if the CPU cannot run it.
bool set_simd_path(const char* name);

// y = corrupt(x). mask (optional, may be null) receives 1 where an element was corrupted.
void corrupt(const void* x, void* y, uint8_t* mask, DType dtype, const CorruptParams& p);
// grad_x = grad_y where the element was kept, 0 where it was replaced (the mask is
// regenerated from (seed, offset), never stored).
void corrupt_backward(const void* grad_y, void* grad_x, DType dtype, const CorruptParams& p);

// z = mu + exp(logvar / 2) * eps, kl[r] = -1/2 sum_c (1 + logvar - mu^2 - exp(logvar)).
void reparameterize_forward(const void* mu, const void* logvar, void* z, void* kl, int64_t rows,
                            int64_t cols, DType dtype, uint64_t seed, uint64_t offset);
// grad_z or grad_kl may be null (treated as zero). eps is regenerated.
void reparameterize_backward(const void* mu, const void* logvar, const void* grad_z,
                             const void* grad_kl, void* grad_mu, void* grad_logvar, int64_t rows,
                             int64_t cols, DType dtype, uint64_t seed, uint64_t offset);

// Contractive penalty of a sigmoid encoder h = sigmoid(x W^T + b), h: (rows, hidden),
// W: (hidden, inputs). out[r] = sum_j (h_rj (1 - h_rj))^2 sum_i W_ji^2.
void contractive_forward(const void* h, const void* w, void* out, int64_t rows, int64_t hidden,
                         int64_t inputs, DType dtype);
// grad_h or grad_w may be null (not wanted).
void contractive_backward(const void* h, const void* w, const void* grad_out, void* grad_h,
                          void* grad_w, int64_t rows, int64_t hidden, int64_t inputs, DType dtype);

// Raw draws in element order, for tests and for the PyTorch references.
void random_words(uint32_t* out, int64_t n, uint64_t seed, uint64_t offset);
void normal_noise(float* out, int64_t n, uint64_t seed, uint64_t offset);

}  // namespace cpu

namespace cuda {

// Same contracts as the CPU functions; `stream` is a cudaStream_t. Errors are thrown as
// std::runtime_error carrying the CUDA error string.
void corrupt(const void* x, void* y, uint8_t* mask, DType dtype, const CorruptParams& p,
             void* stream);
void corrupt_backward(const void* grad_y, void* grad_x, DType dtype, const CorruptParams& p,
                      void* stream);
void reparameterize_forward(const void* mu, const void* logvar, void* z, void* kl, int64_t rows,
                            int64_t cols, DType dtype, uint64_t seed, uint64_t offset,
                            void* stream);
void reparameterize_backward(const void* mu, const void* logvar, const void* grad_z,
                             const void* grad_kl, void* grad_mu, void* grad_logvar, int64_t rows,
                             int64_t cols, DType dtype, uint64_t seed, uint64_t offset,
                             void* stream);
void contractive_forward(const void* h, const void* w, void* out, int64_t rows, int64_t hidden,
                         int64_t inputs, DType dtype, void* stream);
void contractive_backward(const void* h, const void* w, const void* grad_out, void* grad_h,
                          void* grad_w, int64_t rows, int64_t hidden, int64_t inputs, DType dtype,
                          void* stream);
void random_words(uint32_t* out, int64_t n, uint64_t seed, uint64_t offset, void* stream);
void normal_noise(float* out, int64_t n, uint64_t seed, uint64_t offset, void* stream);

}  // namespace cuda
}  // namespace aetk
