// The CUDA kernels of aetk: every function of aetk::cuda declared in aetk/kernels.h.
//
//  * corrupt / corrupt_backward   elementwise noise (gaussian, uniform, masking,
//                                 salt-and-pepper) and the row-wise masking_exact select
//  * reparameterize_forward/_backward   z = mu + exp(logvar/2) eps and the per-row KL
//  * contractive_forward/_backward      penalty of a sigmoid layer and its gradients
//  * random_words / normal_noise        raw draws in element order
//
// The CPU implementation (csrc/cpu/kernels_impl.h) is the specification. Random draws use
// the shared Philox mapping (aetk/philox.h) and noise_math.h with ScalarLanes; with
// -fmad=false (set by the build) they equal the CPU draws bit for bit. Storage may be
// float32, float16 or bfloat16; arithmetic is always float32. All reductions use a fixed
// summation order (no float atomics), so results do not change from run to run.
//
// Mapping used by every random kernel: thread t handles Philox counter c = t, i.e. block
// b = c / 16, lane c % 16, and produces the four elements 64 b + 16 j + lane (j = 0..3),
// one per output word. A warp therefore covers two whole 64-element blocks and each
// load/store instruction touches contiguous 16-element runs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "aetk/kernels.h"
#include "aetk/noise_math.h"
#include "aetk/philox.h"

namespace aetk {
namespace cuda {
namespace {

using L = ScalarLanes;

constexpr int kThreads = 256;  // threads per block of every 1-D launch
constexpr unsigned kFullMask = 0xffffffffu;

// ---------------------------------------------------------------------------------------
// Host helpers: errors, dtype dispatch, launch sizes, scratch memory.
// ---------------------------------------------------------------------------------------

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw std::runtime_error(std::string("aetk.cuda.") + op + ": " + what);
}

void check(cudaError_t err, const char* op, const char* call) {
  if (err != cudaSuccess) fail(op, std::string(call) + " failed: " + cudaGetErrorString(err));
}

// Called after every kernel launch.
void check_launch(const char* op, const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    fail(op, std::string("launch of ") + kernel + " failed: " + cudaGetErrorString(err));
}

template <class T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<T>{}) with T the storage type of `dtype`.
template <class Fn>
void dispatch(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      fn(Tag<float>{});
      return;
    case DType::kFloat16:
      fn(Tag<__half>{});
      return;
    case DType::kBFloat16:
      fn(Tag<__nv_bfloat16>{});
      return;
    case DType::kFloat64:
      fail(op, "float64 is not supported on CUDA (use float32, float16 or bfloat16)");
  }
  fail(op, "unknown dtype code " + std::to_string(static_cast<int>(dtype)));
}

// Rejects float64 and unknown codes up front, so even empty calls report them.
void require_supported(DType dtype, const char* op) {
  dispatch(dtype, op, [](auto) {});
}

// Upper bound on the blocks of a grid-stride launch: enough to fill every SM several
// times over, few enough that each thread loops a while over its work.
int64_t max_blocks(const char* op) {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), op, "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), op,
        "cudaDeviceGetAttribute");
  return static_cast<int64_t>(std::max(sms, 1)) * 32;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

unsigned grid_for(int64_t work_items, int per_block, int64_t cap) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(work_items, per_block), cap)));
}

// Stream-ordered temporary device memory, freed (stream-ordered) when it goes out of
// scope, including when a later launch throws.
class Scratch {
 public:
  Scratch(int64_t floats, cudaStream_t stream, const char* op) : stream_(stream) {
    if (floats > 0)
      check(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), sizeof(float) * floats, stream), op,
            "cudaMallocAsync");
  }
  ~Scratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);  // a destructor cannot throw; errors resurface later
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* get() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Makes the device that owns an entry point's tensors current for the call, and restores
// the previous device afterwards. The Python layer passes the current stream *of the
// tensors' device* but does not make that device current (torch.library custom ops get no
// device guard), so with tensors on cuda:1 while cuda:0 is current, launches, scratch
// memory and the launch-size query would otherwise go to the wrong device (stream 0 means
// the legacy stream of the *current* device) or fail with an invalid-handle error.
// The first non-null pointer decides; pointers CUDA does not know as device memory
// (host, managed, null) leave the current device alone.
class DeviceGuard {
 public:
  DeviceGuard(std::initializer_list<const void*> ptrs, const char* op) {
    const void* p = nullptr;
    for (const void* q : ptrs) {
      if (q) {
        p = q;
        break;
      }
    }
    if (!p) return;
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
      // Not a pointer this runtime can classify: clear the (non-sticky) error it set and
      // keep the current device; a real problem resurfaces at the launch check.
      (void)cudaGetLastError();
      return;
    }
    if (attr.type != cudaMemoryTypeDevice) return;
    int current = 0;
    check(cudaGetDevice(&current), op, "cudaGetDevice");
    if (attr.device == current) return;
    check(cudaSetDevice(attr.device), op, "cudaSetDevice");
    previous_ = current;
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);  // a destructor cannot throw
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// ---------------------------------------------------------------------------------------
// Device helpers: storage conversion, Philox mapping, reductions.
// ---------------------------------------------------------------------------------------

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// std::min is host-only without --expt-relaxed-constexpr; kernels use this instead.
__host__ __device__ __forceinline__ int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// Number of Philox counters covering elements [0, n): 16 per (partial) 64-element block.
__host__ __device__ __forceinline__ int64_t counters_for(int64_t n) {
  return ((n + kBlockElems - 1) / kBlockElems) * kStreamsPerBlock;
}

