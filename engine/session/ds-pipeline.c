/* ds-pipeline.c: see ds-pipeline.h. */
#include "ds-pipeline.h"
#include "ds-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds-nn.h"
#include "ds-text-encoder.h"
#include "ds-unet.h"
#include "ds-vae.h"

struct DsPipeline {
  DsModelDir dir;
  bool untrained, builtin;
  char label[DS_PATH_MAX + 64];
  DsBackend *be;
  DsTokenizer *tok;
  DsVae *vae;
  DsTextEncoder *te;
  DsUnet *unet;
  DsSchedule sched;
  DsArena arena;
  DsProbeList probes;
  int probes_size;
  /* host caches: the clean latent of the last image, the context of the last prompts */
  uint64_t latent_key;
  float *latent; /* [C,h,w] */
  int32_t ctx_ids[2 * DS_CLIP_CONTEXT];
  float *ctx;    /* [2,77,X] */
};

/* The untrained test fixture: SD 2.x's topology and conventions at small widths. */
static void
untrained_configs (DsModelDir *d)
{
  DsUnetConfig u = {
    .in_channels = 4, .out_channels = 4, .sample_size = 64, .n_levels = 4,
    .block_out_channels = { 32, 64, 128, 128 },
    .down_block_types = { DS_BLOCK_CROSS_ATTN_DOWN, DS_BLOCK_CROSS_ATTN_DOWN,
                          DS_BLOCK_CROSS_ATTN_DOWN, DS_BLOCK_DOWN },
    .up_block_types = { DS_BLOCK_UP, DS_BLOCK_CROSS_ATTN_UP, DS_BLOCK_CROSS_ATTN_UP,
                        DS_BLOCK_CROSS_ATTN_UP },
    .layers_per_block = 2, .heads = { 1, 2, 4, 4 }, .cross_attention_dim = 64,
    .use_linear_projection = true, .norm_num_groups = 16, .norm_eps = 1e-5f,
    .flip_sin_to_cos = true, .freq_shift = 0, .downsample_padding = 1,
    .mid_block_scale_factor = 1, .transformer_layers_per_block = 1, .heat_divisor = DS_UNET_HEAT_DIVISOR_DEFAULT,
  };
  DsVaeConfig v = {
    .in_channels = 3, .latent_channels = 4, .n_levels = 4,
    .block_out_channels = { 32, 64, 64, 64 }, .layers_per_block = 2, .norm_num_groups = 16,
    .scaling_factor = 0.18215f, .use_quant_conv = true, .mid_block_add_attention = true,
  };
  DsTextEncoderConfig t = {
    .vocab_size = 49408, .hidden_size = 64, .intermediate_size = 256, .num_attention_heads = 4,
    .num_hidden_layers = 2, .max_position_embeddings = 77, .hidden_act = DS_ACT_GELU,
    .layer_norm_eps = 1e-5f,
  };
  DsSchedulerConfig s = { 1000, 0.00085f, 0.012f, true };
  d->unet = u;
  d->vae = v;
  d->text = t;
  d->scheduler = s;
  snprintf (d->pad_token, sizeof d->pad_token, "!");
}

static DsStatus
finish_open (DsPipeline *p, DsError *err)
{
  DsStatus st;
  if ((st = ds_tokenizer_open (p->dir.vocab_path, p->dir.merges_path, p->dir.pad_token, &p->tok,
                               err)))
    return st;
  if ((st = ds_schedule_init (&p->sched, &p->dir.scheduler, err)))
    return st;
  return DS_OK;
}

