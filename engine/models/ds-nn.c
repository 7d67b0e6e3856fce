/* ds-nn.c: see ds-nn.h. */
#include "ds-nn.h"

#include <math.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool
null_supports (DsBackend *be, DsOp op)
{
  return true;
}

static DsStatus
null_run (DsBackend *be, const DsOpCall *call, DsError *err)
{
  return DS_OK;
}

static DsStatus
null_tensor_alloc (DsBackend *be, DsTensor *t, DsDType dtype, int ndim, const int64_t *shape,
                   DsError *err)
{
  *t = ds_tensor_make (dtype, ndim, shape);
  return DS_OK;
}

static void
null_tensor_free (DsBackend *be, DsTensor *t)
{
  memset (t, 0, sizeof *t);
}

static DsStatus
null_copy (DsBackend *be, DsTensor *dst, const void *host, DsError *err)
{
  return DS_OK;
}

static DsStatus
null_download (DsBackend *be, const DsTensor *src, void *host, DsError *err)
{
  return DS_OK;
}

static DsStatus
null_sync (DsBackend *be, DsError *err)
{
  return DS_OK;
}

static void
null_destroy (DsBackend *be)
{
  free (be);
}

DsBackend *
ds_backend_null_new (const DsBackend *like)
{
  DsBackend *be = calloc (1, sizeof *be);
  if (!be)
    return NULL;
  be->name = "null (planning)";
  be->planning = true;
  be->device = like->device;
  be->act_dtype = like->act_dtype;
  be->mixed_linear = like->mixed_linear;
  be->supports = null_supports;
  be->run = null_run;
  be->tensor_alloc = null_tensor_alloc;
  be->tensor_free = null_tensor_free;
  be->upload = null_copy;
  be->download = null_download;
  be->synchronize = null_sync;
  be->destroy = null_destroy;
  return be;
}

void
ds_arena_init_measure (DsArena *a, const DsBackend *like)
{
  memset (a, 0, sizeof *a);
  a->size = SIZE_MAX;
  a->device = like->device;
  a->dtype = like->act_dtype;
}

DsStatus
ds_arena_act (DsArena *a, DsTensor *t, DsError *err, int ndim, ...)
{
  int64_t shape[DS_MAX_DIMS];
  va_list ap;
  va_start (ap, ndim);
  for (int i = 0; i < ndim; i++)
    shape[i] = va_arg (ap, int64_t);
  va_end (ap);
  return ds_arena_tensor (a, t, a->dtype, ndim, shape, err);
}

DsStatus
ds_resnet_load (DsWeights *w, DsResnetW *r, int c_in, int c_out, int temb_dim, DsError *err,
                const char *name)
{
  memset (r, 0, sizeof *r);
  r->c_in = c_in;
  r->c_out = c_out;
  char n[256];
  DsStatus st;
#define SUB(s) (snprintf (n, sizeof n, "%s." s, name), n)
  if ((st = ds_weights_norm (w, &r->norm1, c_in, err, SUB ("norm1"))) != DS_OK
      || (st = ds_weights_conv (w, &r->conv1, c_out, c_in, 3, err, SUB ("conv1"))) != DS_OK
      || (st = ds_weights_norm (w, &r->norm2, c_out, err, SUB ("norm2"))) != DS_OK
      || (st = ds_weights_conv (w, &r->conv2, c_out, c_out, 3, err, SUB ("conv2"))) != DS_OK)
    return st;
  if (temb_dim > 0
      && (st = ds_weights_linear (w, &r->time_proj, c_out, temb_dim, true, err,
                                  SUB ("time_emb_proj"))) != DS_OK)
    return st;
  if (r->time_proj.w.data)
    {
      if ((st = ds_add (w->be, &r->time_proj.b, &r->conv1.b, &r->time_proj.b, err)) != DS_OK)
        return ds_error_prefix (err, st, "folding %s", SUB ("conv1.bias"));
      r->conv1_bias_in_time_proj = true;
    }
  if (c_in != c_out
      && (st = ds_weights_conv (w, &r->shortcut, c_out, c_in, 1, err, SUB ("conv_shortcut")))
           != DS_OK)
    return st;
#undef SUB
  return DS_OK;
}

