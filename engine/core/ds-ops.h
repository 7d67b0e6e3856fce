/* ds-ops.h: the engine's operations and the backend interface.
 *
 * One enum names every operation the models use. A backend (CPU here, CUDA in
 * kernels/) executes a DsOpCall: the op, its source tensors, its destination(s)
 * and its parameters. Every op has a plain CPU reference; the backend test runs
 * every op on every available backend and compares against it by NMSE.
 *
 * Callers use the typed wrappers below (ds_conv2d, ds_linear, ...): they build
 * the call, check shapes (assertions: shapes are the engine's own business) and
 * dispatch. Destinations are preallocated by the caller (usually from an arena)
 * with the documented shape, on the backend's device. dst may be exactly the
 * same buffer as a source for gelu, quick_gelu, silu, scale, add, mul,
 * softmax, rms_norm and rope, and as the residual of linear; no other aliasing
 * is allowed, and no op allows a partial overlap.
 * ds_op_run checks shapes, never contents: checks that read data (embedding
 * ids in range, set_rows' rows, attention_kv's position from the device) are
 * each backend's job.
 *
 * Layouts follow PyTorch: images NCHW, tokens [B, N, C], linear weights [out, in],
 * conv weights [out, in, kh, kw].
 *
 * Dtypes: every float tensor of one call (sources, weights, destinations) has
 * the same dtype, f32, f16 or bf16 — the call's dtype; only embedding ids are
 * i32. A backend states the dtype its models compute in (act_dtype: weights
 * are converted to it at load, arenas hand out activations in it); a backend
 * that cannot run an op in a call's dtype fails with DS_ERR_UNSUPPORTED. The
 * CPU backend computes in f32 only; the CUDA backend in f32 (strict, for
 * reference checks) and in f16/bf16 storage with f32 accumulation.
 * One exception, the mixed linear: DS_OP_LINEAR in f32 may take its weight w
 * in f16 or bf16 (x, b, r and y f32), on a backend with mixed_linear set (the
 * CPU's); the result is that of the f32 linear on w widened to f32 (exact),
 * up to the order of the f32 sums. Large language models keep their matrices
 * in the stored 16-bit type this way (half the memory, half the bytes a
 * memory-bound decode step streams); elsewhere it is DS_ERR_UNSUPPORTED.
 */
#pragma once

#include <stdbool.h>

#include "ds-tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  DS_OP_CONV2D,             /* x[B,Ci,H,W] * w[Co,Ci,kh,kw] + b[Co]? -> [B,Co,Ho,Wo] */
  DS_OP_GROUP_NORM,         /* x[B,C,...] -> same; per-group mean/var, affine, optional SiLU */
  DS_OP_LAYER_NORM,         /* x[..., C] -> same; over the last dim, affine */
  DS_OP_LINEAR,             /* x[..., K] . w[N,K]^T + b[N]? + r[..., N]? -> [..., N] */
  DS_OP_MATMUL,             /* a[Bt,M,K] (or ^T) . b[Bt,K,N] (or ^T) * alpha -> [Bt,M,N] */
  DS_OP_SOFTMAX,            /* over the last dim */
  DS_OP_ATTENTION,          /* q[B,Nq,H*D], k,v[B,Nk,H*D] -> o[B,Nq,H*D]; probs [B,H,Nq,Nk]? */
  DS_OP_GELU,               /* exact (erf) GELU */
  DS_OP_QUICK_GELU,         /* x * sigmoid(1.702 x) */
  DS_OP_SILU,               /* x * sigmoid(x) */
  DS_OP_GEGLU,              /* x[..., 2F] (+ b[2F]?) -> v * gelu(g) = [..., F], [v | g] = x + b */
  DS_OP_ADD,                /* a + b; b same shape, or b[last dim] (a bias; wins when both
                               readings fit), or b = a's leading dims, broadcast over the rest */
  DS_OP_MUL,                /* a * b, same shape */
  DS_OP_SCALE,              /* a * s */
  DS_OP_CONCAT,             /* a, b concatenated along `dim` */
  DS_OP_UPSAMPLE_NEAREST2X, /* [B,C,H,W] -> [B,C,2H,2W] */
  DS_OP_TIMESTEP_EMBEDDING, /* t[B] f32 -> [B, dim] sinusoidal */
  DS_OP_EMBEDDING,          /* ids[...] i32 gather rows of table[V,C] -> [..., C] */
  DS_OP_PERMUTE,            /* generic permutation of up to 4 dims */
  DS_OP_MEAN_HEADS,         /* x[B,H,...] -> y[B,1,...]: mean over dim 1 (attention maps' heads) */
  DS_OP_RMS_NORM,           /* x[..., C] -> same: g[C] * x / sqrt(mean(x^2) + eps) (LLaMA) */
  DS_OP_ROPE,               /* x[B,N,H*D], pos[N] i32 -> same: rotary, half-split rotate_half */
  DS_OP_ATTENTION_KV,       /* q[B,Nq,H*D] at positions q_pos.., k,v[B,Nk,Hkv*D] -> o[B,Nq,H*D];
                               causal, Hkv divides H (grouped keys/values), no probs;
                               q_pos from pos[1] i32 (src[3]) on the device when given */
  DS_OP_SET_ROWS,           /* x[N,C] -> rows pos[i] of y[R,C], pos[N] i32; other rows kept */
  DS_OP_COUNT
} DsOp;