DsStatus
ds_pipeline_open (const char *model_dir, DsBackend *be, DsPipeline **out, DsError *err)
{
  *out = NULL;
  DsPipeline *p = calloc (1, sizeof *p);
  if (!p)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory opening %s", model_dir);
  p->be = be;
  DsStatus st;
  if ((st = ds_model_dir_open (model_dir, &p->dir, err))
      || (st = finish_open (p, err))
      || (st = ds_vae_load (&p->dir.vae, p->dir.vae_weights, be, &p->vae, err))
      || (st = ds_text_encoder_load (&p->dir.text, p->dir.text_encoder_weights, be, &p->te, err))
      || (st = ds_unet_load (&p->dir.unet, p->dir.unet_weights, be, &p->unet, err)))
    {
      ds_pipeline_free (p);
      return st;
    }
  const DsUnetConfig *u = &p->dir.unet;
  snprintf (p->label, sizeof p->label, "SD %s (%s)", u->use_linear_projection ? "2.x" : "1.x",
            model_dir);
  *out = p;
  return DS_OK;
}

DsStatus
ds_pipeline_open_random (const DsModelDir *configs, uint64_t seed, const char *data_dir,
                         DsBackend *be, DsPipeline **out, DsError *err)
{
  *out = NULL;
  DsPipeline *p = calloc (1, sizeof *p);
  if (!p)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory opening a random-weight model");
  p->be = be;
  p->untrained = true;
  p->dir.unet = configs->unet;
  p->dir.vae = configs->vae;
  p->dir.text = configs->text;
  p->dir.scheduler = configs->scheduler;
  snprintf (p->dir.pad_token, sizeof p->dir.pad_token, "%s", configs->pad_token);
  snprintf (p->dir.root, sizeof p->dir.root, "(random weights)");
  snprintf (p->dir.vocab_path, sizeof p->dir.vocab_path, "%s/clip-tokenizer/vocab.json", data_dir);
  snprintf (p->dir.merges_path, sizeof p->dir.merges_path, "%s/clip-tokenizer/merges.txt",
            data_dir);
  DsStatus st;
  if ((st = finish_open (p, err))
      || (st = ds_vae_new_random (&p->dir.vae, seed + 1, be, &p->vae, err))
      || (st = ds_text_encoder_new_random (&p->dir.text, seed + 2, be, &p->te, err))
      || (st = ds_unet_new_random (&p->dir.unet, seed + 3, be, &p->unet, err)))
    {
      ds_pipeline_free (p);
      return st;
    }
  snprintf (p->label, sizeof p->label, "SD %s configuration, random weights (untrained, seed %llu)",
            p->dir.unet.use_linear_projection ? "2.x" : "1.x", (unsigned long long) seed);
  *out = p;
  return DS_OK;
}

DsStatus
ds_pipeline_open_untrained (uint64_t seed, const char *data_dir, DsBackend *be, DsPipeline **out,
                            DsError *err)
{
  DsModelDir *d = calloc (1, sizeof *d);
  if (!d)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory opening the untrained model");
  untrained_configs (d);
  DsStatus st = ds_pipeline_open_random (d, seed, data_dir, be, out, err);
  free (d);
  if (st)
    return ds_error_prefix (err, st, "untrained model");
  snprintf ((*out)->dir.root, sizeof (*out)->dir.root, "(untrained test model)");
  snprintf ((*out)->label, sizeof (*out)->label, "tiny SD 2.x, random weights (untrained, seed %llu)",
            (unsigned long long) seed);
  return DS_OK;
}

void
ds_pipeline_builtin_dir (const char *data_dir, char *buf, size_t n)
{
  snprintf (buf, n, "%s/%s", data_dir, DS_BUILTIN_MODEL_SUBDIR);
}

DsStatus
ds_pipeline_open_builtin (const char *data_dir, DsBackend *be, DsPipeline **out, DsError *err)
{
  char dir[DS_PATH_MAX];
  ds_pipeline_builtin_dir (data_dir, dir, sizeof dir);
  DsStatus st = ds_pipeline_open (dir, be, out, err);
  if (st)
    return ds_error_prefix (err, st, "the built-in model (%s)", DS_BUILTIN_MODEL_LABEL);
  (*out)->builtin = true;
  snprintf ((*out)->label, sizeof (*out)->label, "%s", DS_BUILTIN_MODEL_LABEL);
  return DS_OK;
}

