/* ds-emu.cc: the CUDA emulator's runtime API (tests/cuda-emu/README.md).
 *
 * Devices, memory, streams, events, stream capture into graphs, launch
 * validation and the last-error bookkeeping of the CUDA runtime subset that
 * cuda_runtime.h declares. Work is never queued: a stream runs each operation
 * when it is enqueued (so synchronizing is a no-op), except while the stream
 * captures, when the operation is recorded as a closure and a graph launch
 * replays the closures in order. Device memory is host memory from
 * posix_memalign, so AddressSanitizer sees kernels' out-of-bounds accesses.
 */
#include "ds-emu-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <vector>

struct CUgraph_st {
  std::vector<std::function<void ()>> nodes;
};

struct CUgraphExec_st {
  std::vector<std::function<void ()>> nodes;
};

struct CUstream_st {
  unsigned flags = 0;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUgraph_st *graph = nullptr; /* being captured into */
};

struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;
  std::chrono::steady_clock::time_point when;
};

namespace ds_emu {

namespace {

struct Alloc {
  size_t size;
  bool pinned; /* cudaMallocHost: host memory the device may also address */
};

struct State {
  std::map<uintptr_t, Alloc> allocs;
  size_t used = 0; /* device bytes, against the budget */
  std::set<CUstream_st *> streams;
  std::set<CUevent_st *> events;
  std::map<const void *, int> max_dyn_smem; /* cudaFuncSetAttribute */
  CUstream_st legacy;                       /* stream 0 and its aliases */
};

State &
state ()
{
  static State *s = new State; /* never destroyed: atexit order is unknowable */
  return *s;
}

thread_local cudaError_t last_error = cudaSuccess;
thread_local int current_device = 0;

constexpr size_t kStaticSmemLimit = 48 << 10;
constexpr size_t kOptinSmemLimit = 227 << 10;

unsigned long long
env_bytes (const char *name, unsigned long long fallback)
{
  const char *v = getenv (name);
  if (!v || !*v)
    return fallback;
  char *end;
  errno = 0;
  unsigned long long n = strtoull (v, &end, 0);
  if (errno || end == v)
    return fallback;
  switch (*end)
    {
    case 'k': case 'K': n <<= 10; break;
    case 'm': case 'M': n <<= 20; break;
    case 'g': case 'G': n <<= 30; break;
    default: break;
    }
  return n;
}

int
device_count ()
{
  static const int n = (int) env_bytes ("DS_CUDA_EMU_DEVICES", 1);
  return n;
}

size_t
budget ()
{
  static const size_t b = env_bytes ("DS_CUDA_EMU_MEMORY", (unsigned long long) 8 << 30);
  return b;
}

/* The stream object behind a handle, or null for an unknown handle. */
CUstream_st *
stream_of (cudaStream_t s)
{
  State &st = state ();
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread)
    return &st.legacy;
  return st.streams.count (s) ? s : nullptr;
}

/* [p, p + n) inside one allocation (of either kind when pinned_ok)? */
bool
in_allocation (const void *p, size_t n, bool pinned_ok)
{
  State &st = state ();
  const uintptr_t a = (uintptr_t) p;
  auto it = st.allocs.upper_bound (a);
  if (it == st.allocs.begin ())
    return false;
  --it;
  if (it->second.pinned && !pinned_ok)
    return false;
  return a - it->first <= it->second.size && n <= it->second.size - (a - it->first);
}

bool
in_device_allocation (const void *p)
{
  State &st = state ();
  const uintptr_t a = (uintptr_t) p;
  auto it = st.allocs.upper_bound (a);
  if (it == st.allocs.begin ())
    return false;
  --it;
  return !it->second.pinned && a - it->first < it->second.size;
}

/* A synchronous call while streams capture: the real runtime refuses it and
 * the captures can no longer end well. */
bool
refuse_during_capture ()
{
  State &st = state ();
  bool any = false;
  for (CUstream_st *s : st.streams)
    if (s->capture == cudaStreamCaptureStatusActive)
      {
        s->capture = cudaStreamCaptureStatusInvalidated;
        any = true;
      }
  return any;
}

cudaError_t
check_copy (void *dst, const void *src, size_t count, cudaMemcpyKind kind)
{
  /* Each device-side pointer must lie in a device (or pinned) allocation and
   * each host-side pointer outside device memory, as UVA lets the real
   * runtime check. */
  switch (kind)
    {
    case cudaMemcpyHostToHost:
      if (in_device_allocation (dst) || in_device_allocation (src))
        return cudaErrorInvalidValue;
      break;
    case cudaMemcpyHostToDevice:
      if (!in_allocation (dst, count, true) || in_device_allocation (src))
        return cudaErrorInvalidValue;
      break;
    case cudaMemcpyDeviceToHost:
      if (!in_allocation (src, count, true) || in_device_allocation (dst))
        return cudaErrorInvalidValue;
      break;
    case cudaMemcpyDeviceToDevice:
      if (!in_allocation (src, count, true) || !in_allocation (dst, count, true))
        return cudaErrorInvalidValue;
      break;
    case cudaMemcpyDefault:
      break;
    default:
      return cudaErrorInvalidMemcpyDirection;
    }
  return cudaSuccess;
}

} // namespace

