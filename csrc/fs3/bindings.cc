// fs3._native: the C++ pieces of fs3's data path, bound with pybind11.
#include <pybind11/pybind11.h>

#include "fs3/crc32c.h"

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
  m.doc() = "fs3 native helpers: CRC32C over any buffer without copying it";
  m.def(
      "crc32c",
      [](py::buffer data, uint32_t value) {
        py::buffer_info info = data.request();
        if (!PyBuffer_IsContiguous(info.view(), 'C'))
          throw py::value_error("crc32c needs a contiguous buffer");
        const size_t len = static_cast<size_t>(info.size) * static_cast<size_t>(info.itemsize);
        py::gil_scoped_release nogil;
        return fs3::crc32c_extend(value, info.ptr, len);
      },
      py::arg("data"), py::arg("value") = 0,
      "CRC32C of `data` (any contiguous buffer) continuing from `value`; releases the GIL.");
  m.def("crc32c_hardware", &fs3::crc32c_hardware, "True when the SSE4.2 instruction path is used.");
}
