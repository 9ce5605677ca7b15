#include "hfreduce/reduce_kernels.h"

#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "hfreduce/cpu_features.h"

namespace hfreduce {

size_t dtype_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "?";
}

namespace {

// ---------------------------------------------------------------- scalar conversions
inline float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { e++; man <<= 1; } while ((man & 0x400) == 0);
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_half(float f) {  // round to nearest even
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
  if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  // overflow to inf (after rounding)
  if (absx < 0x38800000) {  // subnormal or zero in half
    if (absx < 0x33000000) return (uint16_t)sign;
    uint32_t e = absx >> 23;
    uint32_t m = (absx & 0x7fffff) | 0x800000;
    int shift = 126 - (int)e;  // value = m * 2^(e-150); in units of 2^-24 that is m >> (126 - e)
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    uint32_t half_m = m >> shift;
    if (rem > halfway || (rem == halfway && (half_m & 1))) half_m++;
    return (uint16_t)(sign | half_m);
  }
  uint32_t e = (absx >> 23) - 127 + 15;
  uint32_t m = absx & 0x7fffff;
  uint32_t h = (e << 10) | (m >> 13);
  uint32_t rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

inline float bf16_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

template <DType T>
inline float ld_scalar(const void* p, size_t i) {
  if constexpr (T == DType::kFloat32) return static_cast<const float*>(p)[i];
  else if constexpr (T == DType::kFloat16) return half_to_float(static_cast<const uint16_t*>(p)[i]);
  else return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
}

template <DType T>
inline void st_scalar(void* p, size_t i, float v) {
  if constexpr (T == DType::kFloat32) static_cast<float*>(p)[i] = v;
  else if constexpr (T == DType::kFloat16) static_cast<uint16_t*>(p)[i] = float_to_half(v);
  else static_cast<uint16_t*>(p)[i] = float_to_bf16(v);
}

template <DType T>
void reduce_scalar(void* const* outs, int nout, const void* const* ins, int k, size_t begin, size_t count) {
  for (size_t i = begin; i < count; ++i) {
    float acc = ld_scalar<T>(ins[0], i);
    for (int j = 1; j < k; ++j) acc += ld_scalar<T>(ins[j], i);
    for (int o = 0; o < nout; ++o) st_scalar<T>(outs[o], i, acc);
  }
}

// ---------------------------------------------------------------- AVX2 + F16C
#define HF_AVX2 __attribute__((target("avx2,fma,f16c")))

template <DType T>
HF_AVX2 inline __m256 ld256(const void* p, size_t i) {
  if constexpr (T == DType::kFloat32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (T == DType::kFloat16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

HF_AVX2 inline __m128i f32_to_bf16_256(__m256 v) {
  __m256i x = _mm256_castps_si256(v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  __m256 unord = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  r = _mm256_blendv_epi8(r, qnan, _mm256_castps_si256(unord));
  __m256i packed = _mm256_packus_epi32(r, r);  // per 128-bit lane
  packed = _mm256_permute4x64_epi64(packed, 0x08);
  return _mm256_castsi256_si128(packed);
}

template <DType T>
HF_AVX2 inline void st256(void* p, size_t i, __m256 v, bool nt) {
  if constexpr (T == DType::kFloat32) {
    float* q = static_cast<float*>(p) + i;
    if (nt) _mm256_stream_ps(q, v); else _mm256_storeu_ps(q, v);
  } else {
    __m128i h;
    if constexpr (T == DType::kFloat16) h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    else h = f32_to_bf16_256(v);
    __m128i* q = reinterpret_cast<__m128i*>(static_cast<uint16_t*>(p) + i);
    if (nt) _mm_stream_si128(q, h); else _mm_storeu_si128(q, h);
  }
}

template <DType T>
HF_AVX2 void reduce_avx2(void* const* outs, int nout, const void* const* ins, int k, size_t count, bool nt) {
  size_t i = 0;
  const size_t step = 32;
  for (; i + step <= count; i += step) {
    __m256 a0 = ld256<T>(ins[0], i), a1 = ld256<T>(ins[0], i + 8);
    __m256 a2 = ld256<T>(ins[0], i + 16), a3 = ld256<T>(ins[0], i + 24);
    for (int j = 1; j < k; ++j) {
      a0 = _mm256_add_ps(a0, ld256<T>(ins[j], i));
      a1 = _mm256_add_ps(a1, ld256<T>(ins[j], i + 8));
      a2 = _mm256_add_ps(a2, ld256<T>(ins[j], i + 16));
      a3 = _mm256_add_ps(a3, ld256<T>(ins[j], i + 24));
    }
    for (int o = 0; o < nout; ++o) {
      st256<T>(outs[o], i, a0, nt);
      st256<T>(outs[o], i + 8, a1, nt);
      st256<T>(outs[o], i + 16, a2, nt);
      st256<T>(outs[o], i + 24, a3, nt);
    }
  }
  for (; i + 8 <= count; i += 8) {
    __m256 a = ld256<T>(ins[0], i);
    for (int j = 1; j < k; ++j) a = _mm256_add_ps(a, ld256<T>(ins[j], i));
    for (int o = 0; o < nout; ++o) st256<T>(outs[o], i, a, nt);
  }
  if (nt) _mm_sfence();
  reduce_scalar<T>(outs, nout, ins, k, i, count);
}

// ---------------------------------------------------------------- AVX-512
#define HF_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

template <DType T>
HF_AVX512 inline __m512 ld512(const void* p, size_t i, __mmask16 m) {
  if constexpr (T == DType::kFloat32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
  } else {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i);
    if constexpr (T == DType::kFloat16) return _mm512_cvtph_ps(h);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <DType T>
HF_AVX512 inline __m512 ld512(const void* p, size_t i) {
  if constexpr (T == DType::kFloat32) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
    if constexpr (T == DType::kFloat16) return _mm512_cvtph_ps(h);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

HF_AVX512 inline __m256i f32_to_bf16_512(__m512 v) {
  __m512i x = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __mmask16 unord = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_or_epi32(r, unord, _mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(r);
}

template <DType T>
HF_AVX512 inline __m256i to16(__m512 v) {
  if constexpr (T == DType::kFloat16) return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  else return f32_to_bf16_512(v);
}

template <DType T>
HF_AVX512 inline void st512(void* p, size_t i, __m512 v, bool nt) {
  if constexpr (T == DType::kFloat32) {
    float* q = static_cast<float*>(p) + i;
    if (nt) _mm512_stream_ps(q, v); else _mm512_storeu_ps(q, v);
  } else {
    __m256i h = to16<T>(v);
    __m256i* q = reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i);
    if (nt) _mm256_stream_si256(q, h); else _mm256_storeu_si256(q, h);
  }
}

template <DType T>
HF_AVX512 inline void st512_mask(void* p, size_t i, __m512 v, __mmask16 m) {
  if constexpr (T == DType::kFloat32) _mm512_mask_storeu_ps(static_cast<float*>(p) + i, m, v);
  else _mm256_mask_storeu_epi16(static_cast<uint16_t*>(p) + i, m, to16<T>(v));
}

template <DType T>
HF_AVX512 void reduce_avx512(void* const* outs, int nout, const void* const* ins, int k, size_t count, bool nt) {
  size_t i = 0;
  const size_t step = 64;
  if (k == 2) {  // the common case (2 local ranks, or tree child + own partial): no inner loop
    const void* x = ins[0];
    const void* y = ins[1];
    for (; i + step <= count; i += step) {
      __m512 a0 = _mm512_add_ps(ld512<T>(x, i), ld512<T>(y, i));
      __m512 a1 = _mm512_add_ps(ld512<T>(x, i + 16), ld512<T>(y, i + 16));
      __m512 a2 = _mm512_add_ps(ld512<T>(x, i + 32), ld512<T>(y, i + 32));
      __m512 a3 = _mm512_add_ps(ld512<T>(x, i + 48), ld512<T>(y, i + 48));
      for (int o = 0; o < nout; ++o) {
        st512<T>(outs[o], i, a0, nt);
        st512<T>(outs[o], i + 16, a1, nt);
        st512<T>(outs[o], i + 32, a2, nt);
        st512<T>(outs[o], i + 48, a3, nt);
      }
    }
  } else {
    for (; i + step <= count; i += step) {
      __m512 a0 = ld512<T>(ins[0], i), a1 = ld512<T>(ins[0], i + 16);
      __m512 a2 = ld512<T>(ins[0], i + 32), a3 = ld512<T>(ins[0], i + 48);
      for (int j = 1; j < k; ++j) {
        a0 = _mm512_add_ps(a0, ld512<T>(ins[j], i));
        a1 = _mm512_add_ps(a1, ld512<T>(ins[j], i + 16));
        a2 = _mm512_add_ps(a2, ld512<T>(ins[j], i + 32));
        a3 = _mm512_add_ps(a3, ld512<T>(ins[j], i + 48));
      }
      for (int o = 0; o < nout; ++o) {
        st512<T>(outs[o], i, a0, nt);
        st512<T>(outs[o], i + 16, a1, nt);
        st512<T>(outs[o], i + 32, a2, nt);
        st512<T>(outs[o], i + 48, a3, nt);
      }
    }
  }
  if (nt) _mm_sfence();
  while (i < count) {  // masked tail, up to 63 elements
    size_t n = count - i < 16 ? count - i : 16;
    __mmask16 m = (__mmask16)((1u << n) - 1);
    __m512 a = ld512<T>(ins[0], i, m);
    for (int j = 1; j < k; ++j) a = _mm512_add_ps(a, ld512<T>(ins[j], i, m));
    for (int o = 0; o < nout; ++o) st512_mask<T>(outs[o], i, a, m);
    i += n;
  }
}

HF_AVX512 void copy_stream_avx512(void* dst, const void* src, size_t bytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  size_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
    __m512i a = _mm512_loadu_si512(s + i), b = _mm512_loadu_si512(s + i + 64);
    __m512i c = _mm512_loadu_si512(s + i + 128), e = _mm512_loadu_si512(s + i + 192);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i), a);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 64), b);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 128), c);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i + 192), e);
  }
  _mm_sfence();
  if (i < bytes) std::memcpy(d + i, s + i, bytes - i);
}

