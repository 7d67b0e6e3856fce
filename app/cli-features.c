/* cli-features.c: diffscope-cli info, probes and features (see diffscope-cli.c). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ds-atomic.h"
#include "ds-image.h"
#include "ds-safetensors.h"

int
cli_cmd_info (const CliOptions *o)
{
  DsError err = { 0 };
  DsBackend *be = NULL;
  DsSession *s = NULL;
  if (cli_open_session (o, &be, &s, &err))
    return cli_fail (&err);
  const DsPipeline *p = ds_session_pipeline (s);
  const DsModelDir *m = ds_pipeline_model (p);
  printf ("model:   %s\n", ds_pipeline_label (p));
  printf ("device:  %s (%s)\n", be->name, ds_dtype_name (be->act_dtype));
  printf ("unet:    %d levels, channels", m->unet.n_levels);
  for (int i = 0; i < m->unet.n_levels; i++)
    printf (" %d", m->unet.block_out_channels[i]);
  printf (", heads");
  for (int i = 0; i < m->unet.n_levels; i++)
    printf (" %d", m->unet.heads[i]);
  printf (", context %d, %s projections\n", m->unet.cross_attention_dim,
          m->unet.use_linear_projection ? "linear" : "1x1 conv");
  printf ("text:    %d layers, width %d, %s\n", m->text.num_hidden_layers, m->text.hidden_size,
          m->text.hidden_act == DS_ACT_GELU ? "gelu" : "quick_gelu");
  printf ("size:    %d (native)\n", ds_pipeline_native_size (p));
  if (ds_pipeline_is_builtin (p))
    printf ("note:    the built-in model is a " DS_BUILTIN_MODEL_LABEL "; %s\n", CLI_BUILTIN_WORDS);
  cli_close_session (be, s);
  return 0;
}

int
cli_cmd_probes (const CliOptions *o)
{
  DsError err = { 0 };
  DsBackend *be = NULL;
  DsSession *s = NULL;
  const DsProbeList *list;
  if (cli_open_session (o, &be, &s, &err))
    return cli_fail (&err);
  DsPipeline *p = ds_session_pipeline (s);
  if (ds_pipeline_probes (p, o->size, &list, &err))
    {
      cli_close_session (be, s);
      return cli_fail (&err);
    }
  printf ("# %s, %dx%d input, %d probes (per image; the batch is [uncond, cond])\n",
          ds_pipeline_label (p), o->size, o->size, list->n);
  printf ("%-28s %-44s %s\n", "# name", "id", "shape");
  for (int i = 0; i < list->n; i++)
    {
      const DsProbeInfo *q = &list->probes[i];
      char shape[64];
      printf ("%-28s %-44s %s%s\n", q->name, q->id, ds_shape_str (3, q->shape, shape, sizeof shape),
              q->kind == DS_PROBE_SELF_MAP || q->kind == DS_PROBE_CROSS_MAP ? " (heads, Nq, Nk)"
                                                                            : " (C, H, W)");
    }
  cli_close_session (be, s);
  return 0;
}

int
cli_cmd_features (const CliOptions *o)
{
  if (o->n_images != 1 || !o->prompt || !o->out || (o->n_probes == 0 && !o->maps))
    {
      fprintf (stderr, "diffscope-cli: features needs one --image, --prompt, --out and at least one "
                       "--probe (or --maps); see diffscope-cli probes for the names\n");
      return 2;
    }
  DsError err = { 0 };
  DsBackend *be = NULL;
  DsSession *s = NULL;
  if (cli_open_session (o, &be, &s, &err))
    return cli_fail (&err);
  DsStatus st = cli_features_write (o, be, s, stdout, &err);
  cli_close_session (be, s);
  return st ? cli_fail (&err) : 0;
}

/* The result's probe at list index i, or NULL. */
static const DsSessionProbe *
probe_at (const DsSessionResult *r, int i)
{
  for (int k = 0; k < r->n_probes; k++)
    if (r->probes[k].index == i)
      return &r->probes[k];
  return NULL;
}