void
ds_pipeline_free (DsPipeline *p)
{
  if (!p)
    return;
  ds_unet_free (p->unet);
  ds_text_encoder_free (p->te);
  ds_vae_free (p->vae);
  ds_tokenizer_free (p->tok);
  ds_schedule_free (&p->sched);
  ds_backend_arena_free (p->be, &p->arena);
  ds_probe_list_free (&p->probes);
  free (p->latent);
  free (p->ctx);
  free (p);
}

const char *
ds_pipeline_label (const DsPipeline *p)
{
  return p->label;
}

bool
ds_pipeline_is_untrained (const DsPipeline *p)
{
  return p->untrained;
}

bool
ds_pipeline_is_builtin (const DsPipeline *p)
{
  return p->builtin;
}

int
ds_pipeline_native_size (const DsPipeline *p)
{
  return ds_model_dir_native_size (&p->dir);
}

int
ds_pipeline_heat_side (const DsPipeline *p, int size)
{
  /* 0: a config made in code rather than parsed (tests); the parser's default */
  const int div = p->dir.unet.heat_divisor > 0 ? p->dir.unet.heat_divisor
                                                   : DS_UNET_HEAT_DIVISOR_DEFAULT;
  return ds_pipeline_latent_shape (p, size).h / div;
}

const DsModelDir *
ds_pipeline_model (const DsPipeline *p)
{
  return &p->dir;
}

const DsTokenizer *
ds_pipeline_tokenizer (const DsPipeline *p)
{
  return p->tok;
}

DsStatus
ds_pipeline_probes (DsPipeline *p, int size, const DsProbeList **out, DsError *err)
{
  if (size <= 0 || size % 64)
    return ds_error_set (err, DS_ERR_INVALID, "image size %d must be a positive multiple of 64",
                         size);
  if (p->probes_size != size)
    {
      ds_probe_list_free (&p->probes);
      p->probes_size = 0;
      int f = ds_vae_factor (p->vae);
      DsStatus st = ds_probe_list_build (&p->dir.unet, size / f, size / f, DS_CLIP_CONTEXT,
                                         &p->probes, err);
      if (st)
        return st;
      p->probes_size = size;
    }
  *out = &p->probes;
  return DS_OK;
}

DsLatentShape
ds_pipeline_latent_shape (const DsPipeline *p, int size)
{
  int f = ds_vae_factor (p->vae);
  return (DsLatentShape){ ds_vae_latent_channels (p->vae), size / f, size / f };
}

int
ds_pipeline_context_width (const DsPipeline *p)
{
  return (int) ds_text_encoder_hidden_size (p->te);
}

DsStatus
ds_pipeline_unet_timestep (const DsPipeline *p, int t, DsTimestepConvention conv, int *out,
                           DsError *err)
{
  return ds_schedule_unet_timestep (&p->sched, t, conv, out, err);
}

/* Makes the arena at least `bytes` large (between requests, never inside one). */
static DsStatus
arena_reserve (DsPipeline *p, size_t bytes, DsError *err)
{
  if (p->arena.size >= bytes)
    {
      ds_arena_reset (&p->arena);
      return DS_OK;
    }
  ds_backend_arena_free (p->be, &p->arena);
  return ds_backend_arena_init (p->be, &p->arena, bytes, err);
}

typedef struct {
  DsPipeline *p;
  DsFeatures *out;
} EmitCtx;

static DsStatus
emit_copy (void *user, int index, const DsTensor *t, DsError *err)
{
  EmitCtx *c = user;
  DsTensor *dst = &c->out->values[index];
  DsStatus st = ds_tensor_alloc (dst, DS_DTYPE_F32, t->ndim, t->shape, err);
  if (st)
    return st;
  return ds_backend_download_f32 (c->p->be, t, ds_tensor_f32 (dst), err);
}

