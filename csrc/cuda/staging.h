// CUDA staging for HFReduce: gradient buckets move GPU -> pinned host -> GPU on the Copy Engines only.
//
// No kernel of ours ever runs: every byte moves with cudaMemcpyAsync on two non-blocking side streams
// (one per direction, so the D2H of bucket k+1 and the H2D of bucket k use different copy engines), so
// the SMs stay with the backward pass (Fire-Flyer §IV-D2). The host side (the CPU reduce) waits for one
// chunk at a time, so reducing chunk i overlaps copying chunk i+1.
//
// This header is the C++ contract and needs only the CUDA runtime; the pybind11 module is bindings.cc.
// Every failure throws CudaError, whose what() carries the CUDA error name and string.
#pragma once

#include <cuda_runtime_api.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffcuda {

class CudaError : public std::runtime_error {
 public:
  explicit CudaError(const std::string& msg) : std::runtime_error(msg) {}
};

// Throws CudaError "<what>: cudaErrorX (text)" unless `rc` is cudaSuccess.
void check(cudaError_t rc, const std::string& what);

// Number of visible CUDA devices; 0 (and `why` filled in) when there is no driver or no device.
int device_count(std::string* why);

// Driver and runtime versions, e.g. {13000, 13000}; {0, x} without a driver.
std::pair<int, int> versions();

// Pins [ptr, ptr + bytes) of existing host memory (e.g. HFReduce's shared segment) for DMA with
// cudaHostRegister(Portable): every device and context may copy to/from it asynchronously. The range
// should be page-aligned and must not overlap another registration. Unregisters on release() or
// destruction. Not thread-safe; one owner.
class HostRegistration {
 public:
  HostRegistration(uintptr_t ptr, size_t bytes);
  ~HostRegistration();
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;
  void release();
  uintptr_t ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  bool registered() const { return ptr_ != 0; }

 private:
  uintptr_t ptr_;
  size_t bytes_;
};

// Page-locked host memory of our own (cudaHostAlloc, Portable): the fallback when the shared segment
// cannot be registered. Freed on destruction.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// Device memory of our own (cudaMalloc), for tests and benchmarks that run without a CUDA torch.
class DeviceBuffer {
 public:
  DeviceBuffer(int device, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(ptr_); }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  // Synchronous copies between this buffer and host memory at `host` (any host memory).
  void upload(uintptr_t host, size_t bytes);
  void download(uintptr_t host, size_t bytes) const;

 private:
  int device_;
  void* ptr_ = nullptr;
  size_t bytes_;
};

struct TransferState;  // shared with the stream callbacks; defined in staging.cu
struct Streams;        // a device's two side streams, shared by a Stager and its Transfers

// One bucket in flight: its D2H chunks are queued at construction (by Stager::begin); the host side
// waits for each chunk, reduces it, queues its H2D with start_h2d(i), and finally finish() records the
// event the caller's stream waits on. Methods are called from one host thread at a time; wait_d2h and
// synchronize block (call them without the GIL).
class Transfer {
 public:
  Transfer(std::shared_ptr<TransferState> st) : st_(std::move(st)) {}
  size_t num_chunks() const;
  size_t nbytes() const;
  // Byte offset and length of chunk i.
  std::pair<size_t, size_t> chunk(size_t i) const;
  // Blocks until chunk i is in host memory; false if `timeout_s` (< 0: forever) passed first.
  // Throws CudaError if a copy on the stream failed.
  bool wait_d2h(size_t i, double timeout_s);
  // Whether chunk i is in host memory (never blocks).
  bool d2h_ready(size_t i) const;
  // Queues the host->device copy of chunk i (its reduced result) on the H2D stream.
  void start_h2d(size_t i);
  // Records the "result is back on the GPU" event after every queued H2D. Call once.
  void finish();
  // Makes `stream` (a cudaStream_t as an integer; 0 = legacy default) wait for finish()'s event.
  void wait_on_stream(uintptr_t stream);
  // Blocks the host until finish()'s event has completed; false on timeout.
  bool synchronize(double timeout_s);

 private:
  std::shared_ptr<TransferState> st_;
};

// The side streams and event pool of one device. Thread-safe: begin() may be called from any thread.
class Stager {
 public:
  explicit Stager(int device);
  ~Stager();
  Stager(const Stager&) = delete;
  Stager& operator=(const Stager&) = delete;
  int device() const { return device_; }
  uintptr_t d2h_stream() const;
  uintptr_t h2d_stream() const;
  // Starts staging `nbytes` from device memory `dev` to pinned host memory `host`: the D2H stream waits
  // for the work queued so far on `caller_stream`, then copies `chunk_bytes` at a time, marking each
  // chunk ready from a host callback. `host` must be registered or pinned, `dev` on this device.
  Transfer begin(uintptr_t dev, uintptr_t host, size_t nbytes, size_t chunk_bytes, uintptr_t caller_stream);

 private:
  int device_;
  std::shared_ptr<Streams> streams_;
  std::mutex mu_;  // serialises begin(): chunks of two buckets never interleave on the D2H stream
};

}  // namespace ffcuda
