/* ds-vae.c: the AutoencoderKL encoder graph (see ds-vae.h, docs/models.md §3.2).
 *
 * Memory plan of one encode: two ping-pong buffers, each as large as the largest
 * activation ([B, c_i, H/2^i, W/2^i] maximised over levels i), hold a block's
 * input and output; a block's temporaries sit above them and are released before
 * the next block. The arena's peak is therefore 2 x max activation + the largest
 * block's temporaries, measured exactly by ds_vae_arena_bytes.
 * On a backend with graphs (CUDA) an encode is recorded once per (tensors,
 * arena position, shape) and replayed (ds-graph.h).
 */
#include "ds-vae.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-graph.h"
#include "ds-safetensors.h"

/* diffusers' Encoder passes resnet_eps=1e-6 to every block and the mid-block
 * attention's GroupNorm; it is not a config key. */
#define VAE_EPS 1e-6f

struct DsVae {
  DsVaeConfig cfg;
  DsWeights w;                 /* owns every tensor below */
  DsConvW conv_in;             /* [c0, in_channels, 3, 3] */
  DsResnetW *resnets;          /* [n_levels * layers_per_block], level-major */
  DsConvW down[DS_MAX_LEVELS]; /* [c_i, c_i, 3, 3]; levels 0 .. n_levels-2 */
  DsResnetW mid[2];            /* c_last -> c_last */
  bool has_attn;
  DsNormW attn_norm;           /* [c_last] */
  DsLinearW q, k, v, o;        /* [c_last, c_last] + bias [c_last] */
  DsNormW norm_out;            /* [c_last] */
  DsConvW conv_out;            /* [2 * latent, c_last, 3, 3] */
  DsConvW quant_conv;          /* [2 * latent, 2 * latent, 1, 1]; w.data NULL when unused */
  DsGraphCache graphs;         /* recorded encodes (ds-graph.h) */
};

/* ---- loading ---- */

static DsStatus
check_config (const DsVaeConfig *c, DsError *err)
{
  if (c->n_levels < 1 || c->n_levels > DS_MAX_LEVELS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "VAE config: %d entries in block_out_channels, expected 1 to %d",
                         c->n_levels, DS_MAX_LEVELS);
  if (c->in_channels < 1 || c->latent_channels < 1 || c->layers_per_block < 1
      || c->norm_num_groups < 1)
    return ds_error_set (err, DS_ERR_INVALID,
                         "VAE config: in_channels %d, latent_channels %d, layers_per_block %d "
                         "and norm_num_groups %d must all be positive",
                         c->in_channels, c->latent_channels, c->layers_per_block,
                         c->norm_num_groups);
  for (int i = 0; i < c->n_levels; i++)
    if (c->block_out_channels[i] < 1 || c->block_out_channels[i] % c->norm_num_groups)
      return ds_error_set (err, DS_ERR_INVALID,
                           "VAE config: block_out_channels[%d] = %d is not a positive "
                           "multiple of norm_num_groups %d",
                           i, c->block_out_channels[i], c->norm_num_groups);
  return DS_OK;
}

/* One attention projection: the current name if present, else the legacy one.
 * Legacy files from the original CompVis layout may store the projection as a
 * 1x1 convolution [C, C, 1, 1]; that is read as the same [C, C] matrix. */
static DsStatus
load_attn_linear (DsWeights *w, DsLinearW *out, int64_t c, const char *current,
                  const char *legacy, DsError *err)
{
  const char *base = "encoder.mid_block.attentions.0";
  char name[256];
  bool use_legacy = !ds_weights_has (w, "%s.%s.weight", base, current)
                    && ds_weights_has (w, "%s.%s.weight", base, legacy);
  snprintf (name, sizeof name, "%s.%s", base, use_legacy ? legacy : current);

  char full[512];
  snprintf (full, sizeof full, "%s%s.weight", w->prefix, name);
  const DsSafetensorsEntry *e = w->st ? ds_safetensors_find (w->st, full) : NULL;
  if (!e || e->ndim != 4)
    return ds_weights_linear (w, out, c, c, true, err, name);

  memset (out, 0, sizeof *out);
  DsStatus st = ds_weights_load (w, &out->w, 4, (int64_t[]){ c, c, 1, 1 }, err,
                                 "%s.weight", name);
  if (st == DS_OK)
    st = ds_weights_load (w, &out->b, 1, (int64_t[]){ c }, err, "%s.bias", name);
  if (st == DS_OK)
    out->w = ds_tensor_reshape (&out->w, 2, (int64_t[]){ c, c });
  return st;
}

