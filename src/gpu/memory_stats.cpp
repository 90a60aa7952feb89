// CUDA caching-allocator statistics for kdseg (peak and current bytes allocated by libtorch), the
// figures PyTorch reports as torch.cuda.max_memory_allocated(); tch exposes none of them.
#include <c10/cuda/CUDACachingAllocator.h>
#include <cstdint>

extern "C" int kdseg_cuda_memory(int device, int64_t* allocated, int64_t* peak_allocated, int64_t* reserved) {
  try {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[all].current;
    *peak_allocated = stats.allocated_bytes[all].peak;
    *reserved = stats.reserved_bytes[all].current;
    return 0;
  } catch (...) {
    return -1;
  }
}

extern "C" int kdseg_cuda_reset_peak(int device) {
  try {
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return 0;
  } catch (...) {
    return -1;
  }
}
