/* ds-heatmap.c: see ds-heatmap.h. */
#include "ds-heatmap.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ds-analysis.h"

int
ds_heatmap_cross_layers (const DsProbeList *list, int64_t nq, int *out, int max)
{
  int count = 0;
  for (int i = 0; i < list->n; i++)
    {
      const DsProbeInfo *p = &list->probes[i];
      if (p->kind != DS_PROBE_CROSS_MAP || p->stage == DS_STAGE_MID)
        continue;
      if (nq != 0 && p->shape[1] != nq)
        continue;
      if (count < max)
        out[count] = i;
      count++;
    }
  return count;
}

int
ds_discffusion_layers (const DsProbeList *list, int *out, int max)
{
  int last_down = -1, last_up = -1;
  for (int i = 0; i < list->n; i++)
    {
      const DsProbeInfo *p = &list->probes[i];
      if (p->kind != DS_PROBE_CROSS_MAP)
        continue;
      if (p->stage == DS_STAGE_DOWN && p->level > last_down)
        last_down = p->level;
      if (p->stage == DS_STAGE_UP && p->level > last_up)
        last_up = p->level;
    }
  int count = 0, layer = 0;
  for (int i = 0; i < list->n; i++)
    {
      const DsProbeInfo *p = &list->probes[i];
      if (p->kind != DS_PROBE_CROSS_MAP)
        continue;
      bool take = p->stage == DS_STAGE_MID || (p->stage == DS_STAGE_DOWN && p->level == last_down)
                  || (p->stage == DS_STAGE_UP && p->level == last_up);
      if (take)
        {
          if (count < max)
            out[count] = layer;
          count++;
        }
      layer++;
    }
  return count;
}

DsStatus
ds_heatmap_mean (const DsAttnMaps *layers, int n_layers, float *out, DsError *err)
{
  if (n_layers < 1)
    return ds_error_set (err, DS_ERR_INVALID, "heat map: no layers given");
  const DsAttnMaps *l0 = &layers[0];
  int64_t total_heads = 0;
  for (int i = 0; i < n_layers; i++)
    {
      const DsAttnMaps *l = &layers[i];
      if (l->heads < 1)
        return ds_error_set (err, DS_ERR_INVALID, "heat map: layer %d has no heads", i);
      if (l->h != l0->h || l->w != l0->w)
        return ds_error_set (err, DS_ERR_INVALID,
                             "heat map: layer %d is %lldx%lld but layer 0 is %lldx%lld; the "
                             "head/layer mean is taken at one resolution", i, (long long) l->h,
                             (long long) l->w, (long long) l0->h, (long long) l0->w);
      if (l->k != l0->k)
        return ds_error_set (err, DS_ERR_INVALID,
                             "heat map: layer %d has %lld text keys but layer 0 has %lld", i,
                             (long long) l->k, (long long) l0->k);
      total_heads += l->heads;
    }
  int64_t n = l0->h * l0->w * l0->k;
  double *acc = calloc ((size_t) n, sizeof *acc);
  if (!acc)
    return ds_error_set (err, DS_ERR_NOMEM, "heat map: out of memory for [%lld, %lld]",
                         (long long) (l0->h * l0->w), (long long) l0->k);
  for (int i = 0; i < n_layers; i++)
    for (int64_t h = 0; h < layers[i].heads; h++)
      {
        const float *src = layers[i].data + h * n;
        for (int64_t j = 0; j < n; j++)
          acc[j] += src[j];
      }
  for (int64_t j = 0; j < n; j++)
    out[j] = (float) (acc[j] / (double) total_heads);
  free (acc);
  return DS_OK;
}

DsStatus
ds_heatmap_token (const float *m, int64_t hw, int64_t k, int token, float *out, DsError *err)
{
  if (token < 0 || token >= k)
    return ds_error_set (err, DS_ERR_INVALID, "heat map: token %d is outside 0..%lld", token,
                         (long long) k - 1);
  for (int64_t p = 0; p < hw; p++)
    out[p] = m[p * k + token];
  return DS_OK;
}

DsStatus
ds_heatmap_word (const float *m, int64_t hw, int64_t k, const DsTokenWord *word, float *out,
                 DsError *err)
{
  if (word->count < 1 || word->first < 0 || word->first + word->count > k)
    return ds_error_set (err, DS_ERR_INVALID,
                         "heat map: word \"%s\" spans tokens %d..%d, outside 0..%lld",
                         word->text, word->first, word->first + word->count - 1,
                         (long long) k - 1);
  for (int64_t p = 0; p < hw; p++)
    {
      double s = 0;
      for (int t = 0; t < word->count; t++)
        s += m[p * k + word->first + t];
      out[p] = (float) (s / word->count);
    }
  return DS_OK;
}

