// The CPU kernels compiled for the avx512 instruction set (flags in CMakeLists.txt).
#define AETK_ISA_NS avx512
#define AETK_LANES 16
#include "kernels_impl.h"
#include "dispatch.h"

AETK_DEFINE_KERNEL_TABLE(avx512)