// Element drawing word 0 of counter c; word j covers element first_element(c) + 16 j.
__host__ __device__ __forceinline__ int64_t first_element(int64_t c) {
  return (c >> 4) * kBlockElems + (c & 15);
}

// Counters [begin, end) of the Philox blocks overlapping the element range [lo, hi), hi > lo.
__host__ __device__ __forceinline__ int64_t first_counter(int64_t lo) {
  return (lo / kBlockElems) * kStreamsPerBlock;
}
__host__ __device__ __forceinline__ int64_t end_counter(int64_t hi) {
  return ((hi - 1) / kBlockElems + 1) * kStreamsPerBlock;
}

// The four standard normals of counter c: Box-Muller on words (0, 1) and (2, 3).
__device__ __forceinline__ void counter_normals(uint64_t seed, uint64_t offset, int64_t c,
                                                float n[4]) {
  uint32_t w[4];
  philox_words(seed, offset, static_cast<uint64_t>(c), w);
  box_muller<L>(w[0], w[1], n[0], n[1]);
  box_muller<L>(w[2], w[3], n[2], n[3]);
}

// Butterfly sum: every lane ends with the same value, in an order fixed by the lane ids.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// ---------------------------------------------------------------------------------------
// corrupt (elementwise kinds). One thread per Philox counter, grid-stride.
//   additive  (gaussian, uniform):          y = x + add,            mask = 1
//   replacing (masking, salt-and-pepper):   y = keep ? x : repl,    mask = !keep
// Backward of the replacing kinds is the replacing kernel with repl = 0; both kinds keep
// iff uniform01(w) >= level, so one instantiation (kMasking, backward) serves both.
// Loads are issued before the Philox rounds so their latency overlaps the arithmetic;
// x and y may alias (in place): each element is read and then written by one thread.
// ---------------------------------------------------------------------------------------

struct NoiseArgs {
  uint64_t seed;
  uint64_t offset;
  float level;
  float lo;
  float hi;
};

template <class T, CorruptKind K, bool kBackward>
__global__ void __launch_bounds__(kThreads)
    corrupt_kernel(const T* x, T* y, uint8_t* mask, int64_t n, NoiseArgs a) {
  constexpr bool kAdditive = K == CorruptKind::kGaussian || K == CorruptKind::kUniform;
  static_assert(!(kAdditive && kBackward), "additive kinds copy the gradient instead");
  const int64_t ncounters = counters_for(n);
  for (int64_t c = global_thread(); c < ncounters; c += grid_threads()) {
    const int64_t e0 = first_element(c);
    const bool full = e0 + 3 * kStreamsPerBlock < n;  // all four elements in range
    T xv[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = e0 + kStreamsPerBlock * j;
      xv[j] = (full || i < n) ? x[i] : from_f<T>(0.0f);
    }
    uint32_t w[4];
    philox_words(a.seed, a.offset, static_cast<uint64_t>(c), w);
    float add[4] = {}, repl[4] = {};
    bool keep[4] = {true, true, true, true};
    if constexpr (K == CorruptKind::kGaussian) {
      float nz[4];
      box_muller<L>(w[0], w[1], nz[0], nz[1]);
      box_muller<L>(w[2], w[3], nz[2], nz[3]);
#pragma unroll
      for (int j = 0; j < 4; ++j) add[j] = nz[j] * a.level;
    } else if constexpr (K == CorruptKind::kUniform) {
#pragma unroll
      for (int j = 0; j < 4; ++j) add[j] = (uniform01<L>(w[j]) * 2.0f - 1.0f) * a.level;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        keep[j] = uniform01<L>(w[j]) >= a.level;
        if constexpr (K == CorruptKind::kSaltPepper && !kBackward)
          repl[j] = (w[j] & 1u) ? a.hi : a.lo;
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = e0 + kStreamsPerBlock * j;
      if (!(full || i < n)) continue;
      if constexpr (kAdditive) {
        y[i] = from_f<T>(to_f(xv[j]) + add[j]);
        if (mask) mask[i] = 1;
      } else {
        y[i] = keep[j] ? xv[j] : from_f<T>(repl[j]);
        if (mask) mask[i] = keep[j] ? 0 : 1;
      }
    }
  }
}

template <class T, CorruptKind K, bool kBackward>
void launch_corrupt(const void* x, void* y, uint8_t* mask, const CorruptParams& p,
                    cudaStream_t stream, const char* op) {
  const int64_t n = p.rows * p.cols;
  const NoiseArgs a{p.seed, p.offset, p.level, p.lo, p.hi};
  corrupt_kernel<T, K, kBackward>
      <<<grid_for(counters_for(n), kThreads, max_blocks(op)), kThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<T*>(y), mask, n, a);
  check_launch(op, "corrupt_kernel");
}