/* Host tensor -> backend tensor in the arena. */
static DsStatus
to_backend (DsPipeline *p, const DsTensor *host, DsTensor *dev, DsError *err)
{
  DsStatus st = ds_arena_tensor (&p->arena, dev, p->arena.dtype, host->ndim, host->shape, err);
  return st ? st : ds_backend_upload_f32 (p->be, dev, ds_tensor_f32 (host), err);
}

DsStatus
ds_pipeline_encode_image (DsPipeline *p, const DsImage *im, int size, DsImageFit fit,
                          float *latent, double *ms_image, double *ms_vae, DsError *err)
{
  if (size <= 0 || size % 64)
    return ds_error_set (err, DS_ERR_INVALID, "image size %d must be a positive multiple of 64",
                         size);
  if (!im || !im->rgb)
    return ds_error_set (err, DS_ERR_INVALID, "no image to encode");
  double t0 = ds_now_ms ();
  DsTensor pixels, px, x0;
  DsStatus st = ds_image_to_model_input (im, size, fit, &pixels, err);
  if (st)
    return st;
  if (ms_image)
    *ms_image = ds_now_ms () - t0;
  t0 = ds_now_ms ();
  const int f = ds_vae_factor (p->vae), C = ds_vae_latent_channels (p->vae);
  const int64_t h = size / f, w = size / f;
  size_t need = ds_vae_arena_bytes (p->vae, 1, size, size);
  size_t io = ds_tensor_nbytes (&pixels) + (size_t) (C * h * w) * 4 + 256;
  if (!need)
    st = ds_error_set (err, DS_ERR_INVALID, "could not plan the VAE for a %d image", size);
  if (!st && !(st = arena_reserve (p, need + io, err)) && !(st = to_backend (p, &pixels, &px, err))
      && !(st = ds_arena_act (&p->arena, &x0, err, 4, (int64_t) 1, (int64_t) C, h, w))
      && !(st = ds_vae_encode (p->vae, p->be, &p->arena, &px, &x0, err)))
    st = ds_backend_download_f32 (p->be, &x0, latent, err);
  ds_tensor_free (&pixels);
  if (!st && ms_vae)
    *ms_vae = ds_now_ms () - t0;
  return st;
}

/* The clean latent of the request's image [C,h,w] on the host, from the cache
 * when the same pixels were encoded at the same size and fit. */
static DsStatus
latent_for (DsPipeline *p, const DsFeatureRequest *req, DsFeatures *out, DsError *err)
{
  const DsImage *im = req->image;
  if (!im)
    return ds_error_set (err, DS_ERR_INVALID, "the request has neither an image nor a latent");
  uint64_t key = ds_fnv1a (DS_FNV1A_OFFSET, im->rgb, (size_t) im->width * im->height * 3);
  int meta[4] = { im->width, im->height, req->size, (int) req->fit };
  key = ds_fnv1a (key, meta, sizeof meta);
  if (p->latent && p->latent_key == key)
    {
      out->cached_latent = true;
      return DS_OK;
    }
  const DsLatentShape ls = ds_pipeline_latent_shape (p, req->size);
  free (p->latent);
  p->latent = malloc ((size_t) ls.channels * ls.h * ls.w * sizeof (float));
  p->latent_key = 0;
  DsStatus st = p->latent ? ds_pipeline_encode_image (p, im, req->size, req->fit, p->latent,
                                                      &out->ms_image, &out->ms_vae, err)
                          : ds_error_set (err, DS_ERR_NOMEM, "out of memory for the latent");
  if (st)
    {
      free (p->latent);
      p->latent = NULL;
      return st;
    }
  p->latent_key = key;
  return DS_OK;
}

