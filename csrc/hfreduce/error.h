// The one exception type of the core. `kind` lets the Python binding map it onto
// hfreduce.errors classes; `what()` is the message a user reads (it names ranks).
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>

namespace hfreduce {

enum class ErrorKind : int { kUsage = 0, kMismatch = 1, kTimeout = 2, kPeerLost = 3, kAborted = 4 };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

using Clock = std::chrono::steady_clock;

// An absolute point in time after which a blocking call gives up.
struct Deadline {
  Clock::time_point at;
  static Deadline after_s(double s) {
    return Deadline{Clock::now() + std::chrono::microseconds(static_cast<int64_t>(s * 1e6))};
  }
  bool expired() const { return Clock::now() >= at; }
  int remaining_ms() const {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(at - Clock::now()).count();
    return ms < 0 ? 0 : static_cast<int>(ms);
  }
};

}  // namespace hfreduce
