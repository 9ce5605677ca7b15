// CRC32C (Castagnoli), the checksum of every fs3 chunk.
// Thread-safe; the tables are built once, on first use.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fs3 {

// CRC32C of `data[0:len]` continuing from `crc` (0 to start), in the convention of
// google-crc32c / iSCSI: crc32c("123456789") == 0xE3069283.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t len);

// Whether the SSE4.2 CRC32 instruction path is in use (false: portable tables).
bool crc32c_hardware();

}  // namespace fs3
