// Implementation of staging.h with the CUDA runtime API only: cudaMemcpyAsync, events and host
// callbacks. There is deliberately no kernel (device function) in this file.
#include "cuda/staging.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

namespace ffcuda {

namespace {

using Clock = std::chrono::steady_clock;

std::string describe(cudaError_t rc) {
  return std::string(cudaGetErrorName(rc)) + " (" + cudaGetErrorString(rc) + ")";
}

// Makes `device` current for the scope and restores the caller's device after it, so that a process
// sharing the runtime with us (PyTorch) sees its own current device unchanged.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
  }
  ~DeviceGuard() {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != prev_) cudaSetDevice(prev_);
  }

 private:
  int prev_ = 0;
};

cudaEvent_t make_event() {
  cudaEvent_t ev = nullptr;
  // BlockingSync: a host waiting on it sleeps instead of spinning, leaving the cores to the reduce.
  check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventBlockingSync), "cudaEventCreate");
  return ev;
}

}  // namespace

// The two side streams of one device; shared by the Stager and every Transfer it started, so a
// Transfer stays usable after its Stager is gone.
struct Streams {
  int device = 0;
  cudaStream_t d2h = nullptr;
  cudaStream_t h2d = nullptr;
  ~Streams() {
    // Destroying a stream with work queued returns at once; the work still completes.
    if (d2h) cudaStreamDestroy(d2h);
    if (h2d) cudaStreamDestroy(h2d);
  }
};

void check(cudaError_t rc, const std::string& what) {
  if (rc != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call does not report it again
    throw CudaError(what + ": " + describe(rc));
  }
}

int device_count(std::string* why) {
  int n = 0;
  cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = "cudaGetDeviceCount: " + describe(rc);
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount: no CUDA device is visible";
  return n;
}

std::pair<int, int> versions() {
  int drv = 0, rt = 0;
  if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
  if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
  cudaGetLastError();
  return {drv, rt};
}

// ---------------------------------------------------------------- host memory

HostRegistration::HostRegistration(uintptr_t ptr, size_t bytes) : ptr_(0), bytes_(bytes) {
  if (ptr == 0 || bytes == 0) throw CudaError("cudaHostRegister: empty range");
  // Portable: pinned for every context, not only the current device's. Not Mapped: no kernel of ours
  // reads host memory, the Copy Engines do, and mapping would cost a device address-space reservation.
  check(cudaHostRegister(reinterpret_cast<void*>(ptr), bytes, cudaHostRegisterPortable),
        "cudaHostRegister(" + std::to_string(bytes) + " bytes at 0x" + [ptr] {
          char b[32];
          snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(ptr));
          return std::string(b);
        }() + ")");
  ptr_ = ptr;
}

HostRegistration::~HostRegistration() { release(); }

void HostRegistration::release() {
  if (ptr_ != 0) {
    cudaError_t rc = cudaHostUnregister(reinterpret_cast<void*>(ptr_));
    ptr_ = 0;
    if (rc != cudaSuccess) cudaGetLastError();  // e.g. the context is already torn down at exit
  }
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  check(cudaHostAlloc(&ptr_, bytes ? bytes : 1, cudaHostAllocPortable),
        "cudaHostAlloc(" + std::to_string(bytes) + " bytes)");
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_ && cudaFreeHost(ptr_) != cudaSuccess) cudaGetLastError();
}

DeviceBuffer::DeviceBuffer(int device, size_t bytes) : device_(device), bytes_(bytes) {
  DeviceGuard g(device);
  check(cudaMalloc(&ptr_, bytes ? bytes : 1), "cudaMalloc(" + std::to_string(bytes) + " bytes)");
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ && cudaFree(ptr_) != cudaSuccess) cudaGetLastError();
}