const char *ds_op_name (DsOp op); /* "conv2d", "group_norm", ... */

typedef struct {
  DsOp op;
  const DsTensor *src[4]; /* src[3]: DS_OP_LINEAR's residual r, DS_OP_ATTENTION_KV's pos;
                             else NULL */
  DsTensor *dst;
  DsTensor *dst2; /* DS_OP_ATTENTION: optional softmax probabilities [B,H,Nq,Nk] */
  union {
    struct { int stride, pad_top, pad_left, pad_bottom, pad_right; } conv2d;
    struct { int groups; float eps; bool silu; } group_norm;
    struct { float eps; } layer_norm;
    struct { bool trans_a, trans_b; float alpha; } matmul;
    struct { int heads; float scale; bool causal; } attention;
    struct { float s; } scale;
    struct { int dim; } concat;
    struct { bool flip_sin_to_cos; float freq_shift; float max_period; } timestep;
    struct { int perm[DS_MAX_DIMS]; } permute;
    struct { float eps; } rms_norm;
    struct { int heads; float theta; } rope;
    struct { int heads, kv_heads; float scale; int64_t q_pos; } attention_kv;
  } p;
} DsOpCall;

typedef struct DsBackend DsBackend;
struct DsBackend {
  const char *name; /* "CPU", "CUDA · NVIDIA H100 ..." */
  DsDevice device;
  DsDType act_dtype; /* what its models compute in: weights and activations */
  bool mixed_linear; /* DS_OP_LINEAR takes f16/bf16 weights with f32 activations */
  bool planning;    /* ds_backend_null: checks shapes, computes nothing */
  bool (*supports) (DsBackend *be, DsOp op);
  DsStatus (*run) (DsBackend *be, const DsOpCall *call, DsError *err);
  /* Tensors on the backend's device. For the CPU these are host mallocs. */
  DsStatus (*tensor_alloc) (DsBackend *be, DsTensor *t, DsDType dtype, int ndim,
                            const int64_t *shape, DsError *err);
  void (*tensor_free) (DsBackend *be, DsTensor *t);
  DsStatus (*upload) (DsBackend *be, DsTensor *dst, const void *host, DsError *err);
  DsStatus (*download) (DsBackend *be, const DsTensor *src, void *host, DsError *err);
  DsStatus (*synchronize) (DsBackend *be, DsError *err);
  void (*destroy) (DsBackend *be);
  /* Optional (NULL where unsupported): between graph_begin and graph_end the
   * ops are recorded instead of run (no upload, download or synchronize in
   * between); graph_launch replays the recording on the same tensors, and
   * graph_free releases it. The CUDA backend maps these to CUDA graphs. */
  DsStatus (*graph_begin) (DsBackend *be, DsError *err);
  DsStatus (*graph_end) (DsBackend *be, void **graph, DsError *err);
  DsStatus (*graph_launch) (DsBackend *be, void *graph, DsError *err);
  void (*graph_free) (DsBackend *be, void *graph);
  /* Optional (NULL where unsupported), for DIFFSCOPE_PROFILE: timing ops on
   * the device without synchronising after each. timer_begin enqueues a start
   * marker and returns its slot, or -1 when every slot is in use (the caller
   * then reads them all and calls timer_reset); timer_end enqueues the slot's
   * end marker; timer_read waits for it and returns the milliseconds the
   * device spent between the two. The CUDA backend uses event pairs. */
  int (*timer_begin) (DsBackend *be);
  void (*timer_end) (DsBackend *be, int slot);
  double (*timer_read) (DsBackend *be, int slot);
  void (*timer_reset) (DsBackend *be);
  /* Counters for tests and benchmarks: ops issued through ds_op_run (those
   * being recorded included), recorded forwards launched by ds_graph_run,
   * recordings that failed on the device (ds-graph.h: those run eagerly). */
  uint64_t n_ops, n_graph_launches, n_graph_failures;
  /* The device failed in a way this process cannot recover from (a CUDA
   * kernel's fault loses the context): every later call fails at once. Set by
   * the backend; the session then moves to the CPU (ds-session.h). */
  bool lost;
  void *impl;
};

