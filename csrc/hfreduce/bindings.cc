// pybind11 module hfreduce._C: the only file of the core that knows about Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "hfreduce/communicator.h"
#include "hfreduce/cpu_features.h"
#include "hfreduce/inter_node.h"
#include "hfreduce/reduce_kernels.h"

namespace py = pybind11;
using namespace hfreduce;

namespace {

const char* error_class(ErrorKind k) {
  switch (k) {
    case ErrorKind::kMismatch: return "MismatchError";
    case ErrorKind::kTimeout: return "CollectiveTimeoutError";
    case ErrorKind::kPeerLost: return "PeerLostError";
    case ErrorKind::kAborted: return "HFReduceError";
    default: return "HFReduceError";
  }
}

[[noreturn]] void raise_py(ErrorKind k, const std::string& msg) {
  py::object cls = py::module_::import("hfreduce.errors").attr(error_class(k));
  PyErr_SetObject(cls.ptr(), py::str(msg).ptr());
  throw py::error_already_set();
}

Config config_from_dict(const py::dict& d) {
  Config c;
  c.rank = d["rank"].cast<int>();
  c.world_size = d["world_size"].cast<int>();
  c.local_rank = d["local_rank"].cast<int>();
  c.local_size = d["local_size"].cast<int>();
  c.node = d["node"].cast<int>();
  c.num_nodes = d["num_nodes"].cast<int>();
  c.local_ranks = d["local_ranks"].cast<std::vector<int>>();
  c.node_leaders = d["node_leaders"].cast<std::vector<int>>();
  c.shm_name = d["shm_name"].cast<std::string>();
  c.job_id = d["job_id"].cast<uint64_t>();
  c.chunk_bytes = d["chunk_bytes"].cast<size_t>();
  c.depth = d["depth"].cast<int>();
  c.heap_bytes = d["heap_bytes"].cast<size_t>();
  c.timeout_s = d["timeout_s"].cast<double>();
  std::string algo = d["algo"].cast<std::string>();
  if (algo == "tree") c.algo = InterAlgo::kDoubleTree;
  else if (algo == "ring") c.algo = InterAlgo::kRing;
  else raise_py(ErrorKind::kUsage, "HFREDUCE_ALGO must be 'tree' or 'ring', not '" + algo + "'");
  c.streaming_threshold_bytes = d["streaming_threshold_bytes"].cast<size_t>();
  c.debug = d.contains("debug") && d["debug"].cast<bool>();
  return c;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "HFReduce C++ core";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object cls = py::module_::import("hfreduce.errors").attr(error_class(e.kind()));
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

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
  m.def("kernel_isa", [] { return std::string(kernel_isa()); }, "The ISA the reduction kernels dispatch to.");
  m.def("force_kernel_isa", [](const std::string& isa) {
    force_kernel_isa(isa.c_str());
    return std::string(kernel_isa());
  }, "Force 'avx512', 'avx2' or 'scalar' kernels (tests); returns the active ISA.");
  m.def("reduce_sum", [](int dtype, uintptr_t out, std::vector<uintptr_t> ins, size_t count, bool streaming) {
    std::vector<const void*> p;
    for (auto a : ins) p.push_back(reinterpret_cast<const void*>(a));
    py::gil_scoped_release nogil;
    reduce_sum(static_cast<DType>(dtype), reinterpret_cast<void*>(out), p.data(), static_cast<int>(p.size()), count, streaming);
  }, "Kernel entry for tests and the benchmark: out = sum(ins) over raw addresses.");
  m.def("copy_bytes", [](uintptr_t dst, uintptr_t src, size_t n, bool streaming) {
    py::gil_scoped_release nogil;
    copy_bytes(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n, streaming);
  });
  m.def("dtree", [](int n, int node, int tree) {
    TreeLinks t = dtree(n, node, tree);
    return py::make_tuple(t.parent, t.kids[0], t.kids[1]);
  }, "(parent, child0, child1) of `node` in tree 0/1 of the double binary tree over n nodes (-1 = none).");

  py::class_<WorkState, std::shared_ptr<WorkState>>(m, "WorkState")
      .def("wait", [](WorkState& w, double timeout_s) {
        py::gil_scoped_release nogil;
        return w.wait(timeout_s);
      }, py::arg("timeout_s") = -1.0)
      .def("done", &WorkState::done)
      .def("raise_if_failed", [](WorkState& w) {
        if (w.done() && w.failed()) raise_py(w.error_kind(), w.error_message());
      });

  py::class_<Communicator, std::shared_ptr<Communicator>>(m, "Communicator")
      .def(py::init([](const py::dict& d) {
        Config c = config_from_dict(d);
        py::gil_scoped_release nogil;
        return std::make_shared<Communicator>(c);
      }))
      .def("port", &Communicator::port)
      .def("connect", [](Communicator& c, const std::vector<std::tuple<std::string, int, int>>& leaders) {
        std::vector<Endpoint> eps;
        for (auto& [h, p, r] : leaders) eps.push_back(Endpoint{h, p, r});
        py::gil_scoped_release nogil;
        c.connect(eps);
      })
      .def("unlink_shm", &Communicator::unlink_shm)
      .def("submit", [](Communicator& c, int kind, int op, int root, int dtype, uintptr_t ptr, size_t count,
                        const std::string& part_of, const std::string& elem_dtype, int part_root) {
        return c.submit(static_cast<CollKind>(kind), static_cast<ReduceOp>(op), root, static_cast<DType>(dtype),
                        reinterpret_cast<void*>(ptr), count, part_of, elem_dtype, part_root);
      }, py::arg("kind"), py::arg("op"), py::arg("root"), py::arg("dtype"), py::arg("ptr"), py::arg("count"),
         py::arg("part_of") = "", py::arg("elem_dtype") = "", py::arg("part_root") = -1)
      .def("shutdown", [](Communicator& c) {
        py::gil_scoped_release nogil;
        c.shutdown();
      })
      .def("failure", &Communicator::failure)
      .def("heap_array", [](std::shared_ptr<Communicator> c, size_t nbytes) {
        // A uint8 numpy array inside this rank's heap of the node segment; freed when the last view dies.
        uint64_t off = c->shm().heap_alloc(nbytes);
        char* p = c->shm().heap(c->config().local_rank) + off;
        auto* holder = new std::pair<std::shared_ptr<Communicator>, uint64_t>(c, off);
        py::capsule owner(holder, [](void* h) {
          auto* pr = static_cast<std::pair<std::shared_ptr<Communicator>, uint64_t>*>(h);
          pr->first->shm().heap_free(pr->second);
          delete pr;
        });
        return py::array(py::dtype("uint8"), {static_cast<py::ssize_t>(nbytes)}, {1}, p, owner);
      })
      .def("heap_range", [](Communicator& c) {
        return py::make_tuple(reinterpret_cast<uintptr_t>(c.shm().heap(c.config().local_rank)), c.shm().heap_bytes());
      });
}
