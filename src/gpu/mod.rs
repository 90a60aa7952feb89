//! GPU facts libtorch does not expose through tch: the CUDA caching allocator's memory statistics.
//!
//! Built only when the libtorch in use ships CUDA (`libc10_cuda.so`) and the CUDA headers are found;
//! otherwise (and on a machine without a GPU) the functions return `None`.

/// Bytes held by libtorch's CUDA caching allocator on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    pub allocated: i64,
    pub peak_allocated: i64,
    pub reserved: i64,
}

#[cfg(kdseg_cuda_stats)]
extern "C" {
    fn kdseg_cuda_memory(device: i32, allocated: *mut i64, peak_allocated: *mut i64, reserved: *mut i64) -> i32;
    fn kdseg_cuda_reset_peak(device: i32) -> i32;
}

/// Memory statistics of CUDA device `device`, `None` without CUDA.
pub fn memory_stats(device: tch::Device) -> Option<MemoryStats> {
    let tch::Device::Cuda(index) = device else { return None };
    #[cfg(kdseg_cuda_stats)]
    {
        let (mut allocated, mut peak, mut reserved) = (0i64, 0i64, 0i64);
        // SAFETY: the shim writes three i64 through valid pointers and catches every C++ exception.
        let rc = unsafe { kdseg_cuda_memory(index as i32, &mut allocated, &mut peak, &mut reserved) };
        if rc == 0 {
            return Some(MemoryStats { allocated, peak_allocated: peak, reserved });
        }
    }
    let _ = index;
    None
}

/// Resets the peak statistic (before measuring one phase).
pub fn reset_peak(device: tch::Device) {
    if let tch::Device::Cuda(index) = device {
        #[cfg(kdseg_cuda_stats)]
        // SAFETY: no pointers; the shim catches every C++ exception.
        unsafe {
            kdseg_cuda_reset_peak(index as i32);
        }
        let _ = index;
    }
}
