// The CPU kernels compiled for the baseline instruction set (flags in CMakeLists.txt).
#define AETK_ISA_NS baseline
#include "kernels_impl.h"
#include "dispatch.h"

AETK_DEFINE_KERNEL_TABLE(baseline)