// ---------------------------------------------------------------------------------------
// corrupt, masking_exact: in each row zero the k = round(level * cols) elements with the
// smallest keys (word << 32 | column). One thread block per row (grid-stride over rows):
//   1. (short rows) the row's Philox words are cached in shared memory;
//   2. radix select, 8 bits per pass from the top: a shared histogram of the digit over
//      the keys that still match the chosen prefix picks the bucket holding the k-th
//      smallest key. As soon as that bucket holds exactly the remaining rank, every key
//      in it is dropped and the threshold is the prefix with all lower bits set. Random
//      words make this happen after two passes almost always; at the latest after eight,
//      since keys are unique;
//   3. drop every element whose key <= threshold.
// Long rows recompute the words from Philox on each pass instead of caching them.
// ---------------------------------------------------------------------------------------

constexpr int64_t kMaxCachedCols = 8192;  // 32 KiB of words: leaves room for several blocks/SM
constexpr int kSelectMaxThreads = 512;    // largest block masking_exact_kernel is launched with
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;

__host__ __device__ __forceinline__ uint64_t select_key(uint32_t word, int64_t col) {
  return (static_cast<uint64_t>(word) << 32) | static_cast<uint64_t>(col);
}

struct SelectState {
  unsigned long long prefix;  // key bits chosen so far (bits below the current digit are 0)
  unsigned rank;              // 1-based rank of the target among keys matching prefix
  unsigned count;             // keys matching prefix
};

// Warp 0: find the bin holding the rank-th key (counting from bin 0) and record it.
// Lane l owns bins 8l .. 8l+7; an inclusive scan of the lane totals finds the lane.
__device__ void pick_bin(const unsigned* hist, unsigned rank, unsigned long long prefix,
                         int shift, SelectState* st) {
  const int lane = threadIdx.x;
  unsigned h[kRadixBins / 32];
  unsigned total = 0;
#pragma unroll
  for (int b = 0; b < kRadixBins / 32; ++b) {
    h[b] = hist[lane * (kRadixBins / 32) + b];
    total += h[b];
  }
  unsigned incl = total;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned v = __shfl_up_sync(kFullMask, incl, o);
    if (lane >= o) incl += v;
  }
  const unsigned excl = incl - total;
  if (excl < rank && rank <= incl) {  // exactly one lane: the ranges (excl, incl] partition
    unsigned cum = excl;
#pragma unroll
    for (int b = 0; b < kRadixBins / 32; ++b) {
      if (cum + h[b] >= rank) {
        st->prefix = prefix | (static_cast<unsigned long long>(lane * (kRadixBins / 32) + b)
                               << shift);
        st->rank = rank - cum;
        st->count = h[b];
        break;
      }
      cum += h[b];
    }
  }
}

// The k-th smallest key of the row (1 <= k < cols), or a value that separates the k
// smallest keys from the rest. visit(fn) must call fn(col, word) once for every column,
// spread over the block's threads. All threads of the block must call this.
template <class Visit>
__device__ uint64_t select_threshold(Visit&& visit, int64_t k, unsigned* hist,
                                     SelectState* st) {
  unsigned long long prefix = 0;
  unsigned rank = static_cast<unsigned>(k);
  for (int shift = 64 - kRadixBits; shift >= 0; shift -= kRadixBits) {
    for (int b = threadIdx.x; b < kRadixBins; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    // Bits above this digit must equal the prefix (none on the first pass).
    const unsigned long long above =
        shift + kRadixBits >= 64 ? 0ull : ~0ull << (shift + kRadixBits);
    visit([&](int64_t col, uint32_t word) {
      const uint64_t key = select_key(word, col);
      if ((key & above) == prefix) atomicAdd(&hist[(key >> shift) & (kRadixBins - 1)], 1u);
    });
    __syncthreads();
    if (threadIdx.x < 32) pick_bin(hist, rank, prefix, shift, st);
    __syncthreads();
    prefix = st->prefix;
    rank = st->rank;
    // Every key in the chosen bin is among the k smallest: drop the whole bin.
    if (st->count == rank) return prefix | ((1ull << shift) - 1ull);
  }
  return prefix;  // not reached for unique keys (the last pass leaves count == rank == 1)
}

// Calls fn(col, word) for the columns of the flat element range [lo, hi) that this
// thread's counters cover (counter-major order: contiguous 16-element runs per warp).
template <class Fn>
__device__ __forceinline__ void visit_row_philox(uint64_t seed, uint64_t offset, int64_t lo,
                                                 int64_t hi, Fn&& fn) {
  const int64_t cend = end_counter(hi);
  for (int64_t c = first_counter(lo) + threadIdx.x; c < cend; c += blockDim.x) {
    uint32_t w[4];
    philox_words(seed, offset, static_cast<uint64_t>(c), w);
    const int64_t e0 = first_element(c);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = e0 + kStreamsPerBlock * j;
      if (i >= lo && i < hi) fn(i - lo, w[j]);
    }
  }
}

