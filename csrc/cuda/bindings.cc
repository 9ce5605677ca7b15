// hfreduce._cuda: the Python face of staging.h. Pointers and streams cross as integers (a tensor's
// data_ptr(), a torch stream's cuda_stream), so this module needs neither torch nor a CUDA torch.
// Every blocking call releases the GIL; CUDA failures raise hfreduce._cuda.CudaError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cuda/staging.h"

namespace py = pybind11;
using namespace ffcuda;

namespace {

// A writable, contiguous buffer's address and size (numpy arrays, bytearray, memoryview...).
std::pair<uintptr_t, size_t> host_span(const py::buffer& b, bool writable) {
  py::buffer_info info = b.request(writable);
  size_t bytes = static_cast<size_t>(info.size) * static_cast<size_t>(info.itemsize);
  return {reinterpret_cast<uintptr_t>(info.ptr), bytes};
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "CUDA staging for HFReduce: D2H/H2D on Copy Engines through pinned host memory (no kernels)";
  py::register_exception<CudaError>(m, "CudaError", PyExc_RuntimeError);

  m.def(
      "device_count",
      [] {
        std::string why;
        int n = device_count(&why);
        return py::make_tuple(n, why);
      },
      "(number of visible CUDA devices, why it is 0); never raises");
  m.def("versions", &versions, "(driver version, runtime version), e.g. (13000, 13000); driver 0 = no driver");

  py::class_<HostRegistration>(m, "HostRegistration",
                               "Pins existing host memory [ptr, ptr+bytes) with cudaHostRegister(Portable)")
      .def(py::init([](uintptr_t ptr, size_t bytes) {
             py::gil_scoped_release nogil;  // registering faults in and locks every page: milliseconds
             return std::make_unique<HostRegistration>(ptr, bytes);
           }),
           py::arg("ptr"), py::arg("bytes"))
      .def(
          "release",
          [](HostRegistration& r) {
            py::gil_scoped_release nogil;
            r.release();
          },
          "cudaHostUnregister now (also done on destruction)")
      .def_property_readonly("ptr", &HostRegistration::ptr)
      .def_property_readonly("bytes", &HostRegistration::bytes)
      .def_property_readonly("registered", &HostRegistration::registered);

  py::class_<PinnedBuffer>(m, "PinnedBuffer", py::buffer_protocol(),
                           "Page-locked host memory from cudaHostAlloc(Portable); a uint8 buffer")
      .def(py::init([](size_t bytes) {
             py::gil_scoped_release nogil;
             return std::make_unique<PinnedBuffer>(bytes);
           }),
           py::arg("bytes"))
      .def_property_readonly("ptr", &PinnedBuffer::ptr)
      .def_property_readonly("bytes", &PinnedBuffer::bytes)
      .def_buffer([](PinnedBuffer& b) {
        return py::buffer_info(reinterpret_cast<void*>(b.ptr()), 1, py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(b.bytes())}, {1});
      });

  py::class_<DeviceBuffer>(m, "DeviceBuffer", "Device memory from cudaMalloc, for tests without a CUDA torch")
      .def(py::init<int, size_t>(), py::arg("device"), py::arg("bytes"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("bytes", &DeviceBuffer::bytes)
      .def_property_readonly("device", &DeviceBuffer::device)
      .def(
          "upload",
          [](DeviceBuffer& d, const py::buffer& src) {
            auto [p, n] = host_span(src, false);
            py::gil_scoped_release nogil;
            d.upload(p, n);
          },
          py::arg("src"), "Synchronous copy of a host buffer to the start of this device buffer")
      .def(
          "download",
          [](const DeviceBuffer& d, const py::buffer& dst) {
            auto [p, n] = host_span(dst, true);
            py::gil_scoped_release nogil;
            d.download(p, n);
          },
          py::arg("dst"), "Synchronous copy of the start of this device buffer into a writable host buffer");

  py::class_<Transfer>(m, "Transfer", "One bucket in flight: D2H chunks queued; reduce, H2D, finish")
      .def_property_readonly("num_chunks", &Transfer::num_chunks)
      .def_property_readonly("nbytes", &Transfer::nbytes)
      .def("chunk", &Transfer::chunk, py::arg("i"), "(byte offset, byte length) of chunk i")
      .def("d2h_ready", &Transfer::d2h_ready, py::arg("i"))
      .def("wait_d2h", &Transfer::wait_d2h, py::arg("i"), py::arg("timeout_s") = -1.0,
           py::call_guard<py::gil_scoped_release>(),
           "Block until chunk i is in host memory; False if timeout_s passed first (< 0: no timeout)")
      .def("start_h2d", &Transfer::start_h2d, py::arg("i"), py::call_guard<py::gil_scoped_release>(),
           "Queue the host-to-device copy of chunk i on the H2D stream")
      .def("finish", &Transfer::finish, py::call_guard<py::gil_scoped_release>(),
           "Record the event that marks every queued H2D copy complete")
      .def("wait_on_stream", &Transfer::wait_on_stream, py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
           "Make the CUDA stream (an integer handle, 0 = default) wait for finish()'s event")
      .def("synchronize", &Transfer::synchronize, py::arg("timeout_s") = -1.0,
           py::call_guard<py::gil_scoped_release>(), "Block the host until finish()'s event completed");

  py::class_<Stager>(m, "Stager", "The two non-blocking side streams (D2H, H2D) of one device")
      .def(py::init([](int device) {
             py::gil_scoped_release nogil;
             return std::make_unique<Stager>(device);
           }),
           py::arg("device"))
      .def_property_readonly("device", &Stager::device)
      .def_property_readonly("d2h_stream", &Stager::d2h_stream)
      .def_property_readonly("h2d_stream", &Stager::h2d_stream)
      .def("begin", &Stager::begin, py::arg("dev"), py::arg("host"), py::arg("nbytes"), py::arg("chunk_bytes"),
           py::arg("caller_stream") = 0, py::call_guard<py::gil_scoped_release>(),
           "Queue the chunked D2H of nbytes from device address dev to pinned host address host, after the "
           "work already queued on caller_stream; returns the Transfer");
}