bool
any_device ()
{
  int n = 0;
  if (cudaGetDeviceCount (&n) == cudaSuccess && n > 0)
    return true;
  cudaGetLastError ();
  return false;
}

bool
device_range (const void *p, size_t n)
{
  std::lock_guard<std::recursive_mutex> lock (api_mutex ());
  return in_allocation (p, n, false);
}

std::recursive_mutex &
api_mutex ()
{
  static std::recursive_mutex *m = new std::recursive_mutex;
  return *m;
}

cudaError_t
fail (cudaError_t e)
{
  if (e != cudaSuccess)
    last_error = e;
  return e;
}

static std::atomic<unsigned long long> work_count{ 0 };

/* Injected faults (ds_emu_fail_launch, ds_emu_fault_kernel): countdowns, 0 =
 * none armed, and the error a kernel fault left. A fault in a kernel is sticky
 * on a GPU: the context is lost and every later call returns the error. */
static std::atomic<unsigned long long> launch_countdown{ 0 }, kernel_countdown{ 0 };
static std::atomic<int> launch_fault{ cudaSuccess }, kernel_fault{ cudaSuccess };
static std::atomic<int> sticky{ cudaSuccess };

/* Whether this call is the one an armed countdown waits for. */
static bool
countdown_hits (std::atomic<unsigned long long> &c)
{
  unsigned long long v = c.load ();
  while (v > 0 && !c.compare_exchange_weak (v, v - 1))
    ;
  return v == 1;
}

cudaError_t
sticky_error ()
{
  return (cudaError_t) sticky.load ();
}

cudaError_t
enqueue (cudaStream_t stream, std::function<void ()> work, bool counted)
{
  if (counted)
    work = [w = std::move (work)] () {
      work_count++;
      w ();
    };
  std::lock_guard<std::recursive_mutex> lock (api_mutex ());
  if (device_count () <= 0)
    return fail (cudaErrorNoDevice);
  if (sticky_error () != cudaSuccess)
    return fail (sticky_error ());
  CUstream_st *s = stream_of (stream);
  if (!s)
    return fail (cudaErrorInvalidResourceHandle);
  if (s->capture == cudaStreamCaptureStatusInvalidated)
    return fail (cudaErrorStreamCaptureInvalidated);
  if (s->capture == cudaStreamCaptureStatusActive)
    s->graph->nodes.push_back (std::move (work));
  else
    work ();
  return cudaSuccess;
}

