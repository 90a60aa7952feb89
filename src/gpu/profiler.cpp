// libtorch's own profiler (Kineto with CUPTI), which tch does not expose: records every aten op on the
// host and every kernel, copy and memset on the GPU, and writes the raw events for Rust to total
// (kdseg::bench::profile). This is what tells a busy host from a busy GPU, and which op is which.
#include <torch/csrc/autograd/profiler_kineto.h>
#include <fstream>
#include <set>
#include <string>
#include "guarded.h"

using kdseg::guarded;

namespace {
namespace prof = torch::profiler::impl;
namespace autoprof = torch::autograd::profiler;

std::set<prof::ActivityType> activities(int cuda) {
  std::set<prof::ActivityType> set{prof::ActivityType::CPU};
  if (cuda) set.insert(prof::ActivityType::CUDA);
  return set;
}

// tabs and newlines would break the line format; kernel names never need them
std::string one_field(std::string s) {
  for (auto& c : s) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// A host op's input shapes as [[8,32,480,362],[32,32,3,3]]; empty when the event has none.
std::string shapes(const autoprof::KinetoEvent& e) {
  std::string out;
  if (!e.hasShapes()) return out;
  out += '[';
  bool first = true;
  for (const auto& shape : e.shapes()) {
    if (!first) out += ',';
    first = false;
    out += '[';
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(shape[i]);
    }
    out += ']';
  }
  out += ']';
  return out;
}
}  // namespace

extern "C" int kdseg_profiler_start(int cuda) {
  return guarded([&] {
    prof::ProfilerConfig config(prof::ProfilerState::KINETO, /*report_input_shapes=*/true);
    autoprof::prepareProfiler(config, activities(cuda));
    autoprof::enableProfiler(config, activities(cuda));
  });
}

// One line per event: device (cpu|cuda), kineto activity type, thread, start ns, end ns,
// correlation id, name, input shapes (host ops; e.g. [[8,32,480,362],[32,32,3,3]]).
extern "C" int kdseg_profiler_stop(const char* events_path) {
  return guarded([&] {
    auto result = autoprof::disableProfiler();
    std::ofstream out(events_path);
    if (!out) throw std::runtime_error(std::string("cannot write ") + events_path);
    for (const auto& e : result->events()) {
      out << (e.deviceType() == c10::DeviceType::CUDA ? "cuda" : "cpu") << '\t' << int(e.activityType()) << '\t'
          << e.startThreadId() << '\t' << e.startNs() << '\t' << e.endNs() << '\t' << e.correlationId() << '\t'
          << one_field(e.name()) << '\t' << shapes(e) << '\n';
    }
    if (!out) throw std::runtime_error(std::string("cannot write ") + events_path);
  });
}