static DsStatus
load_all (DsVae *vae, DsError *err)
{
  const DsVaeConfig *c = &vae->cfg;
  DsWeights *w = &vae->w;
  const int L2 = 2 * c->latent_channels;
  const int c_last = c->block_out_channels[c->n_levels - 1];
  char name[256];
  DsStatus st;

  if ((st = ds_weights_conv (w, &vae->conv_in, c->block_out_channels[0], c->in_channels, 3,
                             err, "encoder.conv_in")))
    return st;
  int c_prev = c->block_out_channels[0];
  for (int i = 0; i < c->n_levels; i++)
    {
      int c_out = c->block_out_channels[i];
      for (int r = 0; r < c->layers_per_block; r++)
        {
          snprintf (name, sizeof name, "encoder.down_blocks.%d.resnets.%d", i, r);
          DsResnetW *res = &vae->resnets[i * c->layers_per_block + r];
          if ((st = ds_resnet_load (w, res, r == 0 ? c_prev : c_out, c_out, 0, err, name)))
            return st;
        }
      if (i < c->n_levels - 1)
        {
          snprintf (name, sizeof name, "encoder.down_blocks.%d.downsamplers.0.conv", i);
          if ((st = ds_weights_conv (w, &vae->down[i], c_out, c_out, 3, err, name)))
            return st;
        }
      c_prev = c_out;
    }

  if ((st = ds_resnet_load (w, &vae->mid[0], c_last, c_last, 0, err,
                            "encoder.mid_block.resnets.0")))
    return st;
  if (vae->has_attn)
    {
      if ((st = ds_weights_norm (w, &vae->attn_norm, c_last, err,
                                 "encoder.mid_block.attentions.0.group_norm"))
          || (st = load_attn_linear (w, &vae->q, c_last, "to_q", "query", err))
          || (st = load_attn_linear (w, &vae->k, c_last, "to_k", "key", err))
          || (st = load_attn_linear (w, &vae->v, c_last, "to_v", "value", err))
          || (st = load_attn_linear (w, &vae->o, c_last, "to_out.0", "proj_attn", err)))
        return st;
    }
  if ((st = ds_resnet_load (w, &vae->mid[1], c_last, c_last, 0, err,
                            "encoder.mid_block.resnets.1"))
      || (st = ds_weights_norm (w, &vae->norm_out, c_last, err, "encoder.conv_norm_out"))
      || (st = ds_weights_conv (w, &vae->conv_out, L2, c_last, 3, err, "encoder.conv_out")))
    return st;
  if (c->use_quant_conv
      && (st = ds_weights_conv (w, &vae->quant_conv, L2, L2, 1, err, "quant_conv")))
    return st;
  return DS_OK;
}

static DsStatus
vae_create (const DsVaeConfig *cfg, const char *weights_path, uint64_t seed, DsBackend *be,
            DsVae **out, DsError *err)
{
  assert (cfg && be && out);
  *out = NULL;
  DsStatus st = check_config (cfg, err);
  if (st != DS_OK)
    return st;

  DsVae *vae = calloc (1, sizeof *vae);
  if (vae)
    vae->resnets = calloc ((size_t) (cfg->n_levels * cfg->layers_per_block),
                           sizeof *vae->resnets);
  if (!vae || !vae->resnets)
    {
      free (vae);
      return ds_error_set (err, DS_ERR_NOMEM, "VAE encoder: out of host memory");
    }
  vae->cfg = *cfg;
  vae->has_attn = cfg->mid_block_add_attention;

  DsSafetensors *file = NULL;
  if (!weights_path)
    ds_weights_init_random (&vae->w, be, seed, "");
  else if ((st = ds_safetensors_open (weights_path, &file, err)) != DS_OK)
    {
      ds_vae_free (vae);
      return ds_error_prefix (err, st, "VAE encoder");
    }
  else
    ds_weights_init (&vae->w, be, file, "");
  st = load_all (vae, err);
  /* Weights are copies (host f32 or device), so the mapping can go now. */
  vae->w.st = NULL;
  if (file)
    ds_safetensors_close (file);
  if (st != DS_OK)
    {
      ds_vae_free (vae);
      return ds_error_prefix (err, st, "VAE encoder");
    }
  *out = vae;
  return DS_OK;
}

DsStatus
ds_vae_load (const DsVaeConfig *cfg, const char *weights_path, DsBackend *be, DsVae **out,
             DsError *err)
{
  assert (weights_path);
  return vae_create (cfg, weights_path, 0, be, out, err);
}

