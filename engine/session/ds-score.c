/* ds-score.c: see ds-score.h. */
#include "ds-score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds-analysis.h"
#include "ds-heatmap.h"

DsStatus
ds_score_layers (DsPipeline *p, int size, int *layers, char (*names)[48], int *n, DsError *err)
{
  const DsProbeList *list;
  DsStatus st = ds_pipeline_probes (p, size, &list, err);
  if (st)
    return st;
  int count = ds_discffusion_layers (list, layers, DS_SCORE_MAX_LAYERS);
  if (count < 1 || count > DS_SCORE_MAX_LAYERS)
    return ds_error_set (err, DS_ERR_UNSUPPORTED,
                         "the Discffusion score needs 1 to %d cross-attention layers (each "
                         "transformer of the last down level with cross-attention, the mid "
                         "block's, each of the last up level's); %s has %d",
                         DS_SCORE_MAX_LAYERS, ds_pipeline_label (p), count);
  *n = count;
  if (names)
    for (int i = 0, cross = 0; i < list->n; i++)
      {
        if (list->probes[i].kind != DS_PROBE_CROSS_MAP)
          continue;
        for (int j = 0; j < count; j++)
          if (layers[j] == cross)
            {
              snprintf (names[j], 48, "%s", list->probes[i].name);
              char *suffix = strstr (names[j], "-B0-Cross-Map");
              if (suffix)
                *suffix = '\0';
            }
        cross++;
      }
  return DS_OK;
}

DsStatus
ds_session_score (DsSession *s, const DsQuery *query, double *out, DsError *err)
{
  DsPipeline *p = ds_session_pipeline (s);
  int layers[DS_SCORE_MAX_LAYERS], nl;
  DsStatus st = ds_score_layers (p, query->size, layers, NULL, &nl, err);
  if (st)
    return st;
  DsQuery q = *query;
  q.want_eps = true;
  q.heat_nq = -1;
  const int n_steps = (q.n_timesteps > 0 ? q.n_timesteps : 1) * (q.trials > 0 ? q.trials : 1);
  DsSessionResult *r = NULL;
  double *layer_lse = malloc ((size_t) n_steps * nl * sizeof *layer_lse); /* [steps, layers] */
  double *bias = malloc ((size_t) n_steps * sizeof *bias);                /* [steps] */
  st = layer_lse && bias ? DS_OK : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!st)
    st = ds_session_run (s, &q, NULL, &r, err);
  if (!st && r->runs != n_steps)
    st = ds_error_set (err, DS_ERR_INVALID, "the session ran %d UNet runs, not %d", r->runs,
                       n_steps);
  if (!st)
    {
      const DsLatentShape ls = ds_pipeline_latent_shape (p, q.size);
      const int64_t n = (int64_t) ls.channels * ls.h * ls.w; /* ε̂ [2, C, h, w]: uncond, cond */
      for (int k = 0; k < n_steps; k++)
        {
          ds_discffusion_step_lse (r->cross_lse[k], 2, layers, nl, layer_lse + k * nl);
          bias[k] = ds_discffusion_bias (r->eps[k], r->eps_hat[k], r->eps_hat[k] + n, n);
        }
      st = ds_discffusion_score (layer_lse, n_steps, nl, bias, out, err);
      if (!st && !isfinite (*out))
        st = ds_error_set (err, DS_ERR_INVALID,
                           "the score is %s (non-finite weights?); nothing written",
                           isnan (*out) ? "NaN" : "infinite");
    }
  ds_session_result_unref (r);
  free (layer_lse);
  free (bias);
  return st;
}
