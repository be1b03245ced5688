// The CPU kernels compiled for the baseline instruction set (flags in CMakeLists.txt).
#define AETK_ISA_NS baseline
#define AETK_LANES 4
#include "kernels_impl.h"
#include "dispatch.h"

AETK_DEFINE_KERNEL_TABLE(baseline)
