/* test-cuda-emu.h: the launchers of test-cuda-emu-kernels.cu. */
#pragma once

#include <cuda_runtime.h>

#define EMU_COLL_N 14

cudaError_t emu_test_index (int *out, dim3 grid, dim3 block, cudaStream_t s);
cudaError_t emu_test_reverse (const float *x, float *y, int blocks, int n);
cudaError_t emu_test_scan (const float *x, float *y, int *flags, int blocks, int n);
cudaError_t emu_test_order (unsigned *before, unsigned *after, unsigned *counter, int blocks, int n);
cudaError_t emu_test_racy (float *out, int blocks, int n);
cudaError_t emu_test_big_smem (float *y, size_t smem, int set_attr);
cudaError_t emu_test_collectives (float *out, int threads);
cudaError_t emu_test_mma_f16 (const void *A, const void *B, const float *C, float *D);
cudaError_t emu_test_mma_bf16 (const void *A, const void *B, const float *C, float *D);
cudaError_t emu_test_ldmatrix (int *out);
cudaError_t emu_test_cp_async (const float *src, float *out);
cudaError_t emu_test_atomics (float *sum, int *mx, unsigned long long *cnt);
cudaError_t emu_test_deadlock (int *p);
cudaError_t emu_test_early_exit (int *p);
cudaError_t emu_test_launch_config (dim3 grid, dim3 block);
cudaError_t emu_test_overflow (int *out, int depth);
