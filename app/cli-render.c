/* cli-render.c: diffscope-cli render — the paper's pictures as PNG files.
 *
 * For each --probe (a feature map, not an attention map), at every --s:
 *   <probe>.pca-uncond.png   PCA → RGB of X_uncond
 *   <probe>.pca-s<S>.png     PCA → RGB of X_s = X_u + s·(X_c − X_u)
 *   <probe>.pca-delta.png    PCA → RGB of Δcond = X_c − X_u
 *   <probe>.delta-heat.png   |Δcond| (L2 over channels), colormapped
 *   <probe>.pair-s<S>-a.png, -b.png  with two --image: one PCA fitted on both
 * With --words, per word of the prompt, word-<k>-<word>.png: the mean cross-
 * attention over heads and the layers at --heat-res (default: the model's,
 * ds_pipeline_heat_side: SD 2.1-base's five 16×16 layers at 512, a quarter
 * of the latent side; the built-in model's 16×16 layers at 128, half of it),
 * overlaid on the image; with --timesteps and
 * --trials averaged over that ensemble (e.g. 189,389,589,789,989 × 4 noise
 * draws: seeds seed..seed+trials-1), and with --daam DAAM's aggregation of
 * every down/up layer at the latent size instead. With --cka, cka.png:
 * CKA(X_s, X_uncond) for s in 0..10 for every probe. measures.json holds
 * those curves, the linear CKA between every two probes and, with two images,
 * the cosine similarity of the images per probe. sheet.png gathers all with
 * captions under a title naming the model (so the demo's "untrained" shows).
 * PCA pictures are upscaled nearest-neighbour (Meng et al.), heat bilinearly.
 */
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-analysis.h"
#include "ds-heatmap.h"
#include "ds-image.h"
#include "ds-pca.h"
#include "ds-render.h"
#ifdef DS_HAVE_CAIRO
#include "ds-sheet.h"
#endif

#define MAX_TILES 512

typedef struct {
  const CliOptions *o;
  int size;
  DsColormap cmap;
  int n;
  uint8_t *rgb[MAX_TILES]; /* [size, size, 3] each, owned */
  char *caption[MAX_TILES];
  int written;
} Tiles;

/* Writes `rgb` (size × size) as DIR/file and keeps it for the sheet (takes rgb). */
static DsStatus
tile_add (Tiles *t, uint8_t *rgb, const char *file, const char *caption, DsError *err)
{
  char path[4096];
  snprintf (path, sizeof path, "%s/%s", t->o->out_dir, file);
  DsStatus st = ds_png_write (path, rgb, t->size, t->size, 3, err);
  if (st || t->n == MAX_TILES)
    {
      free (rgb);
      return st ? st : ds_error_set (err, DS_ERR_INVALID, "more than %d pictures", MAX_TILES);
    }
  t->rgb[t->n] = rgb;
  t->caption[t->n] = strdup (caption);
  t->n++;
  t->written++;
  return DS_OK;
}

static void
tiles_free (Tiles *t)
{
  for (int i = 0; i < t->n; i++)
    {
      free (t->rgb[i]);
      free (t->caption[i]);
    }
}

/* PCA colours [N,3] in [0,1] of an h × w map -> size × size RGB8 (nearest). */
static DsStatus
pca_picture (Tiles *t, const float *rgb01, int h, int w, uint8_t **out, DsError *err)
{
  uint8_t *small = malloc ((size_t) h * w * 3), *big = malloc ((size_t) t->size * t->size * 3);
  DsStatus st = small && big ? DS_OK : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!st)
    {
      ds_render_rgb01 (rgb01, (size_t) h * w, small);
      st = ds_render_resize_nearest (small, w, h, 3, t->size, t->size, big, err);
    }
  free (small);
  if (st)
    {
      free (big);
      return st;
    }
  *out = big;
  return DS_OK;
}

static DsStatus
render_pca (Tiles *t, const float *x, int64_t c, int h, int w, const char *file,
            const char *caption, DsError *err)
{
  int64_t n = (int64_t) h * w;
  float *rgb01 = malloc ((size_t) n * 3 * sizeof *rgb01);
  double ratio[3];
  uint8_t *pic = NULL;
  DsStatus st = rgb01 ? ds_pca_rgb (x, c, n, rgb01, ratio, err)
                      : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!st)
    st = pca_picture (t, rgb01, h, w, &pic, err);
  free (rgb01);
  if (st)
    return st;
  char cap[256];
  snprintf (cap, sizeof cap, "%s\nPCA var %.0f/%.0f/%.0f%%", caption, 100 * ratio[0],
            100 * ratio[1], 100 * ratio[2]);
  return tile_add (t, pic, file, cap, err);
}

