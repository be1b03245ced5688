// aetk._C: the Python face of the native core. Functions take integer data pointers,
// sizes and codes, never tensors: aetk/ops/ validates the tensors and passes
// tensor.data_ptr() (and, for CUDA, the current stream), so this module links no libtorch
// and one build serves every torch version. Calls release the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "aetk/kernels.h"
#include "aetk/philox.h"

namespace py = pybind11;
using aetk::CorruptKind;
using aetk::CorruptParams;
using aetk::DType;

namespace {

template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

CorruptParams corrupt_params(int kind, float level, float lo, float hi, uint64_t seed,
                             uint64_t offset, int64_t rows, int64_t cols) {
  return CorruptParams{static_cast<CorruptKind>(kind), level, lo, hi, seed, offset, rows, cols};
}

#define AETK_COMMON_ARGS py::call_guard<py::gil_scoped_release>()

void bind_cpu(py::module_& m) {
  namespace k = aetk::cpu;
  m.def("simd_path", [] { return std::string(k::simd_path()); },
        "Instruction-set build of the CPU kernels in use: avx512, avx2 or baseline.");
  m.def("set_simd_path", [](const std::string& name) { return k::set_simd_path(name.c_str()); },
        "Use the named CPU kernel build; False if this CPU cannot run it.");
  m.def(
      "corrupt",
      [](uintptr_t x, uintptr_t y, uintptr_t mask, int dtype, int kind, float level, float lo,
         float hi, uint64_t seed, uint64_t offset, int64_t rows, int64_t cols) {
        k::corrupt(ptr<const void>(x), ptr<void>(y), ptr<uint8_t>(mask), static_cast<DType>(dtype),
                   corrupt_params(kind, level, lo, hi, seed, offset, rows, cols));
      },
      AETK_COMMON_ARGS);
  m.def(
      "corrupt_backward",
      [](uintptr_t g, uintptr_t gx, int dtype, int kind, float level, float lo, float hi,
         uint64_t seed, uint64_t offset, int64_t rows, int64_t cols) {
        k::corrupt_backward(ptr<const void>(g), ptr<void>(gx), static_cast<DType>(dtype),
                            corrupt_params(kind, level, lo, hi, seed, offset, rows, cols));
      },
      AETK_COMMON_ARGS);
  m.def(
      "reparameterize_forward",
      [](uintptr_t mu, uintptr_t lv, uintptr_t z, uintptr_t kl, int64_t rows, int64_t cols,
         int dtype, uint64_t seed, uint64_t offset) {
        k::reparameterize_forward(ptr<const void>(mu), ptr<const void>(lv), ptr<void>(z),
                                  ptr<void>(kl), rows, cols, static_cast<DType>(dtype), seed,
                                  offset);
      },
      AETK_COMMON_ARGS);
  m.def(
      "reparameterize_backward",
      [](uintptr_t mu, uintptr_t lv, uintptr_t gz, uintptr_t gkl, uintptr_t gmu, uintptr_t glv,
         int64_t rows, int64_t cols, int dtype, uint64_t seed, uint64_t offset) {
        k::reparameterize_backward(ptr<const void>(mu), ptr<const void>(lv), ptr<const void>(gz),
                                   ptr<const void>(gkl), ptr<void>(gmu), ptr<void>(glv), rows,
                                   cols, static_cast<DType>(dtype), seed, offset);
      },
      AETK_COMMON_ARGS);
  m.def(
      "contractive_forward",
      [](uintptr_t h, uintptr_t w, uintptr_t out, int64_t rows, int64_t hidden, int64_t inputs,
         int dtype) {
        k::contractive_forward(ptr<const void>(h), ptr<const void>(w), ptr<void>(out), rows, hidden,
                               inputs, static_cast<DType>(dtype));
      },
      AETK_COMMON_ARGS);
  m.def(
      "contractive_backward",
      [](uintptr_t h, uintptr_t w, uintptr_t g, uintptr_t gh, uintptr_t gw, int64_t rows,
         int64_t hidden, int64_t inputs, int dtype) {
        k::contractive_backward(ptr<const void>(h), ptr<const void>(w), ptr<const void>(g),
                                ptr<void>(gh), ptr<void>(gw), rows, hidden, inputs,
                                static_cast<DType>(dtype));
      },
      AETK_COMMON_ARGS);
  m.def(
      "random_words",
      [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset) {
        k::random_words(ptr<uint32_t>(out), n, seed, offset);
      },
      AETK_COMMON_ARGS);
  m.def(
      "normal_noise",
      [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset) {
        k::normal_noise(ptr<float>(out), n, seed, offset);
      },
      AETK_COMMON_ARGS);
}

#ifdef AETK_WITH_CUDA
void bind_cuda(py::module_& m) {
  namespace k = aetk::cuda;
  m.def(
      "corrupt",
      [](uintptr_t x, uintptr_t y, uintptr_t mask, int dtype, int kind, float level, float lo,
         float hi, uint64_t seed, uint64_t offset, int64_t rows, int64_t cols, uintptr_t stream) {
        k::corrupt(ptr<const void>(x), ptr<void>(y), ptr<uint8_t>(mask), static_cast<DType>(dtype),
                   corrupt_params(kind, level, lo, hi, seed, offset, rows, cols),
                   ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
  m.def(
      "corrupt_backward",
      [](uintptr_t g, uintptr_t gx, int dtype, int kind, float level, float lo, float hi,
         uint64_t seed, uint64_t offset, int64_t rows, int64_t cols, uintptr_t stream) {
        k::corrupt_backward(ptr<const void>(g), ptr<void>(gx), static_cast<DType>(dtype),
                            corrupt_params(kind, level, lo, hi, seed, offset, rows, cols),
                            ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
  m.def(
      "reparameterize_forward",
      [](uintptr_t mu, uintptr_t lv, uintptr_t z, uintptr_t kl, int64_t rows, int64_t cols,
         int dtype, uint64_t seed, uint64_t offset, uintptr_t stream) {
        k::reparameterize_forward(ptr<const void>(mu), ptr<const void>(lv), ptr<void>(z),
                                  ptr<void>(kl), rows, cols, static_cast<DType>(dtype), seed,
                                  offset, ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
  m.def(
      "reparameterize_backward",
      [](uintptr_t mu, uintptr_t lv, uintptr_t gz, uintptr_t gkl, uintptr_t gmu, uintptr_t glv,
         int64_t rows, int64_t cols, int dtype, uint64_t seed, uint64_t offset, uintptr_t stream) {
        k::reparameterize_backward(ptr<const void>(mu), ptr<const void>(lv), ptr<const void>(gz),
                                   ptr<const void>(gkl), ptr<void>(gmu), ptr<void>(glv), rows,
                                   cols, static_cast<DType>(dtype), seed, offset,
                                   ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
  m.def(
      "contractive_forward",
      [](uintptr_t h, uintptr_t w, uintptr_t out, int64_t rows, int64_t hidden, int64_t inputs,
         int dtype, uintptr_t stream) {
        k::contractive_forward(ptr<const void>(h), ptr<const void>(w), ptr<void>(out), rows, hidden,
                               inputs, static_cast<DType>(dtype), ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
  m.def(
      "contractive_backward",
      [](uintptr_t h, uintptr_t w, uintptr_t g, uintptr_t gh, uintptr_t gw, int64_t rows,
         int64_t hidden, int64_t inputs, int dtype, uintptr_t stream) {
        k::contractive_backward(ptr<const void>(h), ptr<const void>(w), ptr<const void>(g),
                                ptr<void>(gh), ptr<void>(gw), rows, hidden, inputs,
                                static_cast<DType>(dtype), ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
  m.def(
      "random_words",
      [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset, uintptr_t stream) {
        k::random_words(ptr<uint32_t>(out), n, seed, offset, ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
  m.def(
      "normal_noise",
      [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset, uintptr_t stream) {
        k::normal_noise(ptr<float>(out), n, seed, offset, ptr<void>(stream));
      },
      AETK_COMMON_ARGS);
}
#endif

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "aetk native core: fused corruption, reparameterization and contractive kernels";
#ifdef AETK_WITH_CUDA
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif
  m.attr("__version__") = AETK_VERSION;
  m.def(
      "philox4x32_10",
      [](py::tuple ctr, py::tuple key) {
        if (ctr.size() != 4 || key.size() != 2)
          throw py::value_error("philox4x32_10 takes a counter of 4 words and a key of 2 words");
        uint32_t c[4], k[2], out[4];
        for (int i = 0; i < 4; ++i) c[i] = ctr[i].cast<uint32_t>();
        for (int i = 0; i < 2; ++i) k[i] = key[i].cast<uint32_t>();
        aetk::philox4x32_10(c, k, out);
        return py::make_tuple(out[0], out[1], out[2], out[3]);
      },
      "One Philox4x32-10 evaluation (for known-answer tests).");
  py::module_ cpu = m.def_submodule("cpu", "CPU kernels");
  bind_cpu(cpu);
#ifdef AETK_WITH_CUDA
  py::module_ cuda = m.def_submodule("cuda", "CUDA kernels");
  bind_cuda(cuda);
#endif
}
