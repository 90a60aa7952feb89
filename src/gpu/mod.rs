//! What libtorch does not expose through tch: the CUDA caching allocator's memory statistics, and
//! CUDA graphs.
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

#[cfg(kdseg_cuda_shim)]
extern "C" {
    fn kdseg_cuda_memory(device: i32, allocated: *mut i64, peak_allocated: *mut i64, reserved: *mut i64) -> i32;
    fn kdseg_cuda_reset_peak(device: i32) -> i32;
}

/// Memory statistics of CUDA device `device`, `None` without CUDA.
pub fn memory_stats(device: tch::Device) -> Option<MemoryStats> {
    let tch::Device::Cuda(index) = device else { return None };
    #[cfg(kdseg_cuda_shim)]
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
        #[cfg(kdseg_cuda_shim)]
        // SAFETY: no pointers; the shim catches every C++ exception.
        unsafe {
            kdseg_cuda_reset_peak(index as i32);
        }
        let _ = index;
    }
}

#[cfg(kdseg_cuda_shim)]
extern "C" {
    fn kdseg_shim_last_error() -> *const std::os::raw::c_char;
    fn kdseg_graph_new() -> *mut std::ffi::c_void;
    fn kdseg_graph_free(handle: *mut std::ffi::c_void);
    fn kdseg_graph_begin(handle: *mut std::ffi::c_void, device: i32) -> i32;
    fn kdseg_graph_end(handle: *mut std::ffi::c_void) -> i32;
    fn kdseg_graph_replay(handle: *mut std::ffi::c_void) -> i32;
}

/// A captured CUDA graph: the kernels libtorch launched while [`CudaGraph::capture`] ran its
/// closure, replayed with one launch. Tensors the closure read must keep their storage (copy new
/// inputs into them); tensors it made are overwritten by every replay.
pub struct CudaGraph {
    #[cfg(kdseg_cuda_shim)]
    handle: *mut std::ffi::c_void,
}

impl CudaGraph {
    /// Captures what `f` launches on CUDA device `device`; `None` (after a warning) where graphs are
    /// unavailable (no CUDA, a libtorch without the shim) or the capture failed.
    pub fn capture<T>(device: tch::Device, f: impl FnOnce() -> T) -> Option<(CudaGraph, T)> {
        let tch::Device::Cuda(index) = device else { return None };
        #[cfg(kdseg_cuda_shim)]
        {
            // SAFETY: the shim catches every C++ exception; the handle is freed exactly once (Drop).
            let handle = unsafe { kdseg_graph_new() };
            if handle.is_null() {
                log::warn!("CUDA graph: {}", last_error());
                return None;
            }
            let graph = CudaGraph { handle };
            if unsafe { kdseg_graph_begin(handle, index as i32) } != 0 {
                log::warn!("CUDA graph capture did not start: {}", last_error());
                return None;
            }
            // a libtorch error inside the capture must still end it, or the stream stays captured
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let ended = unsafe { kdseg_graph_end(handle) } == 0;
            return match (result, ended) {
                (Ok(value), true) => Some((graph, value)),
                (Ok(_), false) => {
                    log::warn!("CUDA graph capture failed: {}", last_error());
                    None
                }
                (Err(_), _) => {
                    log::warn!("CUDA graph capture failed inside the captured work");
                    None
                }
            };
        }
        #[allow(unreachable_code)]
        {
            let _ = (index, f);
            None
        }
    }

    /// Launches the captured kernels on the current stream, after the work queued there.
    pub fn replay(&self) -> Result<(), String> {
        #[cfg(kdseg_cuda_shim)]
        // SAFETY: a live handle from kdseg_graph_new; the shim catches every C++ exception.
        if unsafe { kdseg_graph_replay(self.handle) } != 0 {
            return Err(last_error());
        }
        Ok(())
    }
}

#[cfg(kdseg_cuda_shim)]
fn last_error() -> String {
    // SAFETY: the shim returns a NUL-terminated thread-local string that lives until the next call.
    unsafe { std::ffi::CStr::from_ptr(kdseg_shim_last_error()) }.to_string_lossy().into_owned()
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(kdseg_cuda_shim)]
        // SAFETY: the handle came from kdseg_graph_new and is freed only here.
        unsafe {
            kdseg_graph_free(self.handle)
        };
    }
}

// SAFETY: the graph is only used from the thread that owns the engine holding it; moving it between
// threads (the node moves its engine into a worker) is fine for CUDA graphs.
unsafe impl Send for CudaGraph {}