/* A scalar map [h, w] colormapped over its own range, optionally over the image. */
static DsStatus
render_heat (Tiles *t, const float *map, int h, int w, const uint8_t *image, const char *file,
             const char *caption, DsError *err)
{
  size_t px = (size_t) t->size * t->size;
  uint8_t *rgba = malloc (px * 4), *rgb = malloc (px * 3);
  DsStatus st = rgba && rgb ? DS_OK : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!st)
    st = ds_render_heatmap (map, w, h, t->size, t->size, t->cmap, NAN, NAN, rgba, err);
  if (!st && image)
    st = ds_render_overlay (image, rgba, t->size, t->size, (float) t->o->opacity, rgb, err);
  else if (!st)
    for (size_t i = 0; i < px; i++)
      memcpy (rgb + 3 * i, rgba + 4 * i, 3);
  free (rgba);
  if (st)
    {
      free (rgb);
      return st;
    }
  return tile_add (t, rgb, file, caption, err);
}

/* "U-L1-R1-B0-Cross-Q" is already file-safe; words need cleaning. */
static void
file_safe (const char *in, char *out, size_t size)
{
  size_t j = 0;
  for (size_t i = 0; in[i] && j + 1 < size; i++)
    {
      unsigned char ch = (unsigned char) in[i];
      out[j++] = (isalnum (ch) || ch == '-' || ch == '_') ? (char) ch : (ch >= 0x80 ? (char) ch : '_');
    }
  out[j] = '\0';
}

/* pr[k]: the probe in image k's result */
static DsStatus
render_probe (Tiles *t, const DsSessionProbe *const *pr, int n_img, double *cka_out,
              const double *cka_s, int n_cka, DsError *err)
{
  const DsSessionProbe *q = pr[0];
  const int64_t c = q->c, h = q->h, w = q->w, n = h * w, cn = c * n;
  const float *xu = q->uncond, *xc = q->cond;
  float *buf = malloc ((size_t) cn * 2 * sizeof *buf);
  if (!buf)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  float *tmp = buf + cn;
  char file[256], cap[256];
  DsStatus st;
  snprintf (file, sizeof file, "%s.pca-uncond.png", q->name);
  snprintf (cap, sizeof cap, "%s · X_uncond", q->name);
  if ((st = render_pca (t, xu, c, (int) h, (int) w, file, cap, err)))
    goto out;
  for (int i = 0; i < t->o->n_s; i++)
    {
      double s = t->o->s_values[i];
      ds_guidance_amplify (xu, xc, (float) s, buf, cn);
      snprintf (file, sizeof file, "%s.pca-s%g.png", q->name, s);
      snprintf (cap, sizeof cap, "%s · X_s (s=%g)", q->name, s);
      if ((st = render_pca (t, buf, c, (int) h, (int) w, file, cap, err)))
        goto out;
    }
  ds_delta_cond (xu, xc, buf, cn);
  snprintf (file, sizeof file, "%s.pca-delta.png", q->name);
  snprintf (cap, sizeof cap, "%s · Δcond", q->name);
  if ((st = render_pca (t, buf, c, (int) h, (int) w, file, cap, err)))
    goto out;
  ds_delta_magnitude (buf, c, n, tmp);
  snprintf (file, sizeof file, "%s.delta-heat.png", q->name);
  snprintf (cap, sizeof cap, "%s · |Δcond|", q->name);
  if ((st = render_heat (t, tmp, (int) h, (int) w, NULL, file, cap, err)))
    goto out;

  if (n_img == 2)
    {
      /* the pair view: one PCA over both images' X_s, each scaled on its own */
      const float *xu2 = pr[1]->uncond, *xc2 = pr[1]->cond;
      double s = t->o->s_values[0];
      ds_guidance_amplify (xu, xc, (float) s, buf, cn);
      ds_guidance_amplify (xu2, xc2, (float) s, tmp, cn);
      float *rgb = malloc ((size_t) n * 6 * sizeof *rgb);
      if (!rgb)
        {
          st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
          goto out;
        }
      const float *xs[2] = { buf, tmp };
      int64_t ns[2] = { n, n };
      float *outs[2] = { rgb, rgb + n * 3 };
      st = ds_pca_rgb_joint (xs, ns, 2, c, outs, NULL, err);
      for (int k = 0; k < 2 && !st; k++)
        {
          uint8_t *pic;
          if ((st = pca_picture (t, outs[k], (int) h, (int) w, &pic, err)))
            break;
          snprintf (file, sizeof file, "%s.pair-s%g-%c.png", q->name, s, 'a' + k);
          snprintf (cap, sizeof cap, "%s · X_s (s=%g)\njoint PCA, image %c", q->name, s, 'A' + k);
          st = tile_add (t, pic, file, cap, err);
        }
      free (rgb);
      if (st)
        goto out;
    }
  if (cka_out)
    {
      float sf[64];
      for (int i = 0; i < n_cka && i < 64; i++)
        sf[i] = (float) cka_s[i];
      st = ds_cka_guidance_sweep (xu, xc, c, n, sf, n_cka < 64 ? n_cka : 64, cka_out, err);
    }
out:
  free (buf);
  return st ? ds_error_prefix (err, st, "%s", q->name) : DS_OK;
}