void DeviceBuffer::upload(uintptr_t host, size_t bytes) {
  if (bytes > bytes_) throw CudaError("DeviceBuffer.upload: " + std::to_string(bytes) + " bytes > buffer size");
  DeviceGuard g(device_);
  check(cudaMemcpy(ptr_, reinterpret_cast<const void*>(host), bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}

void DeviceBuffer::download(uintptr_t host, size_t bytes) const {
  if (bytes > bytes_) throw CudaError("DeviceBuffer.download: " + std::to_string(bytes) + " bytes > buffer size");
  DeviceGuard g(device_);
  check(cudaMemcpy(reinterpret_cast<void*>(host), ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

// ---------------------------------------------------------------- transfers

// What a chunk's stream callback touches: no CUDA resources, so dropping the last reference from the
// callback (a driver thread, where CUDA calls are forbidden) is safe.
struct Landing {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<char> landed;  // chunk i is in host memory
};

struct TransferState {
  std::shared_ptr<Streams> streams;
  std::shared_ptr<Landing> landing = std::make_shared<Landing>();
  uintptr_t dev = 0, host = 0;
  size_t nbytes = 0, chunk_bytes = 0, n = 0;
  cudaEvent_t ready = nullptr;  // recorded on the caller's stream: the gradients are complete
  cudaEvent_t done = nullptr;   // recorded on the H2D stream by finish()
  bool finished = false;

  ~TransferState() {
    // Destroying a recorded, incomplete event is allowed: it is released once it completes.
    if (ready) cudaEventDestroy(ready);
    if (done) cudaEventDestroy(done);
  }
};

namespace {

struct ChunkCallback {
  std::shared_ptr<Landing> st;  // keeps the flags alive until the callback has run
  size_t i;
};

// Runs on a CUDA driver thread once chunk i's copy is complete; must not call CUDA.
void CUDART_CB chunk_landed(void* arg) {
  auto* cb = static_cast<ChunkCallback*>(arg);
  {
    std::lock_guard<std::mutex> lk(cb->st->mu);
    cb->st->landed[cb->i] = 1;
  }
  cb->st->cv.notify_all();
  delete cb;
}

void check_stream(cudaStream_t s, const char* what) {
  cudaError_t rc = cudaStreamQuery(s);
  if (rc != cudaSuccess && rc != cudaErrorNotReady) check(rc, what);
}

}  // namespace

size_t Transfer::num_chunks() const { return st_->n; }
size_t Transfer::nbytes() const { return st_->nbytes; }

std::pair<size_t, size_t> Transfer::chunk(size_t i) const {
  if (i >= st_->n) throw CudaError("chunk " + std::to_string(i) + " out of range (" + std::to_string(st_->n) + " chunks)");
  size_t off = i * st_->chunk_bytes;
  size_t len = std::min(st_->chunk_bytes, st_->nbytes - off);
  return {off, len};
}

bool Transfer::d2h_ready(size_t i) const {
  chunk(i);
  std::lock_guard<std::mutex> lk(st_->landing->mu);
  return st_->landing->landed[i] != 0;
}

bool Transfer::wait_d2h(size_t i, double timeout_s) {
  chunk(i);
  auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>((timeout_s < 0 ? 0 : timeout_s) * 1e6));
  Landing& l = *st_->landing;
  std::unique_lock<std::mutex> lk(l.mu);
  while (!l.landed[i]) {
    // Wake up now and then to notice a failed copy (its callback would never run) or the deadline.
    l.cv.wait_for(lk, std::chrono::milliseconds(50));
    if (l.landed[i]) break;
    lk.unlock();
    check_stream(st_->streams->d2h, "device-to-host copy");
    lk.lock();
    if (timeout_s >= 0 && Clock::now() >= deadline) return l.landed[i] != 0;
  }
  return true;
}

void Transfer::start_h2d(size_t i) {
  auto [off, len] = chunk(i);
  if (!d2h_ready(i)) throw CudaError("start_h2d(" + std::to_string(i) + "): its device-to-host copy has not landed");
  DeviceGuard g(st_->streams->device);
  check(cudaMemcpyAsync(reinterpret_cast<void*>(st_->dev + off), reinterpret_cast<const void*>(st_->host + off), len,
                        cudaMemcpyHostToDevice, st_->streams->h2d),
        "cudaMemcpyAsync H2D of chunk " + std::to_string(i));
}

void Transfer::finish() {
  if (st_->finished) throw CudaError("Transfer.finish called twice");
  DeviceGuard g(st_->streams->device);
  st_->done = make_event();
  check(cudaEventRecord(st_->done, st_->streams->h2d), "cudaEventRecord(done)");
  st_->finished = true;
}

void Transfer::wait_on_stream(uintptr_t stream) {
  if (!st_->finished) throw CudaError("Transfer.wait_on_stream before finish");
  DeviceGuard g(st_->streams->device);
  check(cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(stream), st_->done, 0), "cudaStreamWaitEvent(done)");
}

bool Transfer::synchronize(double timeout_s) {
  if (!st_->finished) throw CudaError("Transfer.synchronize before finish");
  if (timeout_s < 0) {
    check(cudaEventSynchronize(st_->done), "cudaEventSynchronize(done)");
    return true;
  }
  auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  for (;;) {
    cudaError_t rc = cudaEventQuery(st_->done);
    if (rc == cudaSuccess) return true;
    if (rc != cudaErrorNotReady) check(rc, "cudaEventQuery(done)");
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// ---------------------------------------------------------------- stager

namespace {
std::shared_ptr<Streams> make_streams(int device) {
  auto s = std::make_shared<Streams>();
  s->device = device;
  DeviceGuard g(device);
  // Non-blocking: no implicit synchronisation with the legacy default stream, on which PyTorch or the
  // user may be running backward.
  check(cudaStreamCreateWithFlags(&s->d2h, cudaStreamNonBlocking), "cudaStreamCreate(d2h)");
  check(cudaStreamCreateWithFlags(&s->h2d, cudaStreamNonBlocking), "cudaStreamCreate(h2d)");
  return s;
}

std::string hex(uintptr_t p) {
  char b[32];
  snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(p));
  return b;
}

void require_pinned(uintptr_t host, size_t nbytes) {
  for (uintptr_t p : {host, host + nbytes - 1}) {
    cudaPointerAttributes a{};
    check(cudaPointerGetAttributes(&a, reinterpret_cast<const void*>(p)), "cudaPointerGetAttributes(host)");
    if (a.type != cudaMemoryTypeHost)
      throw CudaError("host buffer byte at " + hex(p) +
                      " is not page-locked: register it (register_host) or allocate it pinned; an unpinned "
                      "copy would be synchronous and serialise the pipeline");
  }
}

void require_device(uintptr_t dev, size_t nbytes, int device) {
  for (uintptr_t p : {dev, dev + nbytes - 1}) {
    cudaPointerAttributes a{};
    check(cudaPointerGetAttributes(&a, reinterpret_cast<const void*>(p)), "cudaPointerGetAttributes(device)");
    if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
      throw CudaError("device buffer byte at " + hex(p) + " is not device memory");
    if (a.device != device)
      throw CudaError("device buffer is on device " + std::to_string(a.device) + ", this stager is for device " +
                      std::to_string(device));
  }
}
}  // namespace

Stager::Stager(int device) : device_(device) {
  std::string why;
  int n = device_count(&why);
  if (n == 0) throw CudaError(why);
  if (device < 0 || device >= n)
    throw CudaError("device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " visible)");
  streams_ = make_streams(device);
}

Stager::~Stager() = default;

uintptr_t Stager::d2h_stream() const { return reinterpret_cast<uintptr_t>(streams_->d2h); }
uintptr_t Stager::h2d_stream() const { return reinterpret_cast<uintptr_t>(streams_->h2d); }

Transfer Stager::begin(uintptr_t dev, uintptr_t host, size_t nbytes, size_t chunk_bytes, uintptr_t caller_stream) {
  auto st = std::make_shared<TransferState>();
  st->streams = streams_;
  st->dev = dev;
  st->host = host;
  st->nbytes = nbytes;
  st->chunk_bytes = chunk_bytes == 0 || chunk_bytes > nbytes ? (nbytes ? nbytes : 1) : chunk_bytes;
  st->n = nbytes == 0 ? 0 : (nbytes + st->chunk_bytes - 1) / st->chunk_bytes;
  st->landing->landed.assign(st->n, 0);
  if (nbytes == 0) return Transfer(st);

  std::lock_guard<std::mutex> lk(mu_);
  DeviceGuard g(device_);
  require_pinned(host, nbytes);
  require_device(dev, nbytes, device_);
  st->ready = make_event();
  check(cudaEventRecord(st->ready, reinterpret_cast<cudaStream_t>(caller_stream)), "cudaEventRecord(caller stream)");
  check(cudaStreamWaitEvent(streams_->d2h, st->ready, 0), "cudaStreamWaitEvent(d2h, caller)");
  for (size_t i = 0; i < st->n; ++i) {
    size_t off = i * st->chunk_bytes;
    size_t len = std::min(st->chunk_bytes, nbytes - off);
    check(cudaMemcpyAsync(reinterpret_cast<void*>(host + off), reinterpret_cast<const void*>(dev + off), len,
                          cudaMemcpyDeviceToHost, streams_->d2h),
          "cudaMemcpyAsync D2H of chunk " + std::to_string(i));
    auto* cb = new ChunkCallback{st->landing, i};
    cudaError_t rc = cudaLaunchHostFunc(streams_->d2h, chunk_landed, cb);
    if (rc != cudaSuccess) {
      delete cb;
      check(rc, "cudaLaunchHostFunc(chunk " + std::to_string(i) + ")");
    }
  }
  return Transfer(st);
}

}  // namespace ffcuda
