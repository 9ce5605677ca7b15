// CRC32C with the SSE4.2 crc32 instruction on three interleaved streams, merged with
// zero-shift operators (Mark Adler's method, crc32c.c on stackoverflow 17645167), and a
// slicing-by-8 table fallback for CPUs without SSE4.2.
#include "fs3/crc32c.h"

#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace fs3 {
namespace {

constexpr uint32_t kPoly = 0x82f63b78;  // reflected Castagnoli polynomial
constexpr size_t kLong = 8192;          // bytes per stream in the long interleave
constexpr size_t kShort = 256;          // bytes per stream in the short interleave

struct Tables {
  uint32_t slice[8][256];       // slicing-by-8, software path
  uint32_t shift_long[4][256];  // apply kLong zero bytes to a crc
  uint32_t shift_short[4][256]; // apply kShort zero bytes to a crc
  bool hw = false;
};

uint32_t gf2_times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  while (vec) {
    if (vec & 1) sum ^= *mat;
    vec >>= 1;
    ++mat;
  }
  return sum;
}

void gf2_square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_times(mat, mat[n]);
}

// Operator (32x32 GF(2) matrix) that appends `len` zero bytes; `len` a power of two.
void zeros_op(uint32_t* even, size_t len) {
  uint32_t odd[32];
  odd[0] = kPoly;
  uint32_t row = 1;
  for (int n = 1; n < 32; ++n) {
    odd[n] = row;
    row <<= 1;
  }
  gf2_square(even, odd);  // 2 zero bits
  gf2_square(odd, even);  // 4 zero bits
  do {
    gf2_square(even, odd);
    len >>= 1;
    if (len == 0) return;
    gf2_square(odd, even);
    len >>= 1;
  } while (len);
  std::memcpy(even, odd, sizeof(odd));
}

void shift_table(uint32_t table[4][256], size_t len) {
  uint32_t op[32];
  zeros_op(op, len);
  for (uint32_t n = 0; n < 256; ++n) {
    table[0][n] = gf2_times(op, n);
    table[1][n] = gf2_times(op, n << 8);
    table[2][n] = gf2_times(op, n << 16);
    table[3][n] = gf2_times(op, n << 24);
  }
}

inline uint32_t shift(const uint32_t table[4][256], uint32_t crc) {
  return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
         table[3][crc >> 24];
}

const Tables& tables() {
  static Tables* t = [] {
    auto* tb = new Tables();
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ kPoly : c >> 1;
      tb->slice[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = tb->slice[0][n];
      for (int k = 1; k < 8; ++k) {
        c = tb->slice[0][c & 0xff] ^ (c >> 8);
        tb->slice[k][n] = c;
      }
    }
    shift_table(tb->shift_long, kLong);
    shift_table(tb->shift_short, kShort);
#if defined(__x86_64__)
    __builtin_cpu_init();
    tb->hw = __builtin_cpu_supports("sse4.2");
#endif
    return tb;
  }();
  return *t;
}

// Inverted-crc in, inverted-crc out.
uint32_t sw_update(const Tables& t, uint32_t crc, const unsigned char* p, size_t len) {
  while (len && (reinterpret_cast<uintptr_t>(p) & 7)) {
    crc = t.slice[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    --len;
  }
  while (len >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    w ^= crc;
    crc = t.slice[7][w & 0xff] ^ t.slice[6][(w >> 8) & 0xff] ^ t.slice[5][(w >> 16) & 0xff] ^
          t.slice[4][(w >> 24) & 0xff] ^ t.slice[3][(w >> 32) & 0xff] ^ t.slice[2][(w >> 40) & 0xff] ^
          t.slice[1][(w >> 48) & 0xff] ^ t.slice[0][w >> 56];
    p += 8;
    len -= 8;
  }
  while (len--) crc = t.slice[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t hw_update(const Tables& t, uint32_t crc,
                                                     const unsigned char* p, size_t len) {
  uint64_t c0 = crc;
  while (len && (reinterpret_cast<uintptr_t>(p) & 7)) {
    c0 = _mm_crc32_u8(static_cast<uint32_t>(c0), *p++);
    --len;
  }
  for (size_t block : {kLong, kShort}) {
    const auto& table = block == kLong ? t.shift_long : t.shift_short;
    while (len >= 3 * block) {
      uint64_t c1 = 0, c2 = 0;
      const unsigned char* end = p + block;
      do {
        uint64_t w0, w1, w2;
        std::memcpy(&w0, p, 8);
        std::memcpy(&w1, p + block, 8);
        std::memcpy(&w2, p + 2 * block, 8);
        c0 = _mm_crc32_u64(c0, w0);
        c1 = _mm_crc32_u64(c1, w1);
        c2 = _mm_crc32_u64(c2, w2);
        p += 8;
      } while (p < end);
      c0 = shift(table, static_cast<uint32_t>(c0)) ^ c1;
      c0 = shift(table, static_cast<uint32_t>(c0)) ^ c2;
      p += 2 * block;
      len -= 3 * block;
    }
  }
  while (len >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c0 = _mm_crc32_u64(c0, w);
    p += 8;
    len -= 8;
  }
  while (len--) c0 = _mm_crc32_u8(static_cast<uint32_t>(c0), *p++);
  return static_cast<uint32_t>(c0);
}
#endif

}  // namespace

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t len) {
  const Tables& t = tables();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (t.hw) return ~hw_update(t, c, p, len);
#endif
  return ~sw_update(t, c, p, len);
}

bool crc32c_hardware() { return tables().hw; }

}  // namespace fs3
