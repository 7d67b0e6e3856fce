/* ds-nn.h: building blocks shared by the model graphs, and graph planning.
 *
 * Planning: a model's forward is first run with ds_backend_null (which does no
 * arithmetic) on a measuring arena (which hands out placeholder pointers and
 * records the peak); the real arena is then reserved at exactly that size, so the
 * real forward never allocates. Callers: ds_arena_init_measure, run forward,
 * ds_arena_init (arena.peak), run forward again.
 *
 * Arena discipline inside a forward: allocate a block's outputs first, take a
 * mark, allocate its temporaries, and reset to the mark before returning.
 */
#pragma once

#include "ds-ops.h"
#include "ds-model-dir.h"
#include "ds-weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A backend that checks shapes (through ds_op_run) but computes nothing; it
 * claims the device and activation dtype of `like`, the backend of the model
 * being planned (its weights live there, and ds_op_run checks placement and
 * dtypes). */
DsBackend *ds_backend_null_new (const DsBackend *like);

/* An arena that only measures, for activations of `like` (its device and
 * act_dtype): tensors get non-NULL placeholder addresses that must never be
 * dereferenced; `peak` is the size a real arena needs. */
void ds_arena_init_measure (DsArena *a, const DsBackend *like);
static inline bool ds_arena_is_measuring (const DsArena *a) { return a->base == NULL && a->size == SIZE_MAX; }

/* Shorthand: an activation tensor of shape (d0, d1, ...) from the arena, in
 * the arena's activation dtype (f32 on the CPU, f16 or f32 on CUDA). */
DsStatus ds_arena_act (DsArena *a, DsTensor *t, DsError *err, int ndim, ...);

/* ResnetBlock2D (docs/models.md §1.5): GroupNorm+SiLU, conv3x3, (+ time projection),
 * GroupNorm+SiLU, conv3x3, (+ 1x1 shortcut when c_in != c_out), residual add. */
typedef struct {
  int c_in, c_out;
  DsNormW norm1, norm2;
  DsConvW conv1, conv2;
  DsConvW shortcut;   /* w.data NULL when c_in == c_out */
  DsLinearW time_proj; /* w.data NULL when the block takes no time embedding */
  /* time_proj.b holds time_emb_proj.bias + conv1.bias (summed at load), so
   * conv1 runs without its bias when the time embedding is added: the same
   * sum with one pass over conv1's output fewer. conv1.b stays for a forward
   * without a time embedding. */
  bool conv1_bias_in_time_proj;
} DsResnetW;

DsStatus ds_resnet_load (DsWeights *w, DsResnetW *r, int c_in, int c_out, int temb_dim,
                         DsError *err, const char *name);
/* x [B,c_in,H,W]; temb_act = SiLU(temb) [B,temb_dim] or NULL.
 * out [B,c_out,H,W] (preallocated); *increment receives conv2's output (the
 * residual branch before the add) as an arena tensor valid until the caller
 * resets the arena below it; pass NULL if not needed. */
DsStatus ds_resnet_forward (DsBackend *be, DsArena *a, const DsResnetW *r, const DsTensor *x,
                            const DsTensor *temb_act, int groups, float eps, DsTensor *out,
                            DsTensor *increment, DsError *err);

/* A CLIP encoder layer (docs/models.md §5.2 for the text tower, §7.2 for the
 * vision tower; the two differ only in the causal mask and the activation):
 *   x = x + out_proj(MHA(layer_norm1(x)));  x = x + fc2(act(fc1(layer_norm2(x))))
 * Weights under <prefix>encoder.layers.<index>. */
typedef struct {
  DsNormW ln1, ln2;          /* [C] */
  DsLinearW q, k, v, out;    /* [C, C] + bias [C] */
  DsLinearW fc1;             /* [I, C] + bias [I] */
  DsLinearW fc2;             /* [C, I] + bias [C] */
} DsClipLayerW;

DsStatus ds_clip_layer_load (DsWeights *w, DsClipLayerW *l, int64_t C, int64_t I, int index,
                             DsError *err);
/* x [B, T, C] in place; h, q, k, v [B, T, C] and f [B, T, I] are scratch. */
DsStatus ds_clip_layer_forward (DsBackend *be, const DsClipLayerW *l, int heads, float eps,
                                DsActivation act, bool causal, DsTensor *x, DsTensor *h,
                                DsTensor *q, DsTensor *k, DsTensor *v, DsTensor *f,
                                DsError *err);

#ifdef __cplusplus
}
#endif