DsStatus
ds_pipeline_encode_text (DsPipeline *p, const DsTokens *uncond, const DsTokens *cond, float *out,
                         DsError *err)
{
  const int64_t X = ds_text_encoder_hidden_size (p->te);
  int32_t ids[2 * DS_CLIP_CONTEXT];
  memcpy (ids, uncond->ids, sizeof uncond->ids);
  memcpy (ids + DS_CLIP_CONTEXT, cond->ids, sizeof cond->ids);
  size_t need = ds_text_encoder_arena_bytes (p->te, 2);
  DsTensor ctx;
  DsStatus st = DS_OK;
  if (!need)
    st = ds_error_set (err, DS_ERR_NOMEM, "out of memory for the text encoder");
  if (!st && !(st = arena_reserve (p, need + (size_t) (2 * DS_CLIP_CONTEXT * X) * 4 + 64, err))
      && !(st = ds_arena_act (&p->arena, &ctx, err, 3, (int64_t) 2, (int64_t) DS_CLIP_CONTEXT, X))
      && !(st = ds_text_encoder_forward (p->te, p->be, &p->arena, ids, 2, &ctx, err)))
    st = ds_backend_download_f32 (p->be, &ctx, out, err);
  return st;
}

/* The text context [2,77,X] = [uncond, cond] on the host, cached per prompt pair. */
static DsStatus
context_for (DsPipeline *p, DsFeatures *out, DsError *err)
{
  if (p->ctx && !memcmp (p->ctx_ids, out->uncond.ids, sizeof out->uncond.ids)
      && !memcmp (p->ctx_ids + DS_CLIP_CONTEXT, out->cond.ids, sizeof out->cond.ids))
    {
      out->cached_text = true;
      return DS_OK;
    }
  double t0 = ds_now_ms ();
  const int64_t X = ds_text_encoder_hidden_size (p->te);
  free (p->ctx);
  p->ctx = malloc ((size_t) (2 * DS_CLIP_CONTEXT * X) * sizeof (float));
  DsStatus st = p->ctx ? ds_pipeline_encode_text (p, &out->uncond, &out->cond, p->ctx, err)
                       : ds_error_set (err, DS_ERR_NOMEM, "out of memory for the text context");
  if (st)
    {
      free (p->ctx);
      p->ctx = NULL;
      return st;
    }
  memcpy (p->ctx_ids, out->uncond.ids, sizeof out->uncond.ids);
  memcpy (p->ctx_ids + DS_CLIP_CONTEXT, out->cond.ids, sizeof out->cond.ids);
  out->ms_text = ds_now_ms () - t0;
  return DS_OK;
}