/* The word heat maps' source: M [side², k], averaged over heads and `layers`
 * (one resolution) and over the timestep × trial ensemble — or, with --daam,
 * DAAM's aggregation over every down/up layer (models-spec §6.2): the heat
 * maps of the session's result (ds_session_run ran the ensemble). */
typedef struct {
  const float *m; /* [side², k], the result's */
  int64_t side, k;
  char how[160];  /* for captions */
} WordSource;

static void
word_source (const CliOptions *o, const DsSessionResult *r, WordSource *ws)
{
  const int n_t = o->n_timesteps ? o->n_timesteps : 1;
  memset (ws, 0, sizeof *ws);
  ws->m = r->heat;
  ws->side = r->heat_h;
  ws->k = r->heat_k;
  int n = snprintf (ws->how, sizeof ws->how, "%s%d layers, heads averaged",
                    o->daam ? "DAAM, " : "", r->heat_layers);
  if (r->runs > 1)
    snprintf (ws->how + n, sizeof ws->how - n, "\n%d timesteps x %d trials", n_t, o->trials);
}

/* One picture per word of the prompt, over the image. */
static DsStatus
render_words (Tiles *t, const DsTokens *cond, const WordSource *ws, const uint8_t *image,
              DsError *err)
{
  const int64_t hw = ws->side * ws->side;
  float *word = malloc ((size_t) hw * sizeof *word);
  DsStatus st = word ? DS_OK : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  for (int i = 0; !st && i < cond->n_words; i++)
    {
      const DsTokenWord *wd = &cond->words[i];
      if ((st = ds_heatmap_word (ws->m, hw, ws->k, wd, word, err)))
        break;
      ds_heatmap_normalize (word, hw, DS_HEATMAP_NORM_MINMAX);
      char safe[96], file[160], cap[320];
      file_safe (wd->text, safe, sizeof safe);
      snprintf (file, sizeof file, "word-%02d-%s.png", i + 1, safe);
      snprintf (cap, sizeof cap, "\"%s\" · cross-attention %lldx%lld\n%s", wd->text,
                (long long) ws->side, (long long) ws->side, ws->how);
      st = render_heat (t, word, (int) ws->side, (int) ws->side, image, file, cap, err);
    }
  free (word);
  return st;
}

/* X_s of probe q at the first --s: [c, h, w], malloc'ed. */
static float *
amplified (const CliOptions *o, const DsSessionProbe *q)
{
  int64_t cn = q->c * q->h * q->w;
  float *x = malloc ((size_t) cn * sizeof *x);
  if (x)
    ds_guidance_amplify (q->uncond, q->cond, (float) o->s_values[0], x, cn);
  return x;
}

/* measures.json: CKA(X_s, X_uncond) against s (with --cka), linear CKA between
 * every two probes' X_s (ds_session_cka_matrix) and with two images the cosine
 * similarity of their X_s per probe (paper Fig. 2c). Printed to `log` too.
 * res[k]: image k's result, its probes in --probe order. */