/* The CPU reference backend (fp32, OpenBLAS for GEMMs; mixed linears with
 * 16-bit weights). transfer full. */
DsBackend *ds_backend_cpu_new (DsError *err);
/* The vector kernels the CPU's mixed linears take now: "avx512", "avx2" or
 * "scalar", the widest this CPU runs unless the environment variable
 * DS_CPU_KERNELS ("avx2" or "scalar", read at each call) caps them, so that
 * tests and benchmarks can take the path of a CPU without AVX-512 or AVX2. */
const char *ds_cpu_mixed_kernels (void);
void ds_backend_free (DsBackend *be);

/* An activation arena of `size` bytes in the backend's memory, handing out
 * tensors in be->act_dtype. Out of memory names the size. Free it with
 * ds_backend_arena_free on the same backend. */
DsStatus ds_backend_arena_init (DsBackend *be, DsArena *a, size_t size, DsError *err);
void ds_backend_arena_free (DsBackend *be, DsArena *a);

/* Copies numel(t) f32 values from the host into t, a float tensor of any
 * dtype on the backend, rounding to t's dtype; and back, widening to f32. */
DsStatus ds_backend_upload_f32 (DsBackend *be, DsTensor *t, const float *host, DsError *err);
DsStatus ds_backend_download_f32 (DsBackend *be, const DsTensor *t, float *host, DsError *err);
/* Downloads t into *out, a new host f32 tensor of t's shape (freed again on failure). */
DsStatus ds_backend_download_new_f32 (DsBackend *be, const DsTensor *t, DsTensor *out,
                                      DsError *err);

/* True when DIFFSCOPE_PROFILE asks ds_op_run to time every op: on the device
 * where the backend has timers (no synchronisation per op), else by the wall
 * clock with a synchronisation after each op. The totals per op type are
 * printed to stderr when a backend is freed. */
bool ds_op_profiling (void);
/* The profile so far for `op` (its milliseconds and calls, every backend
 * together), after reading be's pending device timings. */
void ds_op_profile_read (DsBackend *be, DsOp op, double *ms, long *calls);
/* Starts the profile afresh (be's pending device timings are dropped too),
 * e.g. after a benchmark's warm-up. */
void ds_op_profile_reset (DsBackend *be);

/* Runs one call on `be` after checking shapes; the typed wrappers use it. */
DsStatus ds_op_run (DsBackend *be, const DsOpCall *call, DsError *err);

/* Typed wrappers. Each documents shapes; y is preallocated by the caller. */
DsStatus ds_conv2d (DsBackend *be, const DsTensor *x, const DsTensor *w,
                    const DsTensor *b, int stride, int pad_top, int pad_left,
                    int pad_bottom, int pad_right, DsTensor *y, DsError *err);
/* Output size of a convolution along one axis. */
int64_t ds_conv2d_out_size (int64_t in, int k, int stride, int pad_lo, int pad_hi);
DsStatus ds_group_norm (DsBackend *be, const DsTensor *x, const DsTensor *gamma,
                        const DsTensor *beta, int groups, float eps, bool silu,
                        DsTensor *y, DsError *err);
DsStatus ds_layer_norm (DsBackend *be, const DsTensor *x, const DsTensor *gamma,
                        const DsTensor *beta, float eps, DsTensor *y, DsError *err);
/* y[..., N] = x[..., K] . w[N, K]^T + b[N]; w may be f16/bf16 with the rest f32
 * where be->mixed_linear (see Dtypes above). */
DsStatus ds_linear (DsBackend *be, const DsTensor *x, const DsTensor *w,
                    const DsTensor *b, DsTensor *y, DsError *err);
/* y = x . w^T + b + r: a linear layer with its residual added in the same op
 * (on CUDA: r copied into y unless y is r, the bias added, then the GEMM
 * accumulates into y). r has y's shape and may be y itself. */
DsStatus ds_linear_add (DsBackend *be, const DsTensor *x, const DsTensor *w,
                        const DsTensor *b, const DsTensor *r, DsTensor *y, DsError *err);
DsStatus ds_matmul (DsBackend *be, const DsTensor *a, const DsTensor *b,
                    bool trans_a, bool trans_b, float alpha, DsTensor *y,
                    DsError *err);
DsStatus ds_softmax (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err);
/* probs may be NULL; when given it receives softmax(q k^T * scale) per head. */
DsStatus ds_attention (DsBackend *be, const DsTensor *q, const DsTensor *k,
                       const DsTensor *v, int heads, float scale, bool causal,
                       DsTensor *o, DsTensor *probs, DsError *err);
DsStatus ds_gelu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err);
DsStatus ds_quick_gelu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err);
DsStatus ds_silu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err);
DsStatus ds_geglu (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err);
/* GEGLU of x + b, b [2F]: the bias of the projection before it, added here
 * instead of in its own pass over the projection's [..., 2F] output. */