#[cfg(kdseg_cuda_shim)]
extern "C" {
    fn kdseg_profiler_start(cuda: i32) -> i32;
    fn kdseg_profiler_stop(events_path: *const std::os::raw::c_char) -> i32;
}

/// libtorch's profiler (Kineto): host ops and, with CUDA, every kernel, between [`Profiler::start`]
/// and [`Profiler::stop`], which writes the raw events (see `kdseg::bench::profile`).
pub struct Profiler {
    _running: (),
}

impl Profiler {
    /// Starts recording host ops, and GPU activity when `cuda`.
    pub fn start(cuda: bool) -> Result<Profiler, String> {
        #[cfg(kdseg_cuda_shim)]
        {
            // SAFETY: no pointers; the shim catches every C++ exception.
            if unsafe { kdseg_profiler_start(i32::from(cuda)) } != 0 {
                return Err(format!("the profiler did not start: {}", last_error()));
            }
            return Ok(Profiler { _running: () });
        }
        #[allow(unreachable_code)]
        {
            let _ = cuda;
            Err("this build has no libtorch profiler shim (it needs the CUDA headers next to torch)".into())
        }
    }

    /// Stops recording and writes one line per event to `events` (device, activity type, thread,
    /// start ns, end ns, correlation id, name; tab-separated).
    pub fn stop(self, events: &std::path::Path) -> Result<(), String> {
        #[cfg(kdseg_cuda_shim)]
        {
            let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).map_err(|_| format!("{}: a NUL byte in the path", events.display()))?;
            // SAFETY: a valid NUL-terminated path; the shim catches every C++ exception.
            if unsafe { kdseg_profiler_stop(path.as_ptr()) } != 0 {
                return Err(format!("{}: {}", events.display(), last_error()));
            }
            return Ok(());
        }
        #[allow(unreachable_code)]
        {
            let _ = events;
            Err("this build has no libtorch profiler shim".into())
        }
    }
}

/// Host memory reused scan after scan for copies to and from a device: page-locked when the device
/// is a GPU, so a copy is one DMA transfer rather than the driver's staging through pageable
/// memory, and never freshly allocated, so no page faults (a 120k-point scan is about 2 MB each
/// way).
///
/// Copies in and out of it are blocking (`to_device`, `copy_`), so the buffer is never written while
/// a transfer still reads it.
pub struct HostBuffer {
    tensor: tch::Tensor,
    pinned_for: Option<tch::Device>,
}

impl HostBuffer {
    pub fn new(device: tch::Device) -> Self {
        HostBuffer { tensor: tch::Tensor::empty([0], (tch::Kind::Float, tch::Device::Cpu)), pinned_for: device.is_cuda().then_some(device) }
    }

    /// The first `len` floats, for writing; grows (by doubling) when needed.
    pub fn floats_mut(&mut self, len: usize) -> &mut [f32] {
        let capacity = self.tensor.numel();
        if capacity < len {
            let grown = len.max(2 * capacity).max(1 << 16) as i64;
            let fresh = tch::Tensor::empty([grown], (tch::Kind::Float, tch::Device::Cpu));
            self.tensor = match self.pinned_for {
                // a host without page-locked memory to give still works, only slower
                Some(device) => fresh.f_pin_memory(device).unwrap_or(fresh),
                None => fresh,
            };
        }
        // SAFETY: the tensor is a contiguous float32 CPU tensor of at least `len` elements that only
        // this struct refers to; `&mut self` keeps the slice unique, and no asynchronous copy reads it
        // (see the type's documentation).
        unsafe { std::slice::from_raw_parts_mut(self.tensor.data_ptr() as *mut f32, len) }
    }

    /// The first `numel` floats as a tensor of `shape` on the CPU, sharing this buffer's memory:
    /// copy it before the buffer is written again.
    pub fn view(&self, shape: &[i64]) -> tch::Tensor {
        let numel: i64 = shape.iter().product();
        self.tensor.narrow(0, 0, numel).view(shape)
    }

    /// Copies `tensor` (float32, any device) into the buffer and returns its values.
    pub fn download(&mut self, tensor: &tch::Tensor) -> &[f32] {
        let len = tensor.numel();
        self.floats_mut(len);
        let mut target = self.view(&[len as i64]);
        target.copy_(&tensor.reshape([-1]));
        self.floats_mut(len)
    }
}