DsStatus
ds_pipeline_features (DsPipeline *p, const DsFeatureRequest *req, DsFeatures *out, DsError *err)
{
  memset (out, 0, sizeof *out);
  DsStatus st;
  const DsProbeList *list;
  if ((st = ds_pipeline_probes (p, req->size, &list, err)))
    return st;
  out->probes.n = list->n;
  out->probes.probes = malloc ((size_t) list->n * sizeof *list->probes);
  out->values = calloc ((size_t) list->n, sizeof *out->values);
  if (!out->probes.probes || !out->values)
    {
      ds_features_free (out);
      return ds_error_set (err, DS_ERR_NOMEM, "out of memory for features");
    }
  memcpy (out->probes.probes, list->probes, (size_t) list->n * sizeof *list->probes);

  const DsLatentShape ls = ds_pipeline_latent_shape (p, req->size);
  const int64_t n = (int64_t) ls.channels * ls.h * ls.w, X = ds_text_encoder_hidden_size (p->te);
  if ((st = ds_tokenizer_encode (p->tok, req->prompt ? req->prompt : "", &out->cond, err))
      || (st = ds_tokenizer_encode (p->tok, req->uncond_prompt ? req->uncond_prompt : "",
                                    &out->uncond, err))
      || (st = ds_schedule_unet_timestep (&p->sched, req->t, req->convention,
                                          &out->unet_timestep, err))
      || (!req->latent && (st = latent_for (p, req, out, err)))
      || (!req->context && (st = context_for (p, out, err))))
    goto fail;
  if (req->latent)
    out->cached_latent = true;
  if (req->context)
    out->cached_text = true;
  const float *latent = req->latent ? req->latent : p->latent;
  const float *context = req->context ? req->context : p->ctx;

  /* noise: ε and x_t, the same for both halves */
  double t0 = ds_now_ms ();
  out->noise = malloc ((size_t) n * sizeof (float));
  float *xth = malloc ((size_t) (2 * n) * sizeof *xth);
  if (!out->noise || !xth)
    {
      free (xth);
      st = ds_error_set (err, DS_ERR_NOMEM, "out of memory for the noise");
      goto fail;
    }
  if (req->noise)
    memcpy (out->noise, req->noise, (size_t) n * sizeof (float));
  else
    ds_noise_normal (req->seed, out->noise, n);
  ds_schedule_add_noise (&p->sched, out->unet_timestep, latent, out->noise, xth, n, err);
  memcpy (xth + n, xth, (size_t) n * sizeof *xth);

  int last = -1;
  for (int i = 0; req->want && i < list->n; i++)
    if (req->want[i])
      last = i;
  if (req->want_eps)
    last = -1; /* ε̂ needs the whole UNet */
  EmitCtx ectx = { p, out };
  DsProbeSink sink = { .want = req->want, .last = last, .emit = emit_copy, .user = &ectx,
                       .cancel = req->cancel, .cross_lse = req->cross_lse,
                       .head_mean_maps = req->head_mean_maps, .progress = req->progress,
                       .progress_user = req->progress_user };
  size_t need = ds_unet_arena_bytes (p->unet, 2, ls.h, ls.w, DS_CLIP_CONTEXT, &sink);
  size_t io = (size_t) (4 * n + 2 * DS_CLIP_CONTEXT * X) * 4 + 256;
  DsTensor xt, ctx, eps;
  if (!need)
    st = ds_error_set (err, DS_ERR_INVALID, "could not plan the UNet for a %d image", req->size);
  if (!st && !(st = arena_reserve (p, need + io, err))
      && !(st = ds_arena_act (&p->arena, &xt, err, 4, (int64_t) 2, (int64_t) ls.channels,
                              (int64_t) ls.h, (int64_t) ls.w))
      && !(st = ds_arena_act (&p->arena, &ctx, err, 3, (int64_t) 2, (int64_t) DS_CLIP_CONTEXT, X))
      && !(st = ds_arena_act (&p->arena, &eps, err, 4, (int64_t) 2, (int64_t) ls.channels,
                              (int64_t) ls.h, (int64_t) ls.w))
      && !(st = ds_backend_upload_f32 (p->be, &xt, xth, err)))
    st = ds_backend_upload_f32 (p->be, &ctx, context, err);
  free (xth);
  if (st)
    goto fail;
  float ts[2] = { (float) out->unet_timestep, (float) out->unet_timestep };
  if ((st = ds_unet_forward (p->unet, p->be, &p->arena, &xt, ts, &ctx, &sink,
                             req->want_eps ? &eps : NULL, err))
      || (st = p->be->synchronize (p->be, err)))
    goto fail;
  if (req->want_eps)
    {
      if ((st = ds_tensor_alloc (&out->eps, DS_DTYPE_F32, 4, eps.shape, err))
          || (st = ds_backend_download_f32 (p->be, &eps, ds_tensor_f32 (&out->eps), err)))
        goto fail;
    }
  out->ms_unet = ds_now_ms () - t0;
  return DS_OK;

fail:
  ds_features_free (out);
  return st;
}

void
ds_features_free (DsFeatures *f)
{
  for (int i = 0; f->values && i < f->probes.n; i++)
    ds_tensor_free (&f->values[i]);
  free (f->values);
  free (f->noise);
  ds_tensor_free (&f->eps);
  ds_probe_list_free (&f->probes);
  memset (f, 0, sizeof *f);
}
