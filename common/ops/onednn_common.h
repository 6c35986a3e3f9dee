// What the oneDNN XLA FFI handlers share: the engine, per-thread streams and scratch
// buffers, and one execution lock.
//
// Threads: primitives are built once per geometry under a mutex; each call runs on every
// core through oneDNN's OpenMP team, one call at a time (XLA may start independent thunks,
// such as a layer's data and weight gradients, concurrently, and two OpenMP teams on the
// same cores spin against each other at their barriers), with a thread-local stream and
// thread-local scratch memory (user-managed scratchpad).

#ifndef GLONETS_COMMON_OPS_ONEDNN_COMMON_H_
#define GLONETS_COMMON_OPS_ONEDNN_COMMON_H_

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

#if DNNL_VERSION_MAJOR < 3
#error "oneDNN 3.x is required (the primitive_desc API changed in 3.0)"
#endif

namespace glonets {

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

inline dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// A growing, 64-byte aligned buffer owned by one thread.
class ThreadBuffer {
 public:
  void* Get(size_t bytes) {
    if (bytes > size_) {
      data_.reset(static_cast<char*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
      size_ = bytes;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data_;
  size_t size_ = 0;
};

inline ThreadBuffer& ScratchBuffer() {
  thread_local ThreadBuffer buffer;
  return buffer;
}

inline ThreadBuffer& WeightsBuffer() {
  thread_local ThreadBuffer buffer;
  return buffer;
}

inline std::mutex& ExecutionMutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace glonets

#endif  // GLONETS_COMMON_OPS_ONEDNN_COMMON_H_