template <class T, bool kCached>
__global__ void __launch_bounds__(kSelectMaxThreads)
    masking_exact_kernel(const T* x, T* y, uint8_t* mask, int64_t rows, int64_t cols, int64_t k,
                         uint64_t seed, uint64_t offset) {
  extern __shared__ uint32_t s_words[];  // cols words when kCached
  __shared__ unsigned s_hist[kRadixBins];
  __shared__ SelectState s_state;
  const bool drop_none = k <= 0, drop_all = k >= cols;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t lo = r * cols, hi = lo + cols;
    // visit(fn): fn(col, word) for every column of the row, from the cache or Philox.
    auto visit = [&](auto&& fn) {
      if constexpr (kCached) {
        for (int64_t col = threadIdx.x; col < cols; col += blockDim.x) fn(col, s_words[col]);
      } else {
        visit_row_philox(seed, offset, lo, hi, fn);
      }
    };
    uint64_t threshold = 0;
    if (!drop_none && !drop_all) {
      if constexpr (kCached) {
        visit_row_philox(seed, offset, lo, hi,
                         [&](int64_t col, uint32_t word) { s_words[col] = word; });
        __syncthreads();
      }
      threshold = select_threshold(visit, k, s_hist, &s_state);
    }
    if (drop_none || drop_all) {
      // No draws needed: copy or zero the row.
      for (int64_t col = threadIdx.x; col < cols; col += blockDim.x) {
        y[lo + col] = drop_all ? from_f<T>(0.0f) : x[lo + col];
        if (mask) mask[lo + col] = drop_all ? 1 : 0;
      }
    } else {
      visit([&](int64_t col, uint32_t word) {
        const bool drop = select_key(word, col) <= threshold;
        y[lo + col] = drop ? from_f<T>(0.0f) : x[lo + col];
        if (mask) mask[lo + col] = drop ? 1 : 0;
      });
    }
    __syncthreads();  // the next row reuses s_words / s_hist / s_state
  }
}

template <class T>
void launch_masking_exact(const void* x, void* y, uint8_t* mask, const CorruptParams& p,
                          cudaStream_t stream, const char* op) {
  const int64_t rows = p.rows, cols = p.cols;
  if (cols >= (int64_t{1} << 32))
    fail(op, "masking_exact needs rows of fewer than 2^32 elements");
  // Same expression as the CPU kernel, so both round level * cols identically.
  const int64_t k = static_cast<int64_t>(std::floor(static_cast<double>(p.level) * cols + 0.5));
  // About 8 columns per thread, between 2 and 16 warps.
  const int threads = static_cast<int>(
      std::clamp<int64_t>(ceil_div(cols, 8 * 32) * 32, 64, kSelectMaxThreads));
  const unsigned blocks = grid_for(rows, 1, max_blocks(op));
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  if (cols <= kMaxCachedCols) {
    masking_exact_kernel<T, true>
        <<<blocks, threads, sizeof(uint32_t) * cols, stream>>>(xt, yt, mask, rows, cols, k,
                                                               p.seed, p.offset);
  } else {
    masking_exact_kernel<T, false>
        <<<blocks, threads, 0, stream>>>(xt, yt, mask, rows, cols, k, p.seed, p.offset);
  }
  check_launch(op, "masking_exact_kernel");
}

// ---------------------------------------------------------------------------------------
// reparameterize. Work items are (row, segment) pairs, a segment being up to kSegCols
// columns of one row, each handled by one warp: lanes 0-15 and 16-31 take the counters
// of consecutive 64-element blocks overlapping the segment. Rows are thus known without
// per-element division, and the KL sum of a segment is the lanes' running sums reduced
// by a butterfly: a fixed order. Rows of more than kSegCols columns store per-segment
// partial sums that a second kernel adds up in segment order.
// ---------------------------------------------------------------------------------------

constexpr int64_t kSegCols = 4096;
constexpr int kWarpsPerBlock = kThreads / 32;

int64_t segments_for(int64_t cols) { return std::max<int64_t>(1, ceil_div(cols, kSegCols)); }

template <class T>
__global__ void __launch_bounds__(kThreads)
    reparam_forward_kernel(const T* mu, const T* lv, T* z, T* kl, float* partial, int64_t rows,
                           int64_t cols, int64_t nseg, uint64_t seed, uint64_t offset) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = grid_threads() >> 5;
  for (int64_t task = global_thread() >> 5; task < rows * nseg; task += nwarps) {
    const int64_t r = task / nseg, s = task - r * nseg;
    const int64_t lo = r * cols + s * kSegCols;
    const int64_t hi = r * cols + min_i64(cols, (s + 1) * kSegCols);
    float acc = 0.0f;
    if (hi > lo) {
      const int64_t cend = end_counter(hi);
      for (int64_t c = first_counter(lo) + lane; c < cend; c += 32) {
        float eps[4];
        counter_normals(seed, offset, c, eps);
        const int64_t e0 = first_element(c);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t i = e0 + kStreamsPerBlock * j;
          if (i < lo || i >= hi) continue;
          const float m = to_f(mu[i]), v = to_f(lv[i]);
          const float sd = expf(v * 0.5f);
          z[i] = from_f<T>(m + sd * eps[j]);
          acc += 1.0f + v - m * m - sd * sd;  // same order as the CPU
        }
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) {
      if (nseg == 1)
        kl[r] = from_f<T>(-0.5f * acc);
      else
        partial[task] = acc;
    }
  }
}