enum class Isa { kScalar, kAvx2, kAvx512 };

Isa detect_isa() {
  const auto& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl) return Isa::kAvx512;
  if (f.avx2 && f.f16c && f.fma) return Isa::kAvx2;
  return Isa::kScalar;
}

std::atomic<int> g_isa{-1};

Isa active_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(detect_isa());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

template <DType T>
void reduce_dispatch(void* const* outs, int nout, const void* const* ins, int k, size_t count, bool nt) {
  // Non-temporal stores need aligned outputs: 64 bytes for AVX-512 f32, 32/16 for the 16-bit paths.
  Isa isa = active_isa();
  if (nt) {
    for (int o = 0; o < nout; ++o) nt = nt && (reinterpret_cast<uintptr_t>(outs[o]) % 64 == 0);
  }
  switch (isa) {
    case Isa::kAvx512: reduce_avx512<T>(outs, nout, ins, k, count, nt); break;
    case Isa::kAvx2: reduce_avx2<T>(outs, nout, ins, k, count, nt); break;
    default: reduce_scalar<T>(outs, nout, ins, k, 0, count); break;
  }
}

}  // namespace

void reduce_sum_multi(DType t, void* const* outs, int nout, const void* const* ins, int k, size_t count,
                      bool streaming) {
  if (count == 0 || nout == 0) return;
  switch (t) {
    case DType::kFloat32: reduce_dispatch<DType::kFloat32>(outs, nout, ins, k, count, streaming); break;
    case DType::kFloat16: reduce_dispatch<DType::kFloat16>(outs, nout, ins, k, count, streaming); break;
    case DType::kBFloat16: reduce_dispatch<DType::kBFloat16>(outs, nout, ins, k, count, streaming); break;
  }
}

