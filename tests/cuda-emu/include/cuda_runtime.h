/* cuda_runtime.h: the Diffscope CUDA emulator's stand-in for the CUDA runtime
 * header (tests/cuda-emu/README.md).
 *
 * Found before any real CUDA header in the emulated build (-Dcuda_emu=true),
 * so neither the toolkit nor a driver is needed. From C (ds-backend-cuda.c)
 * it gives the types, enums and prototypes of the supported runtime subset
 * with the real names and signatures; from C++ (the kernels, rewritten by
 * cu2cc.py) it also brings in the device side: qualifiers, built-in
 * variables, barriers, warp collectives, atomics and intrinsics
 * (ds-emu-device.h). Enum values are the real ones, so logs read the same.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define DS_CUDA_EMU_RUNTIME 1
#define CUDART_VERSION 12080
#define __CUDART_API_VERSION CUDART_VERSION

#ifdef __cplusplus
#define DS_EMU_DV(v) = v /* default arguments exist only in C++, as in the real header */
#define DS_EMU_EXTERN_C extern "C"
#define DS_EMU_BEGIN_C extern "C" {
#define DS_EMU_END_C }
#else
#define DS_EMU_DV(v)
#define DS_EMU_EXTERN_C
#define DS_EMU_BEGIN_C
#define DS_EMU_END_C
#endif

/* ---- vector types (vector_types.h in the toolkit) ---- */

#define DS_EMU_VEC2(T, N, A)                                                                  \
  typedef struct __attribute__ ((aligned (A))) N { T x, y; } N;                               \
  static inline N make_##N (T x, T y) { N v; v.x = x; v.y = y; return v; }
#define DS_EMU_VEC3(T, N)                                                                     \
  typedef struct N { T x, y, z; } N;                                                          \
  static inline N make_##N (T x, T y, T z) { N v; v.x = x; v.y = y; v.z = z; return v; }
#define DS_EMU_VEC4(T, N, A)                                                                  \
  typedef struct __attribute__ ((aligned (A))) N { T x, y, z, w; } N;                         \
  static inline N make_##N (T x, T y, T z, T w)                                               \
  {                                                                                           \
    N v; v.x = x; v.y = y; v.z = z; v.w = w; return v;                                        \
  }

DS_EMU_VEC2 (char, char2, 2)
DS_EMU_VEC4 (char, char4, 4)
DS_EMU_VEC2 (unsigned char, uchar2, 2)
DS_EMU_VEC4 (unsigned char, uchar4, 4)
DS_EMU_VEC2 (short, short2, 4)
DS_EMU_VEC4 (short, short4, 8)
DS_EMU_VEC2 (unsigned short, ushort2, 4)
DS_EMU_VEC4 (unsigned short, ushort4, 8)
DS_EMU_VEC2 (int, int2, 8)
DS_EMU_VEC3 (int, int3)
DS_EMU_VEC4 (int, int4, 16)
DS_EMU_VEC2 (unsigned int, uint2, 8)
DS_EMU_VEC3 (unsigned int, uint3)
DS_EMU_VEC4 (unsigned int, uint4, 16)
DS_EMU_VEC2 (long long, longlong2, 16)
DS_EMU_VEC2 (unsigned long long, ulonglong2, 16)
DS_EMU_VEC2 (float, float2, 8)
DS_EMU_VEC3 (float, float3)
DS_EMU_VEC4 (float, float4, 16)
DS_EMU_VEC2 (double, double2, 16)

#undef DS_EMU_VEC2
#undef DS_EMU_VEC3
#undef DS_EMU_VEC4

#ifdef __cplusplus
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3 (unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
    : x (vx), y (vy), z (vz) {}
  constexpr dim3 (uint3 v) : x (v.x), y (v.y), z (v.z) {}
  constexpr operator uint3 () const { return uint3{ x, y, z }; }
};
#else
typedef struct dim3 { unsigned int x, y, z; } dim3;
#endif

/* ---- enums (driver_types.h) ---- */

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorUnknown = 999,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};

enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00

/* ---- handles ---- */

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

#define cudaStreamLegacy ((cudaStream_t) 0x1)
#define cudaStreamPerThread ((cudaStream_t) 0x2)

/* The fields code commonly reads; the emulator fills all of them. */
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  size_t memPitch;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int clockRate;
  size_t totalConstMem;
  int major;
  int minor;
  size_t textureAlignment;
  int multiProcessorCount;
  int integrated;
  int canMapHostMemory;
  int concurrentKernels;
  int ECCEnabled;
  int pciBusID;
  int pciDeviceID;
  int memoryClockRate;
  int memoryBusWidth;
  int l2CacheSize;
  int maxThreadsPerMultiProcessor;
  int unifiedAddressing;
  size_t sharedMemPerMultiprocessor;
  int regsPerMultiprocessor;
  int managedMemory;
  int cooperativeLaunch;
  size_t sharedMemPerBlockOptin;
  int maxBlocksPerMultiProcessor;
  int reserved[64];
};
typedef struct cudaDeviceProp cudaDeviceProp;