static DsStatus
write_measures (const CliOptions *o, DsSessionResult *const *res, int n_img, const double *cka,
                const double *cka_s, int n_cka, FILE *log, DsError *err)
{
  const int np = o->n_probes;
  json_t *doc = json_object (), *probes = json_array ();
  DsStatus st = DS_OK;
  for (int i = 0; i < np && !st; i++)
    {
      const DsSessionProbe *q = &res[0]->probes[i];
      json_t *pj = json_pack ("{s:s, s:s, s:[I,I,I]}", "name", q->name, "id", q->id, "shape",
                              (json_int_t) q->c, (json_int_t) q->h, (json_int_t) q->w);
      if (cka)
        {
          json_t *curve = json_array ();
          for (int j = 0; j < n_cka; j++)
            json_array_append_new (curve, json_pack ("[f,f]", cka_s[j], cka[i * n_cka + j]));
          json_object_set_new (pj, "cka_vs_s", curve);
        }
      if (n_img == 2)
        {
          float *xa = amplified (o, q), *xb = amplified (o, &res[1]->probes[i]);
          DsCosine cs;
          DsFeatureMap a = { xa, q->c, q->h, q->w };
          DsFeatureMap b = { xb, q->c, q->h, q->w };
          st = xa && xb ? ds_cosine_maps (a, b, &cs, err)
                        : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
          free (xa);
          free (xb);
          if (!st)
            {
              json_object_set_new (pj, "cosine_images", json_pack ("{s:f, s:f}", "mean_position",
                                                                   cs.mean_position, "flat", cs.flat));
              if (log)
                fprintf (log, "cosine(image A, image B) %s at s=%g: per position %.4f, flattened %.4f\n",
                         q->name, o->s_values[0], cs.mean_position, cs.flat);
            }
        }
      json_array_append_new (probes, pj);
    }
  json_object_set_new (doc, "s", json_real (o->s_values[0]));
  json_object_set_new (doc, "probes", probes);
  if (!st && np >= 2)
    {
      double *m = malloc ((size_t) np * np * sizeof *m);
      st = m ? ds_session_cka_matrix (res[0], (float) o->s_values[0], m, err)
             : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
      json_t *matrix = json_array ();
      for (int i = 0; i < np && !st; i++)
        {
          json_t *row = json_array ();
          for (int j = 0; j < np; j++)
            {
              json_array_append_new (row, json_real (m[i * np + j]));
              if (log && j > i)
                fprintf (log, "CKA(%s, %s) at s=%g: %.4f\n", res[0]->probes[i].name,
                         res[0]->probes[j].name, o->s_values[0], m[i * np + j]);
            }
          json_array_append_new (matrix, row);
        }
      json_object_set_new (doc, "cka_between_probes", matrix);
      free (m);
    }
  if (!st)
    {
      char path[4096];
      snprintf (path, sizeof path, "%s/measures.json", o->out_dir);
      char *text = json_dumps (doc, JSON_INDENT (2) | JSON_REAL_PRECISION (10));
      if (!text || cli_write_text_atomic (path, text, err))
        st = err->code ? err->code : DS_ERR_NOMEM;
      free (text);
    }
  json_decref (doc);
  return st;
}

/* The model input as the user sees it: [1,3,S,S] in [-1,1] -> RGB8. */
static DsStatus
display_image (const DsImage *img, int size, DsImageFit fit, uint8_t **out, DsError *err)
{
  DsTensor x;
  DsStatus st = ds_image_to_model_input (img, size, fit, &x, err);
  if (st)
    return st;
  size_t px = (size_t) size * size;
  uint8_t *rgb = malloc (px * 3);
  if (!rgb)
    {
      ds_tensor_free (&x);
      return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
    }
  const float *p = ds_tensor_f32 (&x);
  for (size_t i = 0; i < px; i++)
    for (int c = 0; c < 3; c++)
      rgb[3 * i + c] = (uint8_t) lrintf ((p[c * px + i] + 1.0f) * 127.5f);
  ds_tensor_free (&x);
  *out = rgb;
  return DS_OK;
}