// One warp per row: kl[r] = -1/2 * sum of the row's segment partials.
template <class T>
__global__ void __launch_bounds__(kThreads)
    reparam_kl_finish_kernel(const float* partial, T* kl, int64_t rows, int64_t nseg) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = grid_threads() >> 5;
  for (int64_t r = global_thread() >> 5; r < rows; r += nwarps) {
    float acc = 0.0f;
    for (int64_t s = lane; s < nseg; s += 32) acc += partial[r * nseg + s];
    acc = warp_sum(acc);
    if (lane == 0) kl[r] = from_f<T>(-0.5f * acc);
  }
}

// gmu = gz + gkl[r] mu,  glv = gz/2 sd eps + gkl[r]/2 (sd^2 - 1); eps only drawn when gz.
template <class T>
__global__ void __launch_bounds__(kThreads)
    reparam_backward_kernel(const T* mu, const T* lv, const T* gz, const T* gkl, T* gmu, T* glv,
                            int64_t rows, int64_t cols, int64_t nseg, uint64_t seed,
                            uint64_t offset) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = grid_threads() >> 5;
  for (int64_t task = global_thread() >> 5; task < rows * nseg; task += nwarps) {
    const int64_t r = task / nseg, s = task - r * nseg;
    const int64_t lo = r * cols + s * kSegCols;
    const int64_t hi = r * cols + min_i64(cols, (s + 1) * kSegCols);
    if (hi <= lo) continue;
    const float gk = gkl ? to_f(gkl[r]) : 0.0f;
    const int64_t cend = end_counter(hi);
    for (int64_t c = first_counter(lo) + lane; c < cend; c += 32) {
      float eps[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (gz) counter_normals(seed, offset, c, eps);
      const int64_t e0 = first_element(c);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t i = e0 + kStreamsPerBlock * j;
        if (i < lo || i >= hi) continue;
        const float m = to_f(mu[i]), v = to_f(lv[i]);
        const float sd = expf(v * 0.5f);
        const float g = gz ? to_f(gz[i]) : 0.0f;
        gmu[i] = from_f<T>(g + gk * m);
        glv[i] = from_f<T>((gz ? g * 0.5f * sd * eps[j] : 0.0f) + gk * 0.5f * (sd * sd - 1.0f));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// contractive penalty: out_r = sum_j (h_rj (1 - h_rj))^2 w2_j, w2_j = sum_i W_ji^2.
//   row_sum_kernel      a group (warp or block) per row sums term(r, j) over j: w2 and out
//   col_partial_kernel  c_j = sum_r g_r s_rj^2 over chunks of 256 rows (32 x 8 tiles)
//   col_finish_kernel   adds the chunk partials in chunk order
//   grid2d_kernel       elementwise grad_h and grad_w
// ---------------------------------------------------------------------------------------

// Sums term(r, j) for j in [0, len) into out(r, sum); one group of kGroup threads per row
// (kGroup = 32: a warp, kGroup = kThreads: the block). Each thread sums a strided subset
// in order, then warp butterflies and, for a block, warp totals in warp order.
template <int kGroup, class Term, class Out>
__global__ void __launch_bounds__(kThreads)
    row_sum_kernel(int64_t nrows, int64_t len, Term term, Out out) {
  static_assert(kGroup == 32 || kGroup == kThreads, "a warp or the block");
  constexpr int kGroups = kThreads / kGroup;
  __shared__ float s_warp[kThreads / 32];
  const int group = threadIdx.x / kGroup, t = threadIdx.x % kGroup;
  // r is uniform over a group, so the block-wide barriers below are safe when kGroups == 1.
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kGroups + group; r < nrows;
       r += static_cast<int64_t>(gridDim.x) * kGroups) {
    float acc = 0.0f;
    for (int64_t j = t; j < len; j += kGroup) acc += term(r, j);
    acc = warp_sum(acc);
    if constexpr (kGroup == 32) {
      if (t == 0) out(r, acc);
    } else {
      if ((threadIdx.x & 31) == 0) s_warp[threadIdx.x >> 5] = acc;
      __syncthreads();
      if (threadIdx.x == 0) {
        float total = 0.0f;
#pragma unroll
        for (int w = 0; w < kThreads / 32; ++w) total += s_warp[w];
        out(r, total);
      }
      __syncthreads();
    }
  }
}

template <class Term, class Out>
void launch_row_sum(int64_t nrows, int64_t len, Term term, Out out, cudaStream_t stream,
                    const char* op) {
  if (nrows <= 0) return;
  if (len >= 1024) {  // long rows: a block per row
    row_sum_kernel<kThreads><<<grid_for(nrows, 1, max_blocks(op)), kThreads, 0, stream>>>(
        nrows, len, term, out);
  } else {
    row_sum_kernel<32><<<grid_for(nrows, kWarpsPerBlock, max_blocks(op)), kThreads, 0, stream>>>(
        nrows, len, term, out);
  }
  check_launch(op, "row_sum_kernel");
}

template <class T>
struct SquareTerm {  // W_ji^2
  const T* w;
  int64_t inputs;
  __device__ float operator()(int64_t j, int64_t i) const {
    const float v = to_f(w[j * inputs + i]);
    return v * v;
  }
};

struct StoreFloat {
  float* out;
  __device__ void operator()(int64_t r, float v) const { out[r] = v; }
};

template <class T>
struct PenaltyTerm {  // (h (1 - h))^2 w2_j
  const T* h;
  const float* w2;
  int64_t hidden;
  __device__ float operator()(int64_t r, int64_t j) const {
    const float hv = to_f(h[r * hidden + j]);
    const float s = hv * (1.0f - hv);
    return s * s * w2[j];
  }
};

template <class T>
struct StoreT {
  T* out;
  __device__ void operator()(int64_t r, float v) const { out[r] = from_f<T>(v); }
};

constexpr int kColTile = 32;        // columns of h per block (threadIdx.x)
constexpr int kColRowThreads = 8;   // threads along the rows (threadIdx.y)
constexpr int64_t kColChunk = 256;  // rows per partial sum

// partial[chunk, j] = sum over the chunk's rows r of g_r s_rj^2, s = h (1 - h).
template <class T>
__global__ void __launch_bounds__(kColTile * kColRowThreads)
    col_partial_kernel(const T* h, const T* g, float* partial, int64_t rows, int64_t hidden,
                       int64_t nchunks) {
  __shared__ float s_acc[kColRowThreads][kColTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  for (int64_t ch = blockIdx.y; ch < nchunks; ch += gridDim.y) {  // uniform over the block
    const int64_t r1 = min_i64(rows, (ch + 1) * kColChunk);
    float acc = 0.0f;
    if (j < hidden) {
      for (int64_t r = ch * kColChunk + ty; r < r1; r += kColRowThreads) {
        const float hv = to_f(h[r * hidden + j]);
        const float s = hv * (1.0f - hv);
        acc += to_f(g[r]) * s * s;
      }
    }
    s_acc[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && j < hidden) {
      float total = 0.0f;
#pragma unroll
      for (int y = 0; y < kColRowThreads; ++y) total += s_acc[y][tx];
      partial[ch * hidden + j] = total;
    }
    __syncthreads();
  }
}

// c[j] = sum over chunks of partial[chunk, j], in chunk order.
__global__ void __launch_bounds__(kThreads)
    col_finish_kernel(const float* partial, float* c, int64_t hidden, int64_t nchunks) {
  for (int64_t j = global_thread(); j < hidden; j += grid_threads()) {
    float total = 0.0f;
    for (int64_t ch = 0; ch < nchunks; ++ch) total += partial[ch * hidden + j];
    c[j] = total;
  }
}

// fn(r, col) over an nrows x ncols grid; blockDim = (bx, by) with bx covering columns.
template <class Fn>
__global__ void __launch_bounds__(kThreads) grid2d_kernel(int64_t nrows, int64_t ncols, Fn fn) {
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r < nrows;
       r += static_cast<int64_t>(gridDim.y) * blockDim.y)
    for (int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; col < ncols;
         col += static_cast<int64_t>(gridDim.x) * blockDim.x)
      fn(r, col);
}

template <class Fn>
void launch_grid2d(int64_t nrows, int64_t ncols, Fn fn, cudaStream_t stream, const char* op) {
  if (nrows <= 0 || ncols <= 0) return;
  // Narrow matrices put several rows in a block rather than leave most threads idle.
  const int bx = static_cast<int>(std::min<int64_t>(kThreads, ceil_div(ncols, 32) * 32));
  const int by = kThreads / bx;
  const int64_t cap = max_blocks(op);
  const int64_t gx = std::min<int64_t>(ceil_div(ncols, bx), cap);
  const int64_t gy = std::min<int64_t>({ceil_div(nrows, by), std::max<int64_t>(1, cap / gx), 65535});
  grid2d_kernel<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), dim3(bx, by), 0,
                  stream>>>(nrows, ncols, fn);
  check_launch(op, "grid2d_kernel");
}

template <class T>
struct GradHFn {  // grad_h = 2 g_r s (1 - 2h) w2_j
  const T* h;
  const T* g;
  const float* w2;
  T* gh;
  int64_t hidden;
  __device__ void operator()(int64_t r, int64_t j) const {
    const int64_t e = r * hidden + j;
    const float hv = to_f(h[e]);
    const float s = hv * (1.0f - hv);
    const float gr = to_f(g[r]) * 2.0f;
    gh[e] = from_f<T>(gr * s * (1.0f - 2.0f * hv) * w2[j]);
  }
};

template <class T>
struct GradWFn {  // grad_W = W_ji (2 c_j)
  const T* w;
  const float* c;
  T* gw;
  int64_t inputs;
  __device__ void operator()(int64_t j, int64_t i) const {
    const int64_t e = j * inputs + i;
    gw[e] = from_f<T>(to_f(w[e]) * (2.0f * c[j]));
  }
};

// ---------------------------------------------------------------------------------------
// random_words / normal_noise: one thread per counter, grid-stride.
// ---------------------------------------------------------------------------------------

template <bool kNormal, class Out>
__global__ void __launch_bounds__(kThreads)
    draws_kernel(Out* out, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t ncounters = counters_for(n);
  for (int64_t c = global_thread(); c < ncounters; c += grid_threads()) {
    uint32_t w[4];
    philox_words(seed, offset, static_cast<uint64_t>(c), w);
    Out v[4];
    if constexpr (kNormal) {
      box_muller<L>(w[0], w[1], v[0], v[1]);
      box_muller<L>(w[2], w[3], v[2], v[3]);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = w[j];
    }
    const int64_t e0 = first_element(c);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = e0 + kStreamsPerBlock * j;
      if (i < n) out[i] = v[j];
    }
  }
}

}  // namespace