DsStatus
ds_resnet_forward (DsBackend *be, DsArena *a, const DsResnetW *r, const DsTensor *x,
                   const DsTensor *temb_act, int groups, float eps, DsTensor *out,
                   DsTensor *increment, DsError *err)
{
  const int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
  DsTensor t1, t2, h, tp;
  DsStatus st;
  /* h is the branch output; the caller may read it as the increment, so it is
   * allocated before the mark and survives the reset. */
  if ((st = ds_arena_act (a, &h, err, 4, B, (int64_t) r->c_out, H, W)) != DS_OK)
    return st;
  size_t mark = ds_arena_mark (a);
  if ((st = ds_arena_act (a, &t1, err, 4, B, (int64_t) r->c_in, H, W)) != DS_OK
      || (st = ds_arena_act (a, &t2, err, 4, B, (int64_t) r->c_out, H, W)) != DS_OK)
    return st;

  const bool with_temb = r->time_proj.w.data && temb_act;
  const DsTensor *b1 = with_temb && r->conv1_bias_in_time_proj ? NULL : &r->conv1.b;
  if ((st = ds_group_norm (be, x, &r->norm1.g, &r->norm1.b, groups, eps, true, &t1, err))
      || (st = ds_conv2d (be, &t1, &r->conv1.w, b1, 1, 1, 1, 1, 1, &t2, err)))
    return st;
  if (with_temb)
    {
      if ((st = ds_arena_act (a, &tp, err, 2, B, (int64_t) r->c_out))
          || (st = ds_linear (be, temb_act, &r->time_proj.w, &r->time_proj.b, &tp, err))
          || (st = ds_add (be, &t2, &tp, &t2, err)))
        return st;
    }
  /* t1 is free again: reuse it for norm2's output (c_out channels fit when
   * c_out <= c_in; otherwise take a new one). */
  DsTensor t3 = ds_tensor_make (t1.dtype, 4, (int64_t[]){ B, r->c_out, H, W });
  t3.device = t1.device;
  t3.data = t1.data;
  if (r->c_out > r->c_in && (st = ds_arena_act (a, &t3, err, 4, B, (int64_t) r->c_out, H, W)))
    return st;
  if ((st = ds_group_norm (be, &t2, &r->norm2.g, &r->norm2.b, groups, eps, true, &t3, err))
      || (st = ds_conv2d (be, &t3, &r->conv2.w, &r->conv2.b, 1, 1, 1, 1, 1, &h, err)))
    return st;
  if (r->shortcut.w.data)
    {
      if ((st = ds_conv2d (be, x, &r->shortcut.w, &r->shortcut.b, 1, 0, 0, 0, 0, &t2, err))
          || (st = ds_add (be, &t2, &h, out, err)))
        return st;
    }
  else if ((st = ds_add (be, x, &h, out, err)))
    return st;
  ds_arena_reset_to (a, mark);
  if (increment)
    *increment = h;
  return DS_OK;
}

DsStatus
ds_clip_layer_load (DsWeights *w, DsClipLayerW *l, int64_t C, int64_t I, int index,
                    DsError *err)
{
  char base[128], n[192];
  snprintf (base, sizeof base, "encoder.layers.%d", index);
  DsStatus st;
#define SUB(s) (snprintf (n, sizeof n, "%s." s, base), n)
  if ((st = ds_weights_norm (w, &l->ln1, C, err, SUB ("layer_norm1")))
      || (st = ds_weights_linear (w, &l->q, C, C, true, err, SUB ("self_attn.q_proj")))
      || (st = ds_weights_linear (w, &l->k, C, C, true, err, SUB ("self_attn.k_proj")))
      || (st = ds_weights_linear (w, &l->v, C, C, true, err, SUB ("self_attn.v_proj")))
      || (st = ds_weights_linear (w, &l->out, C, C, true, err, SUB ("self_attn.out_proj")))
      || (st = ds_weights_norm (w, &l->ln2, C, err, SUB ("layer_norm2")))
      || (st = ds_weights_linear (w, &l->fc1, I, C, true, err, SUB ("mlp.fc1")))
      || (st = ds_weights_linear (w, &l->fc2, C, I, true, err, SUB ("mlp.fc2"))))
    return st;
#undef SUB
  return DS_OK;
}

DsStatus
ds_clip_layer_forward (DsBackend *be, const DsClipLayerW *l, int heads, float eps,
                       DsActivation act, bool causal, DsTensor *x, DsTensor *h, DsTensor *q,
                       DsTensor *k, DsTensor *v, DsTensor *f, DsError *err)
{
  const float scale = 1.0f / sqrtf ((float) (x->shape[x->ndim - 1] / heads));
  DsStatus st;
  if ((st = ds_layer_norm (be, x, &l->ln1.g, &l->ln1.b, eps, h, err))
      || (st = ds_linear (be, h, &l->q.w, ds_bias (&l->q.b), q, err))
      || (st = ds_linear (be, h, &l->k.w, ds_bias (&l->k.b), k, err))
      || (st = ds_linear (be, h, &l->v.w, ds_bias (&l->v.b), v, err))
      || (st = ds_attention (be, q, k, v, heads, scale, causal, h, NULL, err))
      || (st = ds_linear_add (be, h, &l->out.w, ds_bias (&l->out.b), x, x, err)))
    return st;
  if ((st = ds_layer_norm (be, x, &l->ln2.g, &l->ln2.b, eps, h, err))
      || (st = ds_linear (be, h, &l->fc1.w, ds_bias (&l->fc1.b), f, err)))
    return st;
  st = act == DS_ACT_QUICK_GELU ? ds_quick_gelu (be, f, f, err) : ds_gelu (be, f, f, err);
  if (st || (st = ds_linear_add (be, f, &l->fc2.w, ds_bias (&l->fc2.b), x, x, err)))
    return st;
  return DS_OK;
}