DsStatus
ds_vae_new_random (const DsVaeConfig *cfg, uint64_t seed, DsBackend *be, DsVae **out,
                   DsError *err)
{
  return vae_create (cfg, NULL, seed, be, out, err);
}

void
ds_vae_free (DsVae *vae)
{
  if (!vae)
    return;
  ds_graph_cache_clear (&vae->graphs, vae->w.be);
  ds_weights_free (&vae->w);
  free (vae->resnets);
  free (vae);
}

int
ds_vae_factor (const DsVae *vae)
{
  return 1 << (vae->cfg.n_levels - 1);
}

int
ds_vae_latent_channels (const DsVae *vae)
{
  return vae->cfg.latent_channels;
}

/* ---- forward ---- */

/* A [n, c, h, w] view at the start of buffer `buf` (which may be larger). */
static DsTensor
view4 (const DsTensor *buf, int64_t n, int64_t c, int64_t h, int64_t w)
{
  DsTensor v = *buf;
  v.owned = false;
  v.ndim = 4;
  v.shape[0] = n;
  v.shape[1] = c;
  v.shape[2] = h;
  v.shape[3] = w;
  assert (ds_tensor_numel (&v) <= ds_tensor_numel (buf));
  return v;
}

/* Mid-block attention (docs/models.md §3.2), x [B,C,H,W] -> y [B,C,H,W]:
 * y = x + to_out(attn(q, k, v)) over the H*W tokens of GroupNorm(x), one head. */
static DsStatus
attn_forward (DsVae *vae, DsBackend *be, DsArena *a, const DsTensor *x, DsTensor *y,
              DsError *err)
{
  const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  const int64_t N = H * W;
  size_t mark = ds_arena_mark (a);
  DsTensor t0, t1, t2, t3, t4;
  DsStatus st;
  if ((st = ds_arena_act (a, &t0, err, 3, B, N, C))
      || (st = ds_arena_act (a, &t1, err, 3, B, N, C))
      || (st = ds_arena_act (a, &t2, err, 3, B, N, C))
      || (st = ds_arena_act (a, &t3, err, 3, B, N, C))
      || (st = ds_arena_act (a, &t4, err, 3, B, N, C)))
    return st;

  DsTensor norm = view4 (&t0, B, C, H, W);          /* GroupNorm(x), NCHW */
  DsTensor tok4 = view4 (&t1, B, H, W, C);           /* same, NHWC */
  DsTensor tok = ds_tensor_reshape (&tok4, 3, (int64_t[]){ B, N, C });
  DsTensor *q = &t2, *k = &t3, *v = &t4, *o = &t0, *proj = &t1;
  DsTensor proj4 = view4 (&t1, B, H, W, C);
  DsTensor back = view4 (&t2, B, C, H, W);
  const float scale = 1.0f / sqrtf ((float) C);

  if ((st = ds_group_norm (be, x, &vae->attn_norm.g, &vae->attn_norm.b,
                           vae->cfg.norm_num_groups, VAE_EPS, false, &norm, err))
      || (st = ds_permute (be, &norm, (int[]){ 0, 2, 3, 1 }, &tok4, err))
      || (st = ds_linear (be, &tok, &vae->q.w, ds_bias (&vae->q.b), q, err))
      || (st = ds_linear (be, &tok, &vae->k.w, ds_bias (&vae->k.b), k, err))
      || (st = ds_linear (be, &tok, &vae->v.w, ds_bias (&vae->v.b), v, err))
      || (st = ds_attention (be, q, k, v, 1, scale, false, o, NULL, err))
      || (st = ds_linear (be, o, &vae->o.w, ds_bias (&vae->o.b), proj, err))
      || (st = ds_permute (be, &proj4, (int[]){ 0, 3, 1, 2 }, &back, err))
      || (st = ds_add (be, &back, x, y, err)))
    return st;
  ds_arena_reset_to (a, mark);
  return DS_OK;
}

static DsStatus
resnet (DsVae *vae, DsBackend *be, DsArena *a, const DsResnetW *r, const DsTensor *x,
        DsTensor *y, DsError *err)
{
  size_t mark = ds_arena_mark (a);
  DsStatus st = ds_resnet_forward (be, a, r, x, NULL, vae->cfg.norm_num_groups, VAE_EPS, y,
                                   NULL, err);
  ds_arena_reset_to (a, mark); /* drops the increment ds_resnet_forward leaves */
  return st;
}

