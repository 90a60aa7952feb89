// CUDA graphs for kdseg: capture the kernels that libtorch launches between begin and end (whatever
// issues them, here tch from Rust) and replay them with one launch. tch exposes no CUDA graphs.
// Every function catches C++ exceptions and returns non-zero instead (guarded.h).
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <optional>
#include "guarded.h"

using kdseg::guarded;

namespace {
struct Graph {
  at::cuda::CUDAGraph graph;
  std::optional<c10::cuda::CUDAStream> capture_stream;
  std::optional<c10::cuda::CUDAStream> previous_stream;
};
}  // namespace

// The message of the calling thread's last failed call, from any of the shims.
extern "C" const char* kdseg_shim_last_error() { return kdseg::last_error.c_str(); }

extern "C" void* kdseg_graph_new() {
  Graph* g = nullptr;
  guarded([&] { g = new Graph(); });
  return g;
}

extern "C" void kdseg_graph_free(void* handle) {
  guarded([&] { delete static_cast<Graph*>(handle); });
}

// Makes a side stream current (capture cannot run on the default stream) and starts capturing.
extern "C" int kdseg_graph_begin(void* handle, int device) {
  auto* g = static_cast<Graph*>(handle);
  return guarded([&] {
    auto index = static_cast<c10::DeviceIndex>(device);
    c10::cuda::device_synchronize();
    g->previous_stream = c10::cuda::getCurrentCUDAStream(index);
    g->capture_stream = c10::cuda::getStreamFromPool(false, index);
    c10::cuda::setCurrentCUDAStream(*g->capture_stream);
    try {
      // thread-local: other threads' CUDA calls (a node's executor) do not break the capture
      g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    } catch (...) {
      c10::cuda::setCurrentCUDAStream(*g->previous_stream);
      throw;
    }
  });
}

// Ends the capture (also after a failure between begin and end) and restores the previous stream.
extern "C" int kdseg_graph_end(void* handle) {
  auto* g = static_cast<Graph*>(handle);
  int rc = guarded([&] { g->graph.capture_end(); });
  if (g->previous_stream) {
    guarded([&] { c10::cuda::setCurrentCUDAStream(*g->previous_stream); });
  }
  return rc;
}

// Replays on the current stream, ordered after the work already queued there.
extern "C" int kdseg_graph_replay(void* handle) {
  auto* g = static_cast<Graph*>(handle);
  return guarded([&] { g->graph.replay(); });
}