void
launch_kernel (const LaunchConfig &cfg, std::function<void ()> body)
{
  std::lock_guard<std::recursive_mutex> lock (api_mutex ());
  if (device_count () <= 0)
    {
      fail (cudaErrorNoDevice);
      return;
    }
  CUstream_st *s = stream_of (cfg.stream);
  if (!s)
    {
      fail (cudaErrorInvalidResourceHandle);
      return;
    }
  const dim3 b = cfg.block, g = cfg.grid;
  const unsigned long long threads = (unsigned long long) b.x * b.y * b.z;
  cudaError_t e = cudaSuccess;
  if (threads == 0 || threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x == 0
      || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
    e = cudaErrorInvalidConfiguration;
  else
    {
      size_t limit = kStaticSmemLimit;
      auto it = state ().max_dyn_smem.find (cfg.func);
      if (it != state ().max_dyn_smem.end () && (size_t) it->second > limit)
        limit = (size_t) it->second;
      if (cfg.smem > limit)
        e = cudaErrorInvalidValue;
    }
  if (e == cudaSuccess && sticky_error () != cudaSuccess)
    e = sticky_error ();
  else if (e == cudaSuccess && countdown_hits (launch_countdown))
    e = (cudaError_t) launch_fault.load ();
  if (e != cudaSuccess)
    {
      /* A failed launch also spoils a capture in progress. */
      if (s->capture == cudaStreamCaptureStatusActive)
        s->capture = cudaStreamCaptureStatusInvalidated;
      fail (e);
      return;
    }
  LaunchConfig c = cfg;
  enqueue (cfg.stream, [c, body] () {
    if (sticky_error () != cudaSuccess)
      return; /* the context is gone: nothing runs */
    if (countdown_hits (kernel_countdown))
      {
        sticky = kernel_fault.load ();
        return;
      }
    run_kernel (c, body);
  });
}

[[noreturn]] void
device_trap (const char *what)
{
  fprintf (stderr, "CUDA emulator: %s\n", what);
  abort ();
}

} // namespace ds_emu

using namespace ds_emu;

#define LOCK std::lock_guard<std::recursive_mutex> lock_ (api_mutex ())
#define NEED_DEVICE                                                                           \
  do {                                                                                        \
    if (device_count () <= 0)                                                                 \
      return fail (cudaErrorNoDevice);                                                        \
    if (sticky_error () != cudaSuccess)                                                       \
      return fail (sticky_error ());                                                          \
  } while (0)

