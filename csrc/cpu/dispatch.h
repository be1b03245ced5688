// One table of kernel entry points per instruction-set build; dispatch.cpp picks the best
// one the running CPU supports.
#pragma once
#include "aetk/kernels.h"

namespace aetk {
namespace cpu {

struct Kernels {
  const char* name;
  void (*corrupt)(const void*, void*, uint8_t*, DType, const CorruptParams&);
  void (*corrupt_backward)(const void*, void*, DType, const CorruptParams&);
  void (*reparameterize_forward)(const void*, const void*, void*, void*, int64_t, int64_t, DType,
                                 uint64_t, uint64_t);
  void (*reparameterize_backward)(const void*, const void*, const void*, const void*, void*,
                                  void*, int64_t, int64_t, DType, uint64_t, uint64_t);
  void (*contractive_forward)(const void*, const void*, void*, int64_t, int64_t, int64_t, DType);
  void (*contractive_backward)(const void*, const void*, const void*, void*, void*, int64_t,
                               int64_t, int64_t, DType);
  void (*random_words)(uint32_t*, int64_t, uint64_t, uint64_t);
  void (*normal_noise)(float*, int64_t, uint64_t, uint64_t);
};

extern const Kernels kernels_baseline;
#if defined(__x86_64__) || defined(_M_X64)
extern const Kernels kernels_avx2;
extern const Kernels kernels_avx512;
#endif

}  // namespace cpu
}  // namespace aetk

// Defines the table `kernels_<isa>` from the functions of namespace AETK_ISA_NS.
#define AETK_DEFINE_KERNEL_TABLE(isa)                                                        \
  namespace aetk {                                                                           \
  namespace cpu {                                                                            \
  const Kernels kernels_##isa = {#isa,                                                       \
                                 AETK_ISA_NS::corrupt,                                       \
                                 AETK_ISA_NS::corrupt_backward,                              \
                                 AETK_ISA_NS::reparameterize_forward,                        \
                                 AETK_ISA_NS::reparameterize_backward,                       \
                                 AETK_ISA_NS::contractive_forward,                           \
                                 AETK_ISA_NS::contractive_backward,                          \
                                 AETK_ISA_NS::random_words,                                  \
                                 AETK_ISA_NS::normal_noise};                                 \
  }                                                                                          \
  }
