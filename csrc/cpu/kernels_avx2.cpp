// The CPU kernels compiled for the avx2 instruction set (flags in CMakeLists.txt).
#define AETK_ISA_NS avx2
#define AETK_LANES 8
#include "kernels_impl.h"
#include "dispatch.h"

AETK_DEFINE_KERNEL_TABLE(avx2)