DsStatus
cli_features_write (const CliOptions *o, DsBackend *be, DsSession *ses, FILE *log, DsError *err)
{
  DsPipeline *p = ds_session_pipeline (ses);
  const DsProbeList *list;
  DsImage img = { 0 };
  bool *want = NULL;
  DsSessionResult *r = NULL;
  DsTensor noise = { 0 };
  DsSafetensorsItem *items = NULL;
  DsTensor *views = NULL;
  char **names = NULL;
  const char **asked = NULL;
  DsStatus st;
  int n_items = 0;
  json_t *meta = NULL;
  char *meta_text = NULL;

  /* FILE and FILE.json: a FIFO or device (written through by ds_atomic) would
   * put FILE.json beside it, e.g. /dev/null.json */
  struct stat sb;
  if (stat (o->out, &sb) == 0 && !S_ISREG (sb.st_mode))
    {
      st = ds_error_set (err, DS_ERR_IO, "%s: is %s; features writes FILE and FILE.json, give a "
                         "file path for --out", o->out, ds_file_kind (sb.st_mode));
      goto out;
    }
  if ((st = ds_pipeline_probes (p, o->size, &list, err)))
    goto out;
  if ((st = cli_want_probes (list, o->probes, o->n_probes, &want, err)))
    goto out;
  /* --maps alone wants head means only: the backend averages the heads (heads
   * times fewer bytes to copy out); an attention map asked for by name keeps
   * its heads */
  bool head_mean = o->maps;
  for (int k = 0; k < o->n_probes; k++)
    {
      const int i = ds_probe_list_find (list, o->probes[k]);
      if (i >= 0 && (list->probes[i].kind == DS_PROBE_CROSS_MAP
                     || list->probes[i].kind == DS_PROBE_SELF_MAP))
        head_mean = false;
    }
  /* the query's probes: the named ones, then with --maps every other
   * cross-attention layer */
  int n_asked = o->n_probes;
  if (!(asked = malloc ((size_t) (o->n_probes + list->n + 1) * sizeof *asked)))
    {
      st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
      goto out;
    }
  for (int k = 0; k < o->n_probes; k++)
    asked[k] = o->probes[k];
  if (o->maps)
    for (int i = 0; i < list->n; i++)
      if (list->probes[i].kind == DS_PROBE_CROSS_MAP && !want[i])
        asked[n_asked++] = list->probes[i].name;
  if ((st = ds_image_load (o->images[0], &img, err))
      || (o->noise
          && (st = cli_load_noise (o->noise, ds_pipeline_latent_shape (p, o->size), &noise, err))))
    goto out;

  DsQuery query = cli_query (o, ses, &img);
  query.probes = asked;
  query.n_probes = n_asked;
  query.head_mean_maps = head_mean;
  query.noise = noise.data;
  st = ds_session_run (ses, &query, cli_run_control (), &r, err);
  cli_run_control_end ();
  if (st || (st = cli_check_finite (r, err)))
    goto out;
  if (r->cond.truncated)
    fprintf (stderr, "diffscope-cli: note: the prompt has %d tokens; only the first 75 are used\n",
             r->cond.n_pieces_total);

  /* items: per probe uncond + cond, per map layer (with --maps) the head mean */
  int cap = 3 * list->n + 1;
  items = calloc ((size_t) cap, sizeof *items);
  views = calloc ((size_t) cap, sizeof *views);
  names = calloc ((size_t) cap, sizeof *names);
  json_t *probes_json = json_array ();
  for (int i = 0; i < list->n; i++)
    {
      const DsSessionProbe *v = probe_at (r, i);
      if (!v)
        continue;
      const DsProbeInfo *q = &list->probes[i];
      const int64_t shape[3] = { v->c, v->h, v->w };
      if (want[i])
        for (int half = 0; half < 2; half++)
          {
            float *src = (float *) (half ? v->cond : v->uncond);
            views[n_items] = (DsTensor){ .dtype = DS_DTYPE_F32, .device = DS_DEVICE_CPU,
                                         .ndim = 3, .shape = { v->c, v->h, v->w, 1 },
                                         .data = src };
            names[n_items] = malloc (96);
            snprintf (names[n_items], 96, "%s.%s", half ? "cond" : "uncond", q->name);
            items[n_items] = (DsSafetensorsItem){ names[n_items], &views[n_items] };
            n_items++;
          }
      if (o->maps && q->kind == DS_PROBE_CROSS_MAP)
        {
          /* head mean of the cond half: [heads, Nq, Nk] -> [Nq, Nk] (one head
           * when the backend averaged them already) */
          int64_t H = v->c, Nq = q->shape[1], Nk = q->shape[2];
          DsTensor *m = &views[n_items];
          ds_tensor_alloc (m, DS_DTYPE_F32, 2, (int64_t[]){ Nq, Nk }, NULL);
          const float *src = v->cond;
          float *dst = ds_tensor_f32 (m);
          for (int64_t hh = 0; hh < H; hh++)
            for (int64_t j = 0; j < Nq * Nk; j++)
              dst[j] += src[hh * Nq * Nk + j] / (float) H;
          names[n_items] = malloc (96);
          char layer[48];
          snprintf (layer, sizeof layer, "%s", q->name);
          char *suffix = strstr (layer, "-B0-Cross-Map");
          if (suffix)
            *suffix = '\0';
          snprintf (names[n_items], 96, "maps.%s", layer);
          items[n_items] = (DsSafetensorsItem){ names[n_items], m };
          n_items++;
        }
      char shape_str[64];
      json_array_append_new (probes_json,
                             json_pack ("{s:s, s:s, s:s}", "name", q->name, "id", q->id, "shape",
                                        ds_shape_str (3, shape, shape_str, sizeof shape_str)));
    }

  const DsModelDir *md = ds_pipeline_model (p);
  meta = json_pack ("{s:s, s:b, s:b, s:s, s:s, s:s, s:i, s:i, s:s, s:I, s:i, s:s, s:o, s:o, s:o, "
                    "s:{s:f, s:f, s:f, s:f}}",
                    "model", ds_pipeline_label (p), "untrained", ds_pipeline_is_untrained (p),
                    "builtin", ds_pipeline_is_builtin (p), "model_dir", md->root, "device", be->name, "image", o->images[0], "size", o->size,
                    "t", o->t, "timestep_convention", o->meng ? "meng (unet runs at t-1)" : "direct",
                    "seed", (json_int_t) o->seed, "unet_timestep", r->unet_timestep, "prompt",
                    o->prompt, "cond", cli_tokens_json (&r->cond),
                    "uncond", cli_tokens_json (&r->uncond), "probes",
                    probes_json, "timings_ms", "image", r->ms_image, "vae", r->ms_vae, "text",
                    r->ms_text, "unet", r->ms_unet);
  json_object_set_new (meta, "uncond_prompt", json_string (o->uncond));
  json_object_set_new (meta, "fit", json_string (o->crop ? "center-crop" : "stretch"));
  json_object_set_new (meta, "latent", json_string ("VAE posterior mean x scaling_factor"));
  meta_text = json_dumps (meta, JSON_INDENT (2) | JSON_SORT_KEYS);
  const char *md_pairs[] = { "diffscope", meta_text, NULL };
  if ((st = ds_safetensors_write (o->out, items, n_items, md_pairs, err)))
    goto out;
  size_t jn = strlen (o->out) + 8;
  char *jpath = malloc (jn);
  snprintf (jpath, jn, "%s.json", o->out);
  st = cli_write_text_atomic (jpath, meta_text, err) ? err->code : DS_OK;
  if (!st && log)
    {
      fprintf (log, "wrote %s (%d tensors) and %s\n", o->out, n_items, jpath);
      fprintf (log, "timings: image %.1f ms, VAE %.1f ms, text %.1f ms, UNet %.1f ms\n",
               r->ms_image, r->ms_vae, r->ms_text, r->ms_unet);
      if (ds_pipeline_is_builtin (p))
        fprintf (log, "note: " DS_BUILTIN_MODEL_LABEL "; %s\n", CLI_BUILTIN_WORDS);
    }
  free (jpath);

out:
  for (int i = 0; names && i < n_items; i++)
    {
      free (names[i]);
      ds_tensor_free (&views[i]); /* the maps; the probe views own nothing */
    }
  free (names);
  free (views);
  free (items);
  free (meta_text);
  free (asked);
  json_decref (meta);
  ds_session_result_unref (r);
  ds_tensor_free (&noise);
  ds_image_free (&img);
  free (want);
  return st;
}