// =======================================================================================
// Entry points.
// =======================================================================================

void corrupt(const void* x, void* y, uint8_t* mask, DType dtype, const CorruptParams& p,
             void* stream) {
  const char* op = "corrupt";
  require_supported(dtype, op);
  if (p.rows <= 0 || p.cols <= 0) return;
  const DeviceGuard guard({x, y}, op);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (p.kind) {
      case CorruptKind::kGaussian:
        return launch_corrupt<T, CorruptKind::kGaussian, false>(x, y, mask, p, s, op);
      case CorruptKind::kUniform:
        return launch_corrupt<T, CorruptKind::kUniform, false>(x, y, mask, p, s, op);
      case CorruptKind::kMasking:
        return launch_corrupt<T, CorruptKind::kMasking, false>(x, y, mask, p, s, op);
      case CorruptKind::kSaltPepper:
        return launch_corrupt<T, CorruptKind::kSaltPepper, false>(x, y, mask, p, s, op);
      case CorruptKind::kMaskingExact:
        return launch_masking_exact<T>(x, y, mask, p, s, op);
    }
    fail(op, "unknown corruption kind " + std::to_string(static_cast<int>(p.kind)));
  });
}

void corrupt_backward(const void* grad_y, void* grad_x, DType dtype, const CorruptParams& p,
                      void* stream) {
  const char* op = "corrupt_backward";
  require_supported(dtype, op);
  if (p.rows <= 0 || p.cols <= 0) return;
  const DeviceGuard guard({grad_y, grad_x}, op);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (p.kind) {
      case CorruptKind::kGaussian:
      case CorruptKind::kUniform:  // d(x + noise)/dx = 1
        if (grad_x != grad_y)
          check(cudaMemcpyAsync(grad_x, grad_y, sizeof(T) * p.rows * p.cols,
                                cudaMemcpyDeviceToDevice, s),
                op, "cudaMemcpyAsync");
        return;
      case CorruptKind::kMasking:
      case CorruptKind::kSaltPepper:  // same keep test; replaced elements get 0
        return launch_corrupt<T, CorruptKind::kMasking, true>(grad_y, grad_x, nullptr, p, s, op);
      case CorruptKind::kMaskingExact:  // forward with zeros as replacement, no mask
        return launch_masking_exact<T>(grad_y, grad_x, nullptr, p, s, op);
    }
    fail(op, "unknown corruption kind " + std::to_string(static_cast<int>(p.kind)));
  });
}

