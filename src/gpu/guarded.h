// What every function of kdseg's C++ shims does with a C++ exception: catch it, keep its message for
// Rust (kdseg_shim_last_error) and return non-zero, since an exception must not cross into Rust.
#pragma once
#include <exception>
#include <string>

namespace kdseg {
// thread-local: the message belongs to the thread whose call failed
inline thread_local std::string last_error;

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}
}  // namespace kdseg