/* The graph; pixels and latent already checked. */
static DsStatus
encode (DsVae *vae, DsBackend *be, DsArena *a, const DsTensor *pixels, DsTensor *latent,
        DsError *err)
{
  const DsVaeConfig *c = &vae->cfg;
  const int64_t B = pixels->shape[0], H = pixels->shape[2], W = pixels->shape[3];
  const int64_t L = c->latent_channels;
  DsStatus st;

  int64_t max_numel = 0;
  for (int i = 0; i < c->n_levels; i++)
    {
      int64_t n = B * c->block_out_channels[i] * (H >> i) * (W >> i);
      if (n > max_numel)
        max_numel = n;
    }
  const int64_t lh = H >> (c->n_levels - 1), lw = W >> (c->n_levels - 1);
  if (B * 2 * L * lh * lw > max_numel)
    max_numel = B * 2 * L * lh * lw;

  DsTensor buf[2];
  if ((st = ds_arena_act (a, &buf[0], err, 1, max_numel))
      || (st = ds_arena_act (a, &buf[1], err, 1, max_numel)))
    return st;
  int p = 0; /* buf[p] holds the current activation */
  DsTensor x = view4 (&buf[0], B, c->block_out_channels[0], H, W), y;
  if ((st = ds_conv2d (be, pixels, &vae->conv_in.w, &vae->conv_in.b, 1, 1, 1, 1, 1, &x, err)))
    return st;

  int64_t h = H, w = W;
  for (int i = 0; i < c->n_levels; i++)
    {
      const int64_t c_out = c->block_out_channels[i];
      for (int r = 0; r < c->layers_per_block; r++)
        {
          y = view4 (&buf[1 - p], B, c_out, h, w);
          if ((st = resnet (vae, be, a, &vae->resnets[i * c->layers_per_block + r], &x, &y,
                            err)))
            return st;
          x = y, p = 1 - p;
        }
      if (i < c->n_levels - 1)
        {
          /* Downsample2D with padding 0: F.pad (0, 1, 0, 1), conv 3x3 stride 2. */
          h /= 2, w /= 2;
          y = view4 (&buf[1 - p], B, c_out, h, w);
          if ((st = ds_conv2d (be, &x, &vae->down[i].w, &vae->down[i].b, 2, 0, 0, 1, 1, &y,
                               err)))
            return st;
          x = y, p = 1 - p;
        }
    }

  const int64_t C = x.shape[1];
  y = view4 (&buf[1 - p], B, C, h, w);
  if ((st = resnet (vae, be, a, &vae->mid[0], &x, &y, err)))
    return st;
  x = y, p = 1 - p;
  if (vae->has_attn)
    {
      y = view4 (&buf[1 - p], B, C, h, w);
      if ((st = attn_forward (vae, be, a, &x, &y, err)))
        return st;
      x = y, p = 1 - p;
    }
  y = view4 (&buf[1 - p], B, C, h, w);
  if ((st = resnet (vae, be, a, &vae->mid[1], &x, &y, err)))
    return st;
  x = y, p = 1 - p;

  /* conv_out (SiLU (conv_norm_out (x))): the normed copy goes into the other
   * buffer, conv_out's moments back into this one. */
  y = view4 (&buf[1 - p], B, C, h, w);
  DsTensor moments = view4 (&buf[p], B, 2 * L, h, w);
  if ((st = ds_group_norm (be, &x, &vae->norm_out.g, &vae->norm_out.b, c->norm_num_groups,
                           VAE_EPS, true, &y, err))
      || (st = ds_conv2d (be, &y, &vae->conv_out.w, &vae->conv_out.b, 1, 1, 1, 1, 1,
                          &moments, err)))
    return st;
  if (vae->quant_conv.w.data)
    {
      DsTensor q = view4 (&buf[1 - p], B, 2 * L, h, w);
      if ((st = ds_conv2d (be, &moments, &vae->quant_conv.w, &vae->quant_conv.b, 1, 0, 0, 0,
                           0, &q, err)))
        return st;
      moments = q;
    }

  /* moments[b] = [mean (L channels), logvar (L channels)]: as [2B, L, h, w],
   * row 2b is item b's mean. */
  DsTensor halves = ds_tensor_reshape (&moments, 4, (int64_t[]){ 2 * B, L, h, w });
  for (int64_t b = 0; b < B; b++)
    {
      DsTensor mean = ds_tensor_slice0 (&halves, 2 * b, 1);
      DsTensor dst = ds_tensor_slice0 (latent, b, 1);
      if ((st = ds_scale (be, &mean, c->scaling_factor, &dst, err)))
        return st;
    }
  return DS_OK;
}

/* encode as a DsGraphBody, and what its recording bakes in (ds-graph.h). */
typedef struct {
  DsVae *vae;
  DsBackend *be;
  DsArena *a;
  const DsTensor *pixels;
  DsTensor *latent;
} Enc;