/* ---- the runtime API subset (tests/cuda-emu/ds-emu.cc) ---- */

DS_EMU_BEGIN_C

cudaError_t cudaGetDeviceCount (int *count);
cudaError_t cudaSetDevice (int device);
cudaError_t cudaGetDevice (int *device);
cudaError_t cudaGetDeviceProperties (struct cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceSynchronize (void);
cudaError_t cudaDeviceReset (void);
cudaError_t cudaGetLastError (void);
cudaError_t cudaPeekAtLastError (void);
const char *cudaGetErrorString (cudaError_t error);
const char *cudaGetErrorName (cudaError_t error);
cudaError_t cudaRuntimeGetVersion (int *version);
cudaError_t cudaDriverGetVersion (int *version);

cudaError_t cudaMalloc (void **devPtr, size_t size);
cudaError_t cudaFree (void *devPtr);
cudaError_t cudaMallocHost (void **ptr, size_t size);
cudaError_t cudaHostAlloc (void **ptr, size_t size, unsigned int flags);
cudaError_t cudaFreeHost (void *ptr);
cudaError_t cudaMemGetInfo (size_t *free, size_t *total);
cudaError_t cudaMemcpy (void *dst, const void *src, size_t count, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync (void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                             cudaStream_t stream DS_EMU_DV (0));
cudaError_t cudaMemset (void *devPtr, int value, size_t count);
cudaError_t cudaMemsetAsync (void *devPtr, int value, size_t count,
                             cudaStream_t stream DS_EMU_DV (0));

cudaError_t cudaStreamCreate (cudaStream_t *pStream);
cudaError_t cudaStreamCreateWithFlags (cudaStream_t *pStream, unsigned int flags);
cudaError_t cudaStreamDestroy (cudaStream_t stream);
cudaError_t cudaStreamSynchronize (cudaStream_t stream);
cudaError_t cudaStreamQuery (cudaStream_t stream);

cudaError_t cudaEventCreate (cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags (cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventRecord (cudaEvent_t event, cudaStream_t stream DS_EMU_DV (0));
cudaError_t cudaEventSynchronize (cudaEvent_t event);
cudaError_t cudaEventQuery (cudaEvent_t event);
cudaError_t cudaEventElapsedTime (float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy (cudaEvent_t event);
cudaError_t cudaStreamWaitEvent (cudaStream_t stream, cudaEvent_t event,
                                 unsigned int flags DS_EMU_DV (0));

cudaError_t cudaStreamBeginCapture (cudaStream_t stream, enum cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture (cudaStream_t stream, cudaGraph_t *pGraph);
cudaError_t cudaStreamIsCapturing (cudaStream_t stream, enum cudaStreamCaptureStatus *pCaptureStatus);
cudaError_t cudaGraphInstantiate (cudaGraphExec_t *pGraphExec, cudaGraph_t graph,
                                  unsigned long long flags DS_EMU_DV (0));
cudaError_t cudaGraphLaunch (cudaGraphExec_t graphExec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy (cudaGraphExec_t graphExec);
cudaError_t cudaGraphDestroy (cudaGraph_t graph);

cudaError_t cudaFuncSetAttribute (const void *func, enum cudaFuncAttribute attr, int value);

/* Not CUDA: how many pieces of device work (kernel launches, GEMMs,
 * convolutions, copies, memsets; each node of a replayed graph) have run,
 * process-wide, for counting what a forward issues. */
unsigned long long ds_emu_work_count (void);

/* Not CUDA: injected faults, for the fault tests. ds_emu_fail_launch: the n-th
 * kernel launch from now (1: the next; eager or being captured) fails with e,
 * as a launch error does (not sticky: cudaGetLastError clears it).
 * ds_emu_fault_kernel: the n-th kernel run from now (eager or a node of a
 * replayed graph) faults instead of running, as a kernel's illegal address
 * does on a GPU: e is sticky, every later runtime call returns it and no work
 * runs again in this process. n = 0 disarms. */
void ds_emu_fail_launch (unsigned long long n, cudaError_t e);
void ds_emu_fault_kernel (unsigned long long n, cudaError_t e);

DS_EMU_END_C

#ifdef __cplusplus
/* The C++ conveniences of the real header. */
template <class T>
static inline cudaError_t
cudaMalloc (T **devPtr, size_t size)
{
  return ::cudaMalloc ((void **) (void *) devPtr, size);
}

template <class T>
static inline cudaError_t
cudaMallocHost (T **ptr, size_t size)
{
  return ::cudaMallocHost ((void **) (void *) ptr, size);
}

static inline cudaError_t
cudaEventCreate (cudaEvent_t *event, unsigned int flags)
{
  return ::cudaEventCreateWithFlags (event, flags);
}

template <class T>
static inline cudaError_t
cudaFuncSetAttribute (T *entry, enum cudaFuncAttribute attr, int value)
{
  return ::cudaFuncSetAttribute ((const void *) entry, attr, value);
}

#include "ds-emu-device.h"
#endif