void reparameterize_forward(const void* mu, const void* logvar, void* z, void* kl, int64_t rows,
                            int64_t cols, DType dtype, uint64_t seed, uint64_t offset,
                            void* stream) {
  const char* op = "reparameterize_forward";
  require_supported(dtype, op);
  // cols == 0 with rows > 0 still writes kl (= -0, like the CPU).
  if (rows <= 0 || cols < 0) return;
  const DeviceGuard guard({kl, mu}, op);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t nseg = segments_for(cols);
    const int64_t tasks = rows * nseg;
    Scratch partial(nseg > 1 ? tasks : 0, s, op);
    const int64_t cap = max_blocks(op);
    reparam_forward_kernel<T><<<grid_for(tasks, kWarpsPerBlock, cap), kThreads, 0, s>>>(
        static_cast<const T*>(mu), static_cast<const T*>(logvar), static_cast<T*>(z),
        static_cast<T*>(kl), partial.get(), rows, cols, nseg, seed, offset);
    check_launch(op, "reparam_forward_kernel");
    if (nseg > 1) {
      reparam_kl_finish_kernel<T><<<grid_for(rows, kWarpsPerBlock, cap), kThreads, 0, s>>>(
          partial.get(), static_cast<T*>(kl), rows, nseg);
      check_launch(op, "reparam_kl_finish_kernel");
    }
  });
}