static DsStatus
encode_body (void *user, DsError *err)
{
  Enc *e = user;
  return encode (e->vae, e->be, e->a, e->pixels, e->latent, err);
}

typedef struct {
  const void *pixels, *latent, *arena_base;
  size_t arena_size, arena_mark;
  int64_t shape[4];
} GraphKey;
_Static_assert (sizeof (GraphKey) <= DS_GRAPH_KEY_BYTES, "a VAE graph key fits the cache");

/* Checks the caller's tensors; DS_ERR_INVALID names what is wrong. */
static DsStatus
check_io (const DsVae *vae, const DsTensor *pixels, const DsTensor *latent, DsError *err)
{
  const DsVaeConfig *c = &vae->cfg;
  const int64_t f = ds_vae_factor (vae);
  char s1[96], s2[96];
  if (pixels->ndim != 4 || pixels->shape[0] < 1 || pixels->shape[1] != c->in_channels
      || pixels->dtype != vae->w.be->act_dtype)
    return ds_error_set (err, DS_ERR_INVALID,
                         "VAE encoder: pixels are %s %s, expected %s [B, %d, H, W]",
                         ds_dtype_name (pixels->dtype),
                         ds_shape_str (pixels->ndim, pixels->shape, s1, sizeof s1),
                         ds_dtype_name (vae->w.be->act_dtype), c->in_channels);
  const int64_t B = pixels->shape[0], H = pixels->shape[2], W = pixels->shape[3];
  if (H < f || W < f || H % f || W % f)
    return ds_error_set (err, DS_ERR_INVALID,
                         "VAE encoder: image size %lldx%lld (WxH) is not a multiple of the "
                         "downsampling factor %lld",
                         (long long) W, (long long) H, (long long) f);
  const int64_t want[4] = { B, c->latent_channels, H / f, W / f };
  if (latent->ndim != 4 || latent->dtype != vae->w.be->act_dtype
      || memcmp (latent->shape, want, sizeof want) != 0)
    return ds_error_set (err, DS_ERR_INVALID, "VAE encoder: latent is %s %s, expected %s %s",
                         ds_dtype_name (latent->dtype),
                         ds_shape_str (latent->ndim, latent->shape, s1, sizeof s1),
                         ds_dtype_name (vae->w.be->act_dtype),
                         ds_shape_str (4, want, s2, sizeof s2));
  return DS_OK;
}

DsStatus
ds_vae_encode (DsVae *vae, DsBackend *be, DsArena *a, const DsTensor *pixels,
               DsTensor *latent, DsError *err)
{
  assert (vae && be && a && pixels && latent);
  DsStatus st = check_io (vae, pixels, latent, err);
  if (st != DS_OK)
    return st;
  size_t mark = ds_arena_mark (a);
  GraphKey k;
  memset (&k, 0, sizeof k); /* padding too: keys are compared byte for byte */
  k.pixels = pixels->data;
  k.latent = latent->data;
  k.arena_base = a->base;
  k.arena_size = a->size;
  k.arena_mark = mark;
  memcpy (k.shape, pixels->shape, sizeof k.shape);
  Enc e = { vae, be, a, pixels, latent };
  st = ds_graph_run (&vae->graphs, be, a, &k, sizeof k, encode_body, &e, err);
  ds_arena_reset_to (a, mark);
  return st;
}

size_t
ds_vae_arena_bytes (DsVae *vae, int64_t B, int64_t H, int64_t W)
{
  assert (vae);
  const int64_t f = ds_vae_factor (vae);
  if (B < 1 || H < f || W < f || H % f || W % f)
    return 0;
  DsBackend *null = ds_backend_null_new (vae->w.be);
  if (!null)
    return 0;
  DsArena a;
  ds_arena_init_measure (&a, vae->w.be);
  /* The caller's tensors get stand-in addresses below the mark, so the forward's
   * stand-ins never look like they overlap them. */
  DsTensor pixels, latent;
  size_t result = 0;
  if (ds_arena_act (&a, &pixels, NULL, 4, B, (int64_t) vae->cfg.in_channels, H, W) == DS_OK
      && ds_arena_act (&a, &latent, NULL, 4, B, (int64_t) vae->cfg.latent_channels, H / f,
                       W / f) == DS_OK)
    {
      size_t mark = ds_arena_mark (&a);
      if (ds_vae_encode (vae, null, &a, &pixels, &latent, NULL) == DS_OK)
        result = a.peak - mark;
    }
  ds_backend_free (null);
  return result;
}