DsStatus ds_geglu_bias (DsBackend *be, const DsTensor *x, const DsTensor *b, DsTensor *y,
                        DsError *err);
DsStatus ds_add (DsBackend *be, const DsTensor *a, const DsTensor *b, DsTensor *y,
                 DsError *err);
DsStatus ds_mul (DsBackend *be, const DsTensor *a, const DsTensor *b, DsTensor *y,
                 DsError *err);
DsStatus ds_scale (DsBackend *be, const DsTensor *a, float s, DsTensor *y,
                   DsError *err);
DsStatus ds_concat (DsBackend *be, const DsTensor *a, const DsTensor *b, int dim,
                    DsTensor *y, DsError *err);
DsStatus ds_upsample_nearest2x (DsBackend *be, const DsTensor *x, DsTensor *y,
                                DsError *err);
DsStatus ds_timestep_embedding (DsBackend *be, const DsTensor *t,
                                bool flip_sin_to_cos, float freq_shift,
                                float max_period, DsTensor *y, DsError *err);
DsStatus ds_embedding (DsBackend *be, const DsTensor *ids, const DsTensor *table,
                       DsTensor *y, DsError *err);
DsStatus ds_permute (DsBackend *be, const DsTensor *x, const int *perm, DsTensor *y,
                     DsError *err);
/* y[b, 0, ...] = mean over h of x[b, h, ...], summed in f32 in order of h. */
DsStatus ds_mean_heads (DsBackend *be, const DsTensor *x, DsTensor *y, DsError *err);
/* LLaMA's RMSNorm (docs/models.md §7.4): y = g * (x * rsqrt(mean(x^2) + eps)) over the
 * last dim, the mean accumulated in at least f32 (double on the CPU). y may be x. */
DsStatus ds_rms_norm (DsBackend *be, const DsTensor *x, const DsTensor *g, float eps,
                      DsTensor *y, DsError *err);
/* Rotary position embedding as transformers' LLaMA applies it (§7.4): per head
 * of D = C / heads channels, inv_freq_i = theta^(-2i/D) (i < D/2, in f32),
 * angle = pos[n] * inv_freq_i, y[i] = x[i] cos - x[i + D/2] sin and
 * y[i + D/2] = x[i + D/2] cos + x[i] sin. x [B, N, heads*D], pos [N] i32 on the
 * backend (shared by the batch), D even. y may be x. */
DsStatus ds_rope (DsBackend *be, const DsTensor *x, const DsTensor *pos, int heads, float theta,
                  DsTensor *y, DsError *err);
/* Causal attention of Nq new queries over Nk cached keys/values (a decoder's KV
 * cache): query i sits at position q_pos + i and sees keys 0 .. q_pos + i
 * (q_pos + Nq <= Nk). q, o [B, Nq, heads*D]; k, v [B, Nk, kv_heads*D]; query
 * head h reads kv head h / (heads / kv_heads) (grouped-query attention; equal
 * counts for plain multi-head). Softmax in f32. */
DsStatus ds_attention_kv (DsBackend *be, const DsTensor *q, const DsTensor *k,
                          const DsTensor *v, int heads, int kv_heads, float scale,
                          int64_t q_pos, DsTensor *o, DsError *err);
/* ds_attention_kv of one query (Nq = 1) whose position is read when the op
 * runs, from pos [1] i32 on the backend, instead of being fixed when it is
 * issued: a recorded decode step (ds-graph.h) replays for every position,
 * with k, v the whole cache [B, capacity, kv_heads*D] (the rows past the
 * position are never read). The position must be in 0 .. Nk - 1: the CPU
 * returns DS_ERR_INVALID otherwise; a device cannot report it and clamps the
 * keys it reads to the Nk given. Results equal ds_attention_kv's at that
 * q_pos bit for bit. */
DsStatus ds_attention_kv_at (DsBackend *be, const DsTensor *q, const DsTensor *k,
                             const DsTensor *v, int heads, int kv_heads, float scale,
                             const DsTensor *pos, DsTensor *o, DsError *err);
/* y[pos[i], :] = x[i, :] for i < N, the other rows of y kept: x [..., C] of N
 * rows in all, pos [N] i32 on the backend, y [R, C], one dtype. Writes a decoder's new keys and values into its cache at positions
 * read when the op runs. A row outside 0 .. R - 1 is DS_ERR_INVALID on the
 * CPU; a device cannot report it and skips that row. Rows must be distinct
 * (otherwise which one lands is unspecified). */
DsStatus ds_set_rows (DsBackend *be, const DsTensor *x, const DsTensor *pos, DsTensor *y,
                      DsError *err);

#ifdef __cplusplus
}
#endif
