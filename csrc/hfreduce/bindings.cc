// pybind11 module hfreduce._C: the only file of the core that knows about Python.
#include <pybind11/pybind11.h>

#include "hfreduce/cpu_features.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "HFReduce C++ core";
  m.def("cpu_features", [] {
    const auto& f = hfreduce::cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["f16c"] = f.f16c;
    d["fma"] = f.fma;
    d["avx512f"] = f.avx512f;
    d["avx512bw"] = f.avx512bw;
    d["avx512vl"] = f.avx512vl;
    d["avx512bf16"] = f.avx512bf16;
    return d;
  }, "SIMD features of the running CPU, as used for kernel dispatch.");
}