void reparameterize_backward(const void* mu, const void* logvar, const void* grad_z,
                             const void* grad_kl, void* grad_mu, void* grad_logvar, int64_t rows,
                             int64_t cols, DType dtype, uint64_t seed, uint64_t offset,
                             void* stream) {
  const char* op = "reparameterize_backward";
  require_supported(dtype, op);
  if (rows <= 0 || cols <= 0) return;
  const DeviceGuard guard({mu, grad_mu}, op);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t nseg = segments_for(cols);
    reparam_backward_kernel<T>
        <<<grid_for(rows * nseg, kWarpsPerBlock, max_blocks(op)), kThreads, 0, s>>>(
            static_cast<const T*>(mu), static_cast<const T*>(logvar),
            static_cast<const T*>(grad_z), static_cast<const T*>(grad_kl),
            static_cast<T*>(grad_mu), static_cast<T*>(grad_logvar), rows, cols, nseg, seed,
            offset);
    check_launch(op, "reparam_backward_kernel");
  });
}

void contractive_forward(const void* h, const void* w, void* out, int64_t rows, int64_t hidden,
                         int64_t inputs, DType dtype, void* stream) {
  const char* op = "contractive_forward";
  require_supported(dtype, op);
  if (rows <= 0) return;
  const DeviceGuard guard({out, h}, op);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (hidden <= 0) {  // empty sums: out = +0 (all-zero bits in every dtype)
      check(cudaMemsetAsync(out, 0, sizeof(T) * rows, s), op, "cudaMemsetAsync");
      return;
    }
    Scratch w2(hidden, s, op);
    launch_row_sum(hidden, inputs, SquareTerm<T>{static_cast<const T*>(w), inputs},
                   StoreFloat{w2.get()}, s, op);
    launch_row_sum(rows, hidden, PenaltyTerm<T>{static_cast<const T*>(h), w2.get(), hidden},
                   StoreT<T>{static_cast<T*>(out)}, s, op);
  });
}

void contractive_backward(const void* h, const void* w, const void* grad_out, void* grad_h,
                          void* grad_w, int64_t rows, int64_t hidden, int64_t inputs, DType dtype,
                          void* stream) {
  const char* op = "contractive_backward";
  require_supported(dtype, op);
  if (hidden <= 0) return;  // grad_h and grad_w are both empty
  const DeviceGuard guard({w, h, grad_h, grad_w}, op);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ht = static_cast<const T*>(h);
    const T* wt = static_cast<const T*>(w);
    const T* gt = static_cast<const T*>(grad_out);
    const bool want_h = grad_h && rows > 0;
    const bool want_w = grad_w && inputs > 0;
    const int64_t nchunks = ceil_div(std::max<int64_t>(rows, 0), kColChunk);
    // Layout: [w2: hidden][c: hidden][partial: nchunks * hidden], only what is needed.
    const int64_t w2_n = want_h ? hidden : 0;
    const int64_t c_n = want_w ? hidden * (1 + nchunks) : 0;
    Scratch buf(w2_n + c_n, s, op);
    if (want_h) {
      float* w2 = buf.get();
      launch_row_sum(hidden, inputs, SquareTerm<T>{wt, inputs}, StoreFloat{w2}, s, op);
      launch_grid2d(rows, hidden, GradHFn<T>{ht, gt, w2, static_cast<T*>(grad_h), hidden}, s, op);
    }
    if (want_w) {
      float* c = buf.get() + w2_n;
      float* partial = c + hidden;
      if (nchunks > 0) {
        const int64_t gx = ceil_div(hidden, kColTile);
        const int64_t gy = std::min<int64_t>(nchunks, 65535);
        col_partial_kernel<T><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)),
                                dim3(kColTile, kColRowThreads), 0, s>>>(ht, gt, partial, rows,
                                                                        hidden, nchunks);
        check_launch(op, "col_partial_kernel");
      }
      col_finish_kernel<<<grid_for(hidden, kThreads, max_blocks(op)), kThreads, 0, s>>>(
          partial, c, hidden, nchunks);
      check_launch(op, "col_finish_kernel");
      launch_grid2d(hidden, inputs, GradWFn<T>{wt, c, static_cast<T*>(grad_w), inputs}, s, op);
    }
  });
}

void random_words(uint32_t* out, int64_t n, uint64_t seed, uint64_t offset, void* stream) {
  const char* op = "random_words";
  if (n <= 0) return;
  const DeviceGuard guard({out}, op);
  draws_kernel<false><<<grid_for(counters_for(n), kThreads, max_blocks(op)), kThreads, 0,
                        static_cast<cudaStream_t>(stream)>>>(out, n, seed, offset);
  check_launch(op, "draws_kernel");
}

void normal_noise(float* out, int64_t n, uint64_t seed, uint64_t offset, void* stream) {
  const char* op = "normal_noise";
  if (n <= 0) return;
  const DeviceGuard guard({out}, op);
  draws_kernel<true><<<grid_for(counters_for(n), kThreads, max_blocks(op)), kThreads, 0,
                       static_cast<cudaStream_t>(stream)>>>(out, n, seed, offset);
  check_launch(op, "draws_kernel");
}

}  // namespace cuda
}  // namespace aetk
