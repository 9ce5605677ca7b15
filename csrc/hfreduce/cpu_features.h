// CPU feature detection for run-time SIMD dispatch.
// Thread-safe: the result is computed once and is immutable afterwards.
#pragma once

namespace hfreduce {

struct CpuFeatures {
  bool avx2 = false;
  bool f16c = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512bf16 = false;
};

// What the running CPU supports (not what the compiler was told to target).
const CpuFeatures& cpu_features();

}  // namespace hfreduce
