/* ds-probes.c: the probe registry (see ds-probes.h). The enumeration below
 * walks the UNet in the same order as ds_unet_forward. */
#include "ds-probes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
  DsProbeList *list;
  int cap;
  DsError *err;
  bool failed;
} Builder;

/* Long-id and paper-name suffixes per kind; maps and block features carry the
 * transformer block index (always 0: one transformer block per attention). */
static const struct {
  const char *id;
  const char *name;
} kind_names[] = {
  [DS_PROBE_UNET_IN] = { "unet-in", "UNet-In" },
  [DS_PROBE_UNET_AFTER_CONV_IN] = { "unet-after-conv-in", "UNet-After-Conv-In" },
  [DS_PROBE_RES_INCREMENT] = { "res-increment", "Res-Increment" },
  [DS_PROBE_RES_OUT] = { "res-out", "Res-Out" },
  [DS_PROBE_SELF_Q] = { "vit-block0-self-q", "B0-Self-Q" },
  [DS_PROBE_SELF_K] = { "vit-block0-self-k", "B0-Self-K" },
  [DS_PROBE_SELF_V] = { "vit-block0-self-v", "B0-Self-V" },
  [DS_PROBE_SELF_MAP] = { "vit-block0-self-map", "B0-Self-Map" },
  [DS_PROBE_CROSS_Q] = { "vit-block0-cross-q", "B0-Cross-Q" },
  [DS_PROBE_CROSS_MAP] = { "vit-block0-cross-map", "B0-Cross-Map" },
  [DS_PROBE_FFN_INNER] = { "vit-block0-ffn-inner", "B0-FFN-Inner" },
  [DS_PROBE_BLOCK_OUT] = { "vit-block0-out", "B0-Out" },
  [DS_PROBE_VIT_OUT] = { "vit-out", "Out" },
  [DS_PROBE_DOWNSAMPLER_OUT] = { "downsampler-out", "Downsampler-Out" },
  [DS_PROBE_UPSAMPLER_OUT] = { "upsampler-out", "Upsampler-Out" },
  [DS_PROBE_UNET_OUT] = { "unet-out", "UNet-Out" },
};
_Static_assert (sizeof kind_names / sizeof kind_names[0] == DS_PROBE_KIND_COUNT,
                "one name pair per probe kind");

static void
add (Builder *b, DsProbeKind kind, DsStage stage, int level, int repeat, int64_t d0, int64_t d1,
     int64_t d2)
{
  if (b->failed)
    return;
  DsProbeList *l = b->list;
  if (l->n == b->cap)
    {
      int cap = b->cap ? 2 * b->cap : 256;
      DsProbeInfo *p = realloc (l->probes, (size_t) cap * sizeof *p);
      if (!p)
        {
          b->failed = true;
          ds_error_set (b->err, DS_ERR_NOMEM, "out of memory listing probes");
          return;
        }
      l->probes = p;
      b->cap = cap;
    }
  DsProbeInfo *p = &l->probes[l->n++];
  memset (p, 0, sizeof *p);
  p->kind = kind;
  p->stage = stage;
  p->level = level;
  p->repeat = repeat;
  p->ndim = 3;
  p->shape[0] = d0;
  p->shape[1] = d1;
  p->shape[2] = d2;

  static const char *const stage_id[] = { "", "down", "mid", "up" };
  static const char *const stage_name[] = { "", "D", "M", "U" };
  char id_prefix[40] = "", name_prefix[24] = "";
  if (stage != DS_STAGE_NONE)
    {
      int n = snprintf (id_prefix, sizeof id_prefix, "%s-", stage_id[stage]);
      int m = snprintf (name_prefix, sizeof name_prefix, "%s-", stage_name[stage]);
      if (level >= 0)
        {
          n += snprintf (id_prefix + n, sizeof id_prefix - n, "level%d-", level);
          m += snprintf (name_prefix + m, sizeof name_prefix - m, "L%d-", level);
        }
      /* Attention features of the mid block have no repeat ("mid-vit-..."). */
      bool mid_vit = stage == DS_STAGE_MID && kind >= DS_PROBE_SELF_Q && kind <= DS_PROBE_VIT_OUT;
      if (repeat >= 0 && !mid_vit)
        {
          snprintf (id_prefix + n, sizeof id_prefix - n, "repeat%d-", repeat);
          snprintf (name_prefix + m, sizeof name_prefix - m, "R%d-", repeat);
        }
    }
  snprintf (p->id, sizeof p->id, "%s%s", id_prefix, kind_names[kind].id);
  snprintf (p->name, sizeof p->name, "%s%s", name_prefix, kind_names[kind].name);
}