void reduce_sum(DType t, void* out, const void* const* ins, int k, size_t count, bool streaming) {
  void* outs[1] = {out};
  reduce_sum_multi(t, outs, 1, ins, k, count, streaming);
}

void scale(DType t, void* buf, size_t count, float factor) {
  for (size_t i = 0; i < count; ++i) {
    switch (t) {
      case DType::kFloat32: static_cast<float*>(buf)[i] *= factor; break;
      case DType::kFloat16: st_scalar<DType::kFloat16>(buf, i, ld_scalar<DType::kFloat16>(buf, i) * factor); break;
      case DType::kBFloat16: st_scalar<DType::kBFloat16>(buf, i, ld_scalar<DType::kBFloat16>(buf, i) * factor); break;
    }
  }
}

void copy_bytes(void* dst, const void* src, size_t bytes, bool streaming) {
  if (streaming && bytes >= 4096 && active_isa() == Isa::kAvx512 && reinterpret_cast<uintptr_t>(dst) % 64 == 0) {
    copy_stream_avx512(dst, src, bytes);
  } else {
    std::memcpy(dst, src, bytes);
  }
}

const char* kernel_isa() {
  switch (active_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

void force_kernel_isa(const char* isa) {
  std::string s = isa ? isa : "";
  Isa want = detect_isa();
  if (s == "scalar") want = Isa::kScalar;
  else if (s == "avx2" && detect_isa() != Isa::kScalar) want = Isa::kAvx2;
  else if (s == "avx512" && detect_isa() == Isa::kAvx512) want = Isa::kAvx512;
  g_isa.store(static_cast<int>(want), std::memory_order_relaxed);
}

}  // namespace hfreduce
