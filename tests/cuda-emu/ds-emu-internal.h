/* ds-emu-internal.h: what the CUDA emulator's runtime (ds-emu.cc), scheduler
 * (ds-emu-sched.cc) and cuBLAS (ds-emu-blas.cc) share. Not for kernels. */
#pragma once

#include <functional>
#include <mutex>

#include "cuda_runtime.h"

namespace ds_emu {

/* One lock over all emulator state: the runtime may be called from several
 * host threads, and kernels run on the caller's thread while holding it. */
std::recursive_mutex &api_mutex ();

/* Records `e` as the last error (cudaGetLastError) unless it is cudaSuccess,
 * and returns it. */
cudaError_t fail (cudaError_t e);

/* Runs `work` now, or appends it to the stream's graph while the stream
 * captures. Errors: an unknown stream, no device, an invalidated capture.
 * Device work (kernels, GEMMs, convolutions, copies, memsets) is counted
 * each time it runs (ds_emu_work_count); bookkeeping such as event records
 * and graph launches passes counted = false. */
cudaError_t enqueue (cudaStream_t stream, std::function<void ()> work, bool counted = true);

/* Whether a device answers (cudaGetDeviceCount, its error cleared): what the
 * libraries' handle creation checks first. */
bool any_device ();

/* [p, p + n) inside one device allocation (not pinned host memory)? */
bool device_range (const void *p, size_t n);

/* Runs every block of a validated launch (ds-emu-sched.cc). */
void run_kernel (const LaunchConfig &cfg, const std::function<void ()> &body);

} // namespace ds_emu