void
ds_heatmap_normalize (float *x, int64_t n, DsHeatmapNorm mode)
{
  if (n < 1)
    return;
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; i++)
    {
      lo = x[i] < lo ? x[i] : lo;
      hi = x[i] > hi ? x[i] : hi;
    }
  if (mode == DS_HEATMAP_NORM_MAX)
    {
      for (int64_t i = 0; i < n; i++)
        x[i] = hi > 0 ? x[i] / hi : 0.0f;
      return;
    }
  double range = (double) hi - lo;
  for (int64_t i = 0; i < n; i++)
    x[i] = range > 0 ? (float) (((double) x[i] - lo) / range) : 0.0f;
}

/* ---- ensemble mean ------------------------------------------------------- */

DsStatus
ds_heatmap_accum_init (DsHeatmapAccum *acc, int64_t hw, int64_t k, DsError *err)
{
  memset (acc, 0, sizeof *acc);
  assert (hw >= 1 && k >= 1);
  acc->sum = calloc ((size_t) (hw * k), sizeof *acc->sum);
  if (!acc->sum)
    return ds_error_set (err, DS_ERR_NOMEM, "heat map: out of memory for [%lld, %lld]",
                         (long long) hw, (long long) k);
  acc->hw = hw, acc->k = k;
  return DS_OK;
}

DsStatus
ds_heatmap_accum_add (DsHeatmapAccum *acc, const float *m, int64_t hw, int64_t k, DsError *err)
{
  if (hw != acc->hw || k != acc->k)
    return ds_error_set (err, DS_ERR_INVALID,
                         "heat map: adding a [%lld, %lld] map to an average of [%lld, %lld] maps",
                         (long long) hw, (long long) k, (long long) acc->hw, (long long) acc->k);
  for (int64_t i = 0; i < hw * k; i++)
    acc->sum[i] += m[i];
  acc->count++;
  return DS_OK;
}

DsStatus
ds_heatmap_accum_finish (const DsHeatmapAccum *acc, float *out, DsError *err)
{
  if (acc->count < 1)
    return ds_error_set (err, DS_ERR_INVALID, "heat map: no maps were added to the average");
  for (int64_t i = 0; i < acc->hw * acc->k; i++)
    out[i] = (float) (acc->sum[i] / acc->count);
  return DS_OK;
}

void
ds_heatmap_accum_free (DsHeatmapAccum *acc)
{
  free (acc->sum);
  memset (acc, 0, sizeof *acc);
}

/* ---- DAAM ------------------------------------------------------------------ */

typedef struct {
  int layer;
  int64_t heads, h, w;
  float *sum; /* [heads, k, h·w]: token-major, ready for resizing */
} DaamSlot;

struct DsDaam {
  int64_t size; /* S */
  int64_t k;    /* 0 until the first add */
  DaamSlot *slots;
  int n_slots, cap;
};

DsStatus
ds_daam_new (int64_t out_size, DsDaam **out, DsError *err)
{
  *out = NULL;
  if (out_size < 1)
    return ds_error_set (err, DS_ERR_INVALID, "DAAM: output size %lld must be positive",
                         (long long) out_size);
  DsDaam *d = calloc (1, sizeof *d);
  if (!d)
    return ds_error_set (err, DS_ERR_NOMEM, "DAAM: out of memory");
  d->size = out_size;
  *out = d;
  return DS_OK;
}

void
ds_daam_free (DsDaam *daam)
{
  if (!daam)
    return;
  for (int i = 0; i < daam->n_slots; i++)
    free (daam->slots[i].sum);
  free (daam->slots);
  free (daam);
}

int64_t
ds_daam_k (const DsDaam *daam)
{
  return daam->k;
}

static DsStatus
daam_slot (DsDaam *d, int layer, const DsAttnMaps *m, DaamSlot **out, DsError *err)
{
  for (int i = 0; i < d->n_slots; i++)
    if (d->slots[i].layer == layer)
      {
        DaamSlot *s = &d->slots[i];
        if (s->heads != m->heads || s->h != m->h || s->w != m->w)
          return ds_error_set (err, DS_ERR_INVALID,
                               "DAAM: layer %d was [%lld heads, %lldx%lld] and is now "
                               "[%lld heads, %lldx%lld]", layer, (long long) s->heads,
                               (long long) s->h, (long long) s->w, (long long) m->heads,
                               (long long) m->h, (long long) m->w);
        *out = s;
        return DS_OK;
      }
  if (d->n_slots == d->cap)
    {
      int cap = d->cap ? 2 * d->cap : 16;
      DaamSlot *p = realloc (d->slots, (size_t) cap * sizeof *p);
      if (!p)
        return ds_error_set (err, DS_ERR_NOMEM, "DAAM: out of memory");
      d->slots = p, d->cap = cap;
    }
  float *sum = calloc ((size_t) (m->heads * m->k * m->h * m->w), sizeof *sum);
  if (!sum)
    return ds_error_set (err, DS_ERR_NOMEM, "DAAM: out of memory for layer %d "
                         "[%lld, %lld, %lld]", layer, (long long) m->heads,
                         (long long) (m->h * m->w), (long long) m->k);
  DaamSlot *s = &d->slots[d->n_slots++];
  *s = (DaamSlot){ .layer = layer, .heads = m->heads, .h = m->h, .w = m->w, .sum = sum };
  *out = s;
  return DS_OK;
}