int
cli_cmd_render (const CliOptions *o)
{
  if (o->n_images < 1 || o->n_images > 2 || !o->prompt || !o->out_dir
      || (o->n_probes == 0 && !o->words))
    {
      fprintf (stderr, "diffscope-cli: render needs --image (or two for a pair view), --prompt, "
                       "--out-dir and at least one --probe or --words\n");
      return 2;
    }
  DsError err = { 0 };
  DsBackend *be = NULL;
  DsSession *s = NULL;
  if (cli_open_session (o, &be, &s, &err))
    return cli_fail (&err);
  DsStatus st = cli_render_write (o, be, s, stdout, &err);
  cli_close_session (be, s);
#ifdef DS_HAVE_CAIRO
  ds_sheet_cleanup ();
#endif
  return st ? cli_fail (&err) : 0;
}

DsStatus
cli_render_write (const CliOptions *o, DsBackend *be, DsSession *ses, FILE *log, DsError *err)
{
  DsPipeline *p = ds_session_pipeline (ses);
  CliOptions opt = *o;
  if (opt.n_s == 0)
    opt.s_values[opt.n_s++] = 7.5;
  const DsProbeList *list;
  DsImage img[2] = { 0 };
  DsSessionResult *res[2] = { 0 };
  bool *want = NULL;
  uint8_t *shown = NULL;
  Tiles t = { .o = &opt, .size = opt.size };
  int rc = 1, layers[64], n_layers = 0;
  double cka_s[21], *cka = NULL;
  const int n_cka = 21;
  bool made_dir = false;
  DsTensor noise = { 0 };

  if (ds_colormap_from_name (opt.colormap, &t.cmap, err)
      || ds_pipeline_probes (p, opt.size, &list, err)
      || cli_want_probes (list, opt.probes, opt.n_probes, &want, err)
      || (opt.noise
          && cli_load_noise (opt.noise, ds_pipeline_latent_shape (p, opt.size), &noise, err))
      || cli_ensure_dir (opt.out_dir, &made_dir, err))
    goto out;
  for (int i = 0; i < opt.n_probes; i++)
    {
      const DsProbeInfo *q = &list->probes[ds_probe_list_find (list, opt.probes[i])];
      if (q->kind == DS_PROBE_SELF_MAP || q->kind == DS_PROBE_CROSS_MAP)
        {
          ds_error_set (err, DS_ERR_INVALID,
                        "%s is an attention map, not a feature map: use --words for "
                        "cross-attention heatmaps, or `features` for the raw maps",
                        q->name);
          goto out;
        }
    }
  if (opt.words)
    {
      /* checked here for the message that names --heat-res */
      const int lat = ds_pipeline_latent_shape (p, opt.size).h;
      int side = opt.heat_res ? opt.heat_res : ds_pipeline_heat_side (p, opt.size);
      n_layers = ds_heatmap_cross_layers (list, opt.daam ? 0 : (int64_t) side * side, layers, 64);
      if (n_layers == 0)
        {
          ds_error_set (err, DS_ERR_INVALID,
                        "no cross-attention layer works at %dx%d for a %d image; try --heat-res "
                        "%d, %d or %d",
                        side, side, opt.size, lat / 2, lat / 4, lat / 8);
          goto out;
        }
    }
  for (int i = 0; i < opt.n_images; i++)
    {
      if (ds_image_load (opt.images[i], &img[i], err))
        goto out;
      /* the word heat maps (of the first image) with their ensemble */
      DsQuery q = cli_query (&opt, ses, &img[i]);
      q.probes = opt.probes;
      q.n_probes = opt.n_probes;
      q.noise = noise.data; /* with two images, the same ε for both */
      if (opt.words && i == 0)
        {
          /* 0: the session's default, the layers at a quarter of the latent side */
          q.heat_nq = opt.daam ? 0 : opt.heat_res * opt.heat_res;
          q.heat_daam = opt.daam;
          q.timesteps = opt.timesteps;
          q.n_timesteps = opt.n_timesteps;
          q.trials = opt.trials;
        }
      DsStatus st = ds_session_run (ses, &q, cli_run_control (), &res[i], err);
      cli_run_control_end ();
      if (st || cli_check_finite (res[i], err))
        {
          ds_error_prefix (err, err->code, "%s", opt.images[i]);
          goto out;
        }
    }
  if (display_image (&img[0], opt.size, opt.crop ? DS_FIT_CENTER_CROP : DS_FIT_STRETCH, &shown,
                     err))
    goto out;
  {
    uint8_t *copy = malloc ((size_t) opt.size * opt.size * 3);
    if (!copy)
      goto out;
    memcpy (copy, shown, (size_t) opt.size * opt.size * 3);
    char cap[300];
    snprintf (cap, sizeof cap, "input (%dx%d)\n\"%s\"", opt.size, opt.size, opt.prompt);
    if (tile_add (&t, copy, "input.png", cap, err))
      goto out;
  }
  if (opt.cka)
    {
      for (int i = 0; i < n_cka; i++)
        cka_s[i] = 0.5 * i;
      cka = calloc ((size_t) (opt.n_probes ? opt.n_probes : 1) * n_cka, sizeof *cka);
    }
  for (int i = 0; i < opt.n_probes; i++)
    {
      const DsSessionProbe *pr[2] = { &res[0]->probes[i],
                                      res[1] ? &res[1]->probes[i] : NULL };
      if (render_probe (&t, pr, opt.n_images, cka ? cka + i * n_cka : NULL, cka_s, n_cka, err))
        goto out;
    }
  if (opt.words)
    {
      WordSource ws;
      word_source (&opt, res[0], &ws);
      if (render_words (&t, &res[0]->cond, &ws, shown, err))
        goto out;
    }

  if (opt.n_probes
      && write_measures (&opt, res, opt.n_images, cka, cka_s, n_cka, log, err))
    goto out;

  char title[1024], path[4096];
  snprintf (title, sizeof title, "Diffscope · %s\n\"%s\" · t=%d%s · seed %llu · %s",
            ds_pipeline_label (p), opt.prompt, opt.t, opt.meng ? " (UNet at t-1)" : "",
            opt.seed, be->name);
#ifdef DS_HAVE_CAIRO
  DsSheetTile tiles[MAX_TILES];
  for (int i = 0; i < t.n; i++)
    tiles[i] = (DsSheetTile){ t.rgb[i], t.size, t.size, t.caption[i] };
  snprintf (path, sizeof path, "%s/sheet.png", opt.out_dir);
  if (ds_sheet_write_png (path, tiles, t.n, 0, title, err))
    goto out;
  t.written++;
  if (cka)
    {
      const double *series[CLI_MAX_LIST];
      const char *names[CLI_MAX_LIST];
      for (int i = 0; i < opt.n_probes; i++)
        {
          series[i] = cka + i * n_cka;
          names[i] = list->probes[ds_probe_list_find (list, opt.probes[i])].name;
        }
      snprintf (path, sizeof path, "%s/cka.png", opt.out_dir);
      if (ds_plot_cka_png (path, cka_s, series, opt.n_probes, names, n_cka, title, err))
        goto out;
      t.written++;
    }
#else
  (void) path;
  if (cka)
    fprintf (stderr, "diffscope-cli: note: built without cairo: no sheet.png or cka.png\n");
#endif
  if (cka && log)
    for (int i = 0; i < opt.n_probes; i++)
      {
        fprintf (log, "CKA(X_s, X_uncond) %s:", list->probes[ds_probe_list_find (list, opt.probes[i])].name);
        for (int j = 0; j < n_cka; j += 2)
          fprintf (log, " s=%g %.3f", cka_s[j], cka[i * n_cka + j]);
        fprintf (log, "\n");
      }
  if (log)
    fprintf (log, "wrote %d PNG files to %s\n", t.written, opt.out_dir);
  if (log && ds_pipeline_is_builtin (p))
    fprintf (log, "note: " DS_BUILTIN_MODEL_LABEL "; %s\n", CLI_BUILTIN_WORDS);
  rc = 0;

out:
  /* a failed render leaves no empty folder it made itself (rmdir keeps a
   * folder that has files) */
  if (rc && made_dir)
    rmdir (opt.out_dir);
  ds_tensor_free (&noise);
  tiles_free (&t);
  free (cka);
  free (shown);
  free (want);
  for (int i = 0; i < 2; i++)
    {
      ds_session_result_unref (res[i]);
      ds_image_free (&img[i]);
    }
  return rc ? (err->code ? err->code : DS_ERR_NOMEM) : DS_OK;
}