static void
add_transformer (Builder *b, DsStage stage, int level, int repeat, int64_t C, int64_t heads,
                 int64_t H, int64_t W, int64_t n_ctx)
{
  int64_t N = H * W;
  add (b, DS_PROBE_SELF_Q, stage, level, repeat, C, H, W);
  add (b, DS_PROBE_SELF_K, stage, level, repeat, C, H, W);
  add (b, DS_PROBE_SELF_V, stage, level, repeat, C, H, W);
  add (b, DS_PROBE_SELF_MAP, stage, level, repeat, heads, N, N);
  add (b, DS_PROBE_CROSS_Q, stage, level, repeat, C, H, W);
  add (b, DS_PROBE_CROSS_MAP, stage, level, repeat, heads, N, n_ctx);
  add (b, DS_PROBE_FFN_INNER, stage, level, repeat, 4 * C, H, W);
  add (b, DS_PROBE_BLOCK_OUT, stage, level, repeat, C, H, W);
  add (b, DS_PROBE_VIT_OUT, stage, level, repeat, C, H, W);
}

static void
add_resnet (Builder *b, DsStage stage, int level, int repeat, int64_t C, int64_t H, int64_t W)
{
  add (b, DS_PROBE_RES_INCREMENT, stage, level, repeat, C, H, W);
  add (b, DS_PROBE_RES_OUT, stage, level, repeat, C, H, W);
}

DsStatus
ds_probe_list_build (const DsUnetConfig *cfg, int latent_h, int latent_w, int n_ctx,
                     DsProbeList *out, DsError *err)
{
  memset (out, 0, sizeof *out);
  const int L = cfg->n_levels;
  int64_t down = 1 << (L - 1);
  if (latent_h <= 0 || latent_w <= 0 || latent_h % down || latent_w % down)
    return ds_error_set (err, DS_ERR_INVALID,
                         "latent size %dx%d must be a positive multiple of %lld for a UNet "
                         "with %d levels (image sides a multiple of %lld)",
                         latent_h, latent_w, (long long) down, L, (long long) down * 8);
  Builder b = { .list = out, .err = err };
  int64_t H = latent_h, W = latent_w;
  add (&b, DS_PROBE_UNET_IN, DS_STAGE_NONE, -1, -1, cfg->in_channels, H, W);
  add (&b, DS_PROBE_UNET_AFTER_CONV_IN, DS_STAGE_NONE, -1, -1, cfg->block_out_channels[0], H, W);
  for (int i = 0; i < L; i++)
    {
      int64_t C = cfg->block_out_channels[i];
      bool attn = cfg->down_block_types[i] == DS_BLOCK_CROSS_ATTN_DOWN;
      for (int r = 0; r < cfg->layers_per_block; r++)
        {
          add_resnet (&b, DS_STAGE_DOWN, i, r, C, H, W);
          if (attn)
            add_transformer (&b, DS_STAGE_DOWN, i, r, C, cfg->heads[i], H, W, n_ctx);
        }
      if (i < L - 1)
        {
          H /= 2, W /= 2;
          add (&b, DS_PROBE_DOWNSAMPLER_OUT, DS_STAGE_DOWN, i, -1, C, H, W);
        }
    }
  int64_t Cm = cfg->block_out_channels[L - 1];
  add_resnet (&b, DS_STAGE_MID, -1, 0, Cm, H, W);
  add_transformer (&b, DS_STAGE_MID, -1, 0, Cm, cfg->heads[L - 1], H, W, n_ctx);
  add_resnet (&b, DS_STAGE_MID, -1, 1, Cm, H, W);
  for (int i = 0; i < L; i++)
    {
      int64_t C = cfg->block_out_channels[L - 1 - i];
      bool attn = cfg->up_block_types[i] == DS_BLOCK_CROSS_ATTN_UP;
      for (int r = 0; r <= cfg->layers_per_block; r++)
        {
          add_resnet (&b, DS_STAGE_UP, i, r, C, H, W);
          if (attn)
            add_transformer (&b, DS_STAGE_UP, i, r, C, cfg->heads[L - 1 - i], H, W, n_ctx);
        }
      if (i < L - 1)
        {
          H *= 2, W *= 2;
          add (&b, DS_PROBE_UPSAMPLER_OUT, DS_STAGE_UP, i, -1, C, H, W);
        }
    }
  add (&b, DS_PROBE_UNET_OUT, DS_STAGE_NONE, -1, -1, cfg->out_channels, H, W);
  if (b.failed)
    {
      ds_probe_list_free (out);
      return DS_ERR_NOMEM;
    }
  return DS_OK;
}

void
ds_probe_list_free (DsProbeList *list)
{
  free (list->probes);
  list->probes = NULL;
  list->n = 0;
}

int
ds_probe_list_find (const DsProbeList *list, const char *name)
{
  for (int i = 0; i < list->n; i++)
    if (strcasecmp (list->probes[i].name, name) == 0 || strcasecmp (list->probes[i].id, name) == 0)
      return i;
  return -1;
}