extern "C" {

/* ---- devices and errors ---- */

cudaError_t
cudaGetDeviceCount (int *count)
{
  if (!count)
    return fail (cudaErrorInvalidValue);
  *count = 0;
  NEED_DEVICE;
  *count = device_count ();
  return cudaSuccess;
}

cudaError_t
cudaSetDevice (int device)
{
  NEED_DEVICE;
  if (device < 0 || device >= device_count ())
    return fail (cudaErrorInvalidDevice);
  current_device = device;
  return cudaSuccess;
}

cudaError_t
cudaGetDevice (int *device)
{
  NEED_DEVICE;
  if (!device)
    return fail (cudaErrorInvalidValue);
  *device = current_device;
  return cudaSuccess;
}

cudaError_t
cudaGetDeviceProperties (struct cudaDeviceProp *prop, int device)
{
  NEED_DEVICE;
  if (!prop)
    return fail (cudaErrorInvalidValue);
  if (device < 0 || device >= device_count ())
    return fail (cudaErrorInvalidDevice);
  memset (prop, 0, sizeof *prop);
  snprintf (prop->name, sizeof prop->name, "Diffscope CUDA emulator");
  prop->totalGlobalMem = budget ();
  prop->sharedMemPerBlock = kStaticSmemLimit;
  prop->sharedMemPerBlockOptin = kOptinSmemLimit;
  prop->sharedMemPerMultiprocessor = 228 << 10;
  prop->regsPerBlock = 65536;
  prop->regsPerMultiprocessor = 65536;
  prop->warpSize = 32;
  prop->memPitch = (size_t) 1 << 31;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->clockRate = 1000000;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->textureAlignment = 512;
  prop->multiProcessorCount = 4;
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->memoryClockRate = 1000000;
  prop->memoryBusWidth = 64;
  prop->l2CacheSize = 4 << 20;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->unifiedAddressing = 1;
  prop->managedMemory = 0;
  prop->cooperativeLaunch = 0;
  return cudaSuccess;
}

cudaError_t
cudaDeviceSynchronize (void)
{
  LOCK;
  NEED_DEVICE;
  if (refuse_during_capture ())
    return fail (cudaErrorStreamCaptureUnsupported);
  return cudaSuccess;
}

cudaError_t
cudaDeviceReset (void)
{
  return cudaDeviceSynchronize ();
}

cudaError_t
cudaGetLastError (void)
{
  if (sticky_error () != cudaSuccess)
    return sticky_error (); /* not cleared: it is the context's now */
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t
cudaPeekAtLastError (void)
{
  return sticky_error () != cudaSuccess ? sticky_error () : last_error;
}

#define ERRORS(X)                                                                             \
  X (cudaSuccess, "no error")                                                                 \
  X (cudaErrorInvalidValue, "invalid argument")                                               \
  X (cudaErrorMemoryAllocation, "out of memory")                                              \
  X (cudaErrorInitializationError, "initialization error")                                    \
  X (cudaErrorInvalidConfiguration, "invalid configuration argument")                         \
  X (cudaErrorInvalidDevicePointer, "invalid device pointer")                                 \
  X (cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                    \
  X (cudaErrorInsufficientDriver, "CUDA driver version is insufficient for CUDA runtime version") \
  X (cudaErrorInvalidDeviceFunction, "invalid device function")                               \
  X (cudaErrorNoDevice, "no CUDA-capable device is detected")                                 \
  X (cudaErrorInvalidDevice, "invalid device ordinal")                                        \
  X (cudaErrorInvalidResourceHandle, "invalid resource handle")                               \
  X (cudaErrorIllegalState, "the operation cannot be performed in the present state")         \
  X (cudaErrorNotReady, "device not ready")                                                   \
  X (cudaErrorIllegalAddress, "an illegal memory access was encountered")                     \
  X (cudaErrorLaunchOutOfResources, "too many resources requested for launch")                \
  X (cudaErrorLaunchFailure, "unspecified launch failure")                                    \
  X (cudaErrorNotSupported, "operation not supported")                                        \
  X (cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing")   \
  X (cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture") \
  X (cudaErrorStreamCaptureUnmatched, "capture was not ended in the same stream as it began") \
  X (cudaErrorStreamCaptureImplicit,                                                          \
     "operation would make the legacy stream depend on a capturing blocking stream")          \
  X (cudaErrorStreamCaptureWrongThread,                                                       \
     "attempt to terminate a thread-local capture sequence from another thread")              \
  X (cudaErrorUnknown, "unknown error")

const char *
cudaGetErrorString (cudaError_t error)
{
#define X(e, s)                                                                               \
  case e: return s;
  switch (error)
    {
      ERRORS (X)
    default: break;
    }
#undef X
  return "unrecognized error code";
}

const char *
cudaGetErrorName (cudaError_t error)
{
#define X(e, s)                                                                               \
  case e: return #e;
  switch (error)
    {
      ERRORS (X)
    default: break;
    }
#undef X
  return "unrecognized error code";
}

cudaError_t
cudaRuntimeGetVersion (int *version)
{
  if (!version)
    return fail (cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t
cudaDriverGetVersion (int *version)
{
  if (!version)
    return fail (cudaErrorInvalidValue);
  *version = device_count () > 0 ? CUDART_VERSION : 0;
  return cudaSuccess;
}

/* ---- memory ---- */

cudaError_t
cudaMalloc (void **devPtr, size_t size)
{
  LOCK;
  NEED_DEVICE;
  if (!devPtr)
    return fail (cudaErrorInvalidValue);
  *devPtr = nullptr;
  if (size == 0)
    return cudaSuccess;
  State &st = state ();
  if (size > budget () - st.used)
    return fail (cudaErrorMemoryAllocation);
  void *p = nullptr;
  if (posix_memalign (&p, 256, size) != 0)
    return fail (cudaErrorMemoryAllocation);
  /* Fresh device memory is not zero: NaN-ish bytes make reads of memory
   * nobody wrote stand out. */
  memset (p, 0xff, size);
  st.allocs[(uintptr_t) p] = Alloc{ size, false };
  st.used += size;
  *devPtr = p;
  return cudaSuccess;
}

cudaError_t
cudaFree (void *devPtr)
{
  LOCK;
  NEED_DEVICE;
  if (!devPtr)
    return cudaSuccess;
  State &st = state ();
  auto it = st.allocs.find ((uintptr_t) devPtr);
  if (it == st.allocs.end () || it->second.pinned)
    return fail (cudaErrorInvalidValue);
  st.used -= it->second.size;
  st.allocs.erase (it);
  free (devPtr);
  return cudaSuccess;
}

cudaError_t
cudaMallocHost (void **ptr, size_t size)
{
  LOCK;
  NEED_DEVICE;
  if (!ptr)
    return fail (cudaErrorInvalidValue);
  *ptr = nullptr;
  if (size == 0)
    return cudaSuccess;
  void *p = nullptr;
  if (posix_memalign (&p, 256, size) != 0)
    return fail (cudaErrorMemoryAllocation);
  state ().allocs[(uintptr_t) p] = Alloc{ size, true };
  *ptr = p;
  return cudaSuccess;
}

cudaError_t
cudaHostAlloc (void **ptr, size_t size, unsigned int flags)
{
  return cudaMallocHost (ptr, size);
}

cudaError_t
cudaFreeHost (void *ptr)
{
  LOCK;
  NEED_DEVICE;
  if (!ptr)
    return cudaSuccess;
  State &st = state ();
  auto it = st.allocs.find ((uintptr_t) ptr);
  if (it == st.allocs.end () || !it->second.pinned)
    return fail (cudaErrorInvalidValue);
  st.allocs.erase (it);
  free (ptr);
  return cudaSuccess;
}

cudaError_t
cudaMemGetInfo (size_t *free_bytes, size_t *total)
{
  LOCK;
  NEED_DEVICE;
  if (!free_bytes || !total)
    return fail (cudaErrorInvalidValue);
  *total = budget ();
  *free_bytes = budget () - state ().used;
  return cudaSuccess;
}

cudaError_t
cudaMemcpyAsync (void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                 cudaStream_t stream)
{
  LOCK;
  NEED_DEVICE;
  if (count == 0)
    return cudaSuccess;
  cudaError_t e = check_copy (dst, src, count, kind);
  if (e != cudaSuccess)
    return fail (e);
  return enqueue (stream, [dst, src, count] () { memmove (dst, src, count); });
}

cudaError_t
cudaMemcpy (void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
  LOCK;
  NEED_DEVICE;
  if (refuse_during_capture ())
    return fail (cudaErrorStreamCaptureUnsupported);
  return cudaMemcpyAsync (dst, src, count, kind, 0);
}

cudaError_t
cudaMemsetAsync (void *devPtr, int value, size_t count, cudaStream_t stream)
{
  LOCK;
  NEED_DEVICE;
  if (count == 0)
    return cudaSuccess;
  if (!in_allocation (devPtr, count, true))
    return fail (cudaErrorInvalidValue);
  return enqueue (stream, [devPtr, value, count] () { memset (devPtr, value, count); });
}

cudaError_t
cudaMemset (void *devPtr, int value, size_t count)
{
  LOCK;
  NEED_DEVICE;
  if (refuse_during_capture ())
    return fail (cudaErrorStreamCaptureUnsupported);
  return cudaMemsetAsync (devPtr, value, count, 0);
}

/* ---- streams ---- */

cudaError_t
cudaStreamCreateWithFlags (cudaStream_t *pStream, unsigned int flags)
{
  LOCK;
  NEED_DEVICE;
  if (!pStream || (flags & ~(unsigned) cudaStreamNonBlocking))
    return fail (cudaErrorInvalidValue);
  CUstream_st *s = new CUstream_st;
  s->flags = flags;
  state ().streams.insert (s);
  *pStream = s;
  return cudaSuccess;
}

cudaError_t
cudaStreamCreate (cudaStream_t *pStream)
{
  return cudaStreamCreateWithFlags (pStream, cudaStreamDefault);
}

cudaError_t
cudaStreamDestroy (cudaStream_t stream)
{
  LOCK;
  NEED_DEVICE;
  State &st = state ();
  if (!st.streams.count (stream))
    return fail (cudaErrorInvalidResourceHandle);
  st.streams.erase (stream);
  delete stream->graph;
  delete stream;
  return cudaSuccess;
}

/* A synchronising call on `stream`: refused (and the capture invalidated)
 * while the stream is capturing, as the real runtime does. */
static cudaError_t
sync_point (cudaStream_t stream, CUstream_st **out)
{
  CUstream_st *s = stream_of (stream);
  *out = s;
  if (!s)
    return fail (cudaErrorInvalidResourceHandle);
  if (s->capture != cudaStreamCaptureStatusNone)
    {
      s->capture = cudaStreamCaptureStatusInvalidated;
      return fail (cudaErrorStreamCaptureUnsupported);
    }
  return cudaSuccess;
}

cudaError_t
cudaStreamSynchronize (cudaStream_t stream)
{
  LOCK;
  NEED_DEVICE;
  CUstream_st *s;
  if (cudaError_t e = sync_point (stream, &s))
    return e;
  /* Synchronizing the legacy stream waits for the capturing streams too. */
  if (s == &state ().legacy && refuse_during_capture ())
    return fail (cudaErrorStreamCaptureUnsupported);
  return cudaSuccess;
}

cudaError_t
cudaStreamQuery (cudaStream_t stream)
{
  LOCK;
  NEED_DEVICE;
  CUstream_st *s;
  return sync_point (stream, &s);
}

/* ---- events ---- */

cudaError_t
cudaEventCreateWithFlags (cudaEvent_t *event, unsigned int flags)
{
  LOCK;
  NEED_DEVICE;
  if (!event)
    return fail (cudaErrorInvalidValue);
  CUevent_st *e = new CUevent_st;
  e->flags = flags;
  state ().events.insert (e);
  *event = e;
  return cudaSuccess;
}

cudaError_t
cudaEventCreate (cudaEvent_t *event)
{
  return cudaEventCreateWithFlags (event, cudaEventDefault);
}

cudaError_t
cudaEventRecord (cudaEvent_t event, cudaStream_t stream)
{
  LOCK;
  NEED_DEVICE;
  if (!state ().events.count (event))
    return fail (cudaErrorInvalidResourceHandle);
  return enqueue (
      stream,
      [event] () {
        event->recorded = true;
        event->when = std::chrono::steady_clock::now ();
      },
      false);
}

cudaError_t
cudaEventSynchronize (cudaEvent_t event)
{
  LOCK;
  NEED_DEVICE;
  if (!state ().events.count (event))
    return fail (cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t
cudaEventQuery (cudaEvent_t event)
{
  return cudaEventSynchronize (event);
}

cudaError_t
cudaEventElapsedTime (float *ms, cudaEvent_t start, cudaEvent_t end)
{
  LOCK;
  NEED_DEVICE;
  State &st = state ();
  if (!ms)
    return fail (cudaErrorInvalidValue);
  if (!st.events.count (start) || !st.events.count (end)
      || ((start->flags | end->flags) & cudaEventDisableTiming))
    return fail (cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded)
    return fail (cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli> (end->when - start->when).count ();
  return cudaSuccess;
}

cudaError_t
cudaEventDestroy (cudaEvent_t event)
{
  LOCK;
  NEED_DEVICE;
  if (!state ().events.erase (event))
    return fail (cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}

cudaError_t
cudaStreamWaitEvent (cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
  LOCK;
  NEED_DEVICE;
  if (!stream_of (stream) || !state ().events.count (event))
    return fail (cudaErrorInvalidResourceHandle);
  return cudaSuccess; /* everything before the record has already run */
}

/* ---- stream capture and graphs ---- */

cudaError_t
cudaStreamBeginCapture (cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
  LOCK;
  NEED_DEVICE;
  CUstream_st *s = stream_of (stream);
  if (!s)
    return fail (cudaErrorInvalidResourceHandle);
  if (s == &state ().legacy)
    return fail (cudaErrorStreamCaptureUnsupported);
  if ((unsigned) mode > cudaStreamCaptureModeRelaxed)
    return fail (cudaErrorInvalidValue);
  if (s->capture != cudaStreamCaptureStatusNone)
    return fail (cudaErrorIllegalState);
  s->capture = cudaStreamCaptureStatusActive;
  s->graph = new CUgraph_st;
  return cudaSuccess;
}

cudaError_t
cudaStreamEndCapture (cudaStream_t stream, cudaGraph_t *pGraph)
{
  LOCK;
  NEED_DEVICE;
  CUstream_st *s = stream_of (stream);
  if (!s)
    return fail (cudaErrorInvalidResourceHandle);
  if (!pGraph)
    return fail (cudaErrorInvalidValue);
  *pGraph = nullptr;
  if (s->capture == cudaStreamCaptureStatusNone)
    return fail (cudaErrorIllegalState);
  /* DS_CUDA_EMU_CAPTURE_FAIL=1: every capture ends invalidated, as when a
   * call the driver cannot record was made during it */
  const char *fail_env = getenv ("DS_CUDA_EMU_CAPTURE_FAIL");
  const bool ok = s->capture == cudaStreamCaptureStatusActive
                  && !(fail_env && strcmp (fail_env, "1") == 0);
  s->capture = cudaStreamCaptureStatusNone;
  if (!ok)
    {
      delete s->graph;
      s->graph = nullptr;
      return fail (cudaErrorStreamCaptureInvalidated);
    }
  *pGraph = s->graph;
  s->graph = nullptr;
  return cudaSuccess;
}

cudaError_t
cudaStreamIsCapturing (cudaStream_t stream, enum cudaStreamCaptureStatus *pCaptureStatus)
{
  LOCK;
  NEED_DEVICE;
  CUstream_st *s = stream_of (stream);
  if (!s)
    return fail (cudaErrorInvalidResourceHandle);
  if (!pCaptureStatus)
    return fail (cudaErrorInvalidValue);
  *pCaptureStatus = s->capture;
  return cudaSuccess;
}

cudaError_t
cudaGraphInstantiate (cudaGraphExec_t *pGraphExec, cudaGraph_t graph, unsigned long long flags)
{
  LOCK;
  NEED_DEVICE;
  if (!pGraphExec || !graph)
    return fail (cudaErrorInvalidValue);
  CUgraphExec_st *x = new CUgraphExec_st;
  x->nodes = graph->nodes; /* a copy: the graph may be destroyed first */
  *pGraphExec = x;
  return cudaSuccess;
}

cudaError_t
cudaGraphLaunch (cudaGraphExec_t graphExec, cudaStream_t stream)
{
  LOCK;
  NEED_DEVICE;
  if (!graphExec)
    return fail (cudaErrorInvalidValue);
  /* Shares the nodes, so a capture of this launch outlives the exec. */
  auto nodes = std::make_shared<std::vector<std::function<void ()>>> (graphExec->nodes);
  return enqueue (
      stream,
      [nodes] () {
        for (auto &n : *nodes)
          n ();
      },
      false);
}

cudaError_t
cudaGraphExecDestroy (cudaGraphExec_t graphExec)
{
  delete graphExec;
  return cudaSuccess;
}

cudaError_t
cudaGraphDestroy (cudaGraph_t graph)
{
  delete graph;
  return cudaSuccess;
}

/* ---- functions ---- */

cudaError_t
cudaFuncSetAttribute (const void *func, enum cudaFuncAttribute attr, int value)
{
  LOCK;
  NEED_DEVICE;
  if (!func)
    return fail (cudaErrorInvalidDeviceFunction);
  switch (attr)
    {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 || (size_t) value > kOptinSmemLimit)
        return fail (cudaErrorInvalidValue);
      state ().max_dyn_smem[func] = value;
      return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      if (value < -1 || value > 100)
        return fail (cudaErrorInvalidValue);
      return cudaSuccess;
    default:
      return fail (cudaErrorInvalidValue);
    }
}

} /* extern "C" */

extern "C" unsigned long long
ds_emu_work_count (void)
{
  return ds_emu::work_count.load ();
}

extern "C" void
ds_emu_fail_launch (unsigned long long n, cudaError_t e)
{
  ds_emu::launch_fault = e;
  ds_emu::launch_countdown = n;
}

extern "C" void
ds_emu_fault_kernel (unsigned long long n, cudaError_t e)
{
  ds_emu::kernel_fault = e;
  ds_emu::kernel_countdown = n;
}