DsStatus
ds_daam_add (DsDaam *daam, int layer, const DsAttnMaps *maps, DsError *err)
{
  if (maps->heads < 1 || maps->h < 1 || maps->w < 1 || maps->k < 1)
    return ds_error_set (err, DS_ERR_INVALID, "DAAM: layer %d has an empty shape "
                         "[%lld heads, %lldx%lld, %lld keys]", layer, (long long) maps->heads,
                         (long long) maps->h, (long long) maps->w, (long long) maps->k);
  if (daam->k != 0 && maps->k != daam->k)
    return ds_error_set (err, DS_ERR_INVALID, "DAAM: layer %d has %lld text keys, earlier "
                         "layers %lld", layer, (long long) maps->k, (long long) daam->k);
  DaamSlot *s = NULL;
  DsStatus st = daam_slot (daam, layer, maps, &s, err);
  if (st != DS_OK)
    return st;
  daam->k = maps->k;
  int64_t hw = maps->h * maps->w, k = maps->k;
  for (int64_t h = 0; h < maps->heads; h++)
    {
      const float *src = maps->data + h * hw * k;
      float *dst = s->sum + h * k * hw;
      /* A transpose in tiles of positions, so reads and writes both stay in cache. */
      enum { TILE = 32 };
      for (int64_t p0 = 0; p0 < hw; p0 += TILE)
        {
          int64_t p1 = p0 + TILE < hw ? p0 + TILE : hw;
          for (int64_t t = 0; t < k; t++)
            for (int64_t p = p0; p < p1; p++)
              dst[t * hw + p] += src[p * k + t];
        }
    }
  return DS_OK;
}

DsStatus
ds_daam_finish (const DsDaam *daam, int n_tokens, bool normalize, float *out, DsError *err)
{
  if (daam->n_slots == 0)
    return ds_error_set (err, DS_ERR_INVALID, "DAAM: no attention maps were added");
  int64_t k = daam->k, ss = daam->size * daam->size;
  if (n_tokens < 2 || n_tokens > k)
    return ds_error_set (err, DS_ERR_INVALID, "DAAM: n_tokens %d is outside 2..%lld", n_tokens,
                         (long long) k);
  double *acc = calloc ((size_t) (k * ss), sizeof *acc);
  float *up = malloc ((size_t) (k * ss) * sizeof *up);
  if (!acc || !up)
    {
      free (acc), free (up);
      return ds_error_set (err, DS_ERR_NOMEM, "DAAM: out of memory for [%lld, %lld]",
                           (long long) k, (long long) ss);
    }
  int64_t n_maps = 0;
  DsStatus st = DS_OK;
  for (int i = 0; i < daam->n_slots && st == DS_OK; i++)
    {
      const DaamSlot *s = &daam->slots[i];
      for (int64_t h = 0; h < s->heads && st == DS_OK; h++)
        {
          st = ds_map_resize_bicubic (s->sum + h * k * s->h * s->w, k, s->h, s->w, up,
                                      daam->size, daam->size, err);
          for (int64_t j = 0; j < k * ss && st == DS_OK; j++)
            acc[j] += up[j] > 0 ? up[j] : 0.0f; /* DAAM's clamp_(min=0) of the undershoot */
          n_maps++;
        }
    }
  free (up);
  if (st != DS_OK)
    {
      free (acc);
      return st;
    }
  for (int64_t p = 0; p < ss; p++)
    {
      double denom = 1;
      if (normalize)
        {
          /* DAAM divides the (f32) mean maps: sum those, as it does. */
          double s = 0;
          for (int t = 1; t <= n_tokens - 2; t++)
            s += (float) (acc[t * ss + p] / (double) n_maps);
          denom = s + 1e-6;
        }
      for (int64_t t = 0; t < k; t++)
        out[p * k + t] = (float) ((float) (acc[t * ss + p] / (double) n_maps) / denom);
    }
  free (acc);
  return DS_OK;
}
