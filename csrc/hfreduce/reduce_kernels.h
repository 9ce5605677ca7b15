// SIMD reduction kernels: the sum of K input arrays into one output, for float32, float16 and
// bfloat16 (16-bit types accumulate in float32 and round once). Dispatched at run time to
// AVX-512, AVX2+F16C or scalar code; the binary runs on any x86-64.
// Thread-safety: pure functions; callers own the memory and must not let `out` overlap an input
// except exactly (out == ins[j] is allowed: every element is loaded before it is stored).
#pragma once

#include <cstddef>
#include <cstdint>

namespace hfreduce {

enum class DType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

// out[i] = sum_j ins[j][i] for i < count. `streaming` asks for non-temporal stores (for outputs
// that will not be read again soon); it is a hint, honoured on aligned AVX-512/AVX2 paths.
void reduce_sum(DType t, void* out, const void* const* ins, int k, size_t count, bool streaming);

// Like reduce_sum, but writes the same sum to `nout` outputs (the zero-copy path broadcasts the
// result into every local rank's buffer in the same pass).
void reduce_sum_multi(DType t, void* const* outs, int nout, const void* const* ins, int k, size_t count,
                      bool streaming);

// buf[i] *= factor (used for op="avg").
void scale(DType t, void* buf, size_t count, float factor);

// memcpy, with non-temporal stores when `streaming` and the size is large.
void copy_bytes(void* dst, const void* src, size_t bytes, bool streaming);

// Which implementation reduce_sum dispatches to on this CPU: "avx512", "avx2" or "scalar".
// `force` ("", "avx512", "avx2", "scalar") overrides it for tests; returns the active one.
const char* kernel_isa();
void force_kernel_isa(const char* isa);

}  // namespace hfreduce
