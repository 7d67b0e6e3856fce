/* cli-render.c: diffscope-cli render — the paper's pictures as PNG files.
 *
 * For each --probe (a feature map, not an attention map), at every --s:
 *   <probe>.pca-uncond.png   PCA → RGB of X_uncond
 *   <probe>.pca-s<S>.png     PCA → RGB of X_s = X_u + s·(X_c − X_u)
 *   <probe>.pca-delta.png    PCA → RGB of Δcond = X_c − X_u
 *   <probe>.delta-heat.png   |Δcond| (L2 over channels), colormapped
 *   <probe>.pair-s<S>-a.png, -b.png  with two --image: one PCA fitted on both
 * With --words, per word of the prompt, word-<k>-<word>.png: the mean cross-
 * attention over heads and the layers at --heat-res (default size/32: SD
 * 2.1-base's five 16×16 layers), overlaid on the image; with --timesteps and
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

static DsStatus
render_probe (Tiles *t, const DsProbeInfo *q, const DsTensor *const *vals, int n_img,
              double *cka_out, const double *cka_s, int n_cka, DsError *err)
{
  const int64_t c = q->shape[0], h = q->shape[1], w = q->shape[2], n = h * w, cn = c * n;
  const float *xu = ds_tensor_f32 (vals[0]), *xc = xu + cn;
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
      const float *xu2 = ds_tensor_f32 (vals[1]), *xc2 = xu2 + cn;
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

/* One request's cond-half cross-attention of layer `li` (a probe index). */
static DsAttnMaps
cond_maps (const DsFeatures *f, int li)
{
  const DsProbeInfo *q = &f->probes.probes[li];
  const DsTensor *v = &f->values[li];
  int64_t side = (int64_t) llround (sqrt ((double) q->shape[1]));
  return (DsAttnMaps){ ds_tensor_f32 (v) + ds_tensor_numel (v) / 2, q->shape[0], side, side,
                       q->shape[2] };
}

/* The word heat maps' source: M [side², k], averaged over heads and `layers`
 * (one resolution) and over the timestep × trial ensemble — or, with --daam,
 * DAAM's aggregation over every down/up layer (models-spec §6.2). The first
 * ensemble member is `first` (already computed); the others are requested
 * here, each running only the UNet (the pipeline caches latent and text). */
typedef struct {
  float *m;      /* [side², k] owned */
  int64_t side, k;
  char how[160]; /* for captions */
} WordSource;

static DsStatus
word_source (const CliOptions *o, DsPipeline *p, const DsImage *img, const bool *want,
             const DsFeatures *first, const int *layers, int n_layers, WordSource *ws,
             DsError *err)
{
  const int n_t = o->n_timesteps ? o->n_timesteps : 1;
  const int runs = n_t * o->trials;
  DsAttnMaps maps[64];
  DsHeatmapAccum acc = { 0 };
  DsDaam *daam = NULL;
  float *one = NULL;
  DsStatus st = DS_OK;
  memset (ws, 0, sizeof *ws);
  DsAttnMaps m0 = cond_maps (first, layers[0]);
  ws->k = m0.k;
  ws->side = o->daam ? o->size / 8 : m0.h;
  const int64_t hw = ws->side * ws->side;
  if (o->daam)
    st = ds_daam_new (ws->side, &daam, err);
  else if (!(one = malloc ((size_t) (hw * ws->k) * sizeof *one)))
    st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!st && !o->daam)
    st = ds_heatmap_accum_init (&acc, hw, ws->k, err);
  for (int r = 0; r < runs && !st; r++)
    {
      DsFeatures f = { 0 };
      const DsFeatures *cur = first;
      int t = o->n_timesteps ? o->timesteps[r / o->trials] : o->t;
      if (r > 0 || t != o->t)
        {
          DsFeatureRequest req = {
            .image = img, .size = o->size, .fit = o->crop ? DS_FIT_CENTER_CROP : DS_FIT_STRETCH,
            .prompt = o->prompt, .uncond_prompt = o->uncond, .t = t,
            .convention = o->meng ? DS_TIMESTEP_MENG : DS_TIMESTEP_DIRECT,
            .seed = o->seed + (unsigned long long) (r % o->trials), .want = want,
          };
          if ((st = ds_pipeline_features (p, &req, &f, err)))
            break;
          cur = &f;
        }
      for (int i = 0; i < n_layers; i++)
        maps[i] = cond_maps (cur, layers[i]);
      if (o->daam)
        for (int i = 0; i < n_layers && !st; i++)
          st = ds_daam_add (daam, layers[i], &maps[i], err);
      else if (!(st = ds_heatmap_mean (maps, n_layers, one, err)))
        st = ds_heatmap_accum_add (&acc, one, hw, ws->k, err);
      ds_features_free (&f);
    }
  if (!st && !(ws->m = malloc ((size_t) (hw * ws->k) * sizeof *ws->m)))
    st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  if (!st)
    st = o->daam ? ds_daam_finish (daam, first->cond.n_tokens, false, ws->m, err)
                 : ds_heatmap_accum_finish (&acc, ws->m, err);
  int n = snprintf (ws->how, sizeof ws->how, "%s%d layers, heads averaged",
                    o->daam ? "DAAM, " : "", n_layers);
  if (runs > 1)
    snprintf (ws->how + n, sizeof ws->how - n, "\n%d timesteps x %d trials", n_t, o->trials);
  free (one);
  ds_heatmap_accum_free (&acc);
  ds_daam_free (daam);
  if (st)
    {
      free (ws->m);
      ws->m = NULL;
    }
  return st;
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

/* X_s of probe k for image `img` at the first --s: [c, h, w], malloc'ed. */
static float *
amplified (const CliOptions *o, const DsFeatures *f, int k)
{
  const DsProbeInfo *q = &f->probes.probes[k];
  int64_t cn = q->shape[0] * q->shape[1] * q->shape[2];
  float *x = malloc ((size_t) cn * sizeof *x);
  const float *xu = ds_tensor_f32 (&f->values[k]);
  if (x)
    ds_guidance_amplify (xu, xu + cn, (float) o->s_values[0], x, cn);
  return x;
}

/* measures.json: CKA(X_s, X_uncond) against s (with --cka), linear CKA between
 * every two probes' X_s (positions as examples; a larger map is brought to the
 * smaller one's size bilinearly first), and with two images the cosine
 * similarity of their X_s per probe (paper Fig. 2c). Printed to `log` too. */
static DsStatus
write_measures (const CliOptions *o, const DsProbeList *list, const DsFeatures *feats, int n_img,
                const double *cka, const double *cka_s, int n_cka, FILE *log, DsError *err)
{
  const int np = o->n_probes;
  json_t *doc = json_object (), *probes = json_array ();
  DsStatus st = DS_OK;
  float **xs = calloc ((size_t) np, sizeof *xs);
  for (int i = 0; i < np && xs; i++)
    {
      int k = ds_probe_list_find (list, o->probes[i]);
      const DsProbeInfo *q = &list->probes[k];
      json_t *pj = json_pack ("{s:s, s:s, s:[I,I,I]}", "name", q->name, "id", q->id, "shape",
                              (json_int_t) q->shape[0], (json_int_t) q->shape[1],
                              (json_int_t) q->shape[2]);
      if (cka)
        {
          json_t *curve = json_array ();
          for (int j = 0; j < n_cka; j++)
            json_array_append_new (curve, json_pack ("[f,f]", cka_s[j], cka[i * n_cka + j]));
          json_object_set_new (pj, "cka_vs_s", curve);
        }
      xs[i] = amplified (o, &feats[0], k);
      if (!xs[i])
        st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
      if (!st && n_img == 2)
        {
          float *xb = amplified (o, &feats[1], k);
          DsCosine cs;
          DsFeatureMap a = { xs[i], q->shape[0], q->shape[1], q->shape[2] };
          DsFeatureMap b = { xb, q->shape[0], q->shape[1], q->shape[2] };
          st = xb ? ds_cosine_maps (a, b, &cs, err) : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
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
  if (!xs)
    st = ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  json_object_set_new (doc, "s", json_real (o->s_values[0]));
  json_object_set_new (doc, "probes", probes);
  if (!st && np >= 2)
    {
      json_t *matrix = json_array ();
      for (int i = 0; i < np && !st; i++)
        {
          json_t *row = json_array ();
          const DsProbeInfo *qi = &list->probes[ds_probe_list_find (list, o->probes[i])];
          for (int j = 0; j < np && !st; j++)
            {
              const DsProbeInfo *qj = &list->probes[ds_probe_list_find (list, o->probes[j])];
              /* both at the smaller of the two sizes */
              const DsProbeInfo *small = qi->shape[1] * qi->shape[2] <= qj->shape[1] * qj->shape[2] ? qi : qj;
              int64_t h = small->shape[1], w = small->shape[2];
              float *ri = NULL, *rj = NULL;
              const float *ai = xs[i], *aj = xs[j];
              if (qi->shape[1] != h || qi->shape[2] != w)
                {
                  ri = malloc ((size_t) (qi->shape[0] * h * w) * sizeof *ri);
                  st = ri ? ds_map_resize_bilinear (xs[i], qi->shape[0], qi->shape[1], qi->shape[2], ri, h, w, err)
                          : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
                  ai = ri;
                }
              if (!st && (qj->shape[1] != h || qj->shape[2] != w))
                {
                  rj = malloc ((size_t) (qj->shape[0] * h * w) * sizeof *rj);
                  st = rj ? ds_map_resize_bilinear (xs[j], qj->shape[0], qj->shape[1], qj->shape[2], rj, h, w, err)
                          : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
                  aj = rj;
                }
              double v = NAN;
              if (!st)
                st = ds_cka_maps ((DsFeatureMap){ ai, qi->shape[0], h, w },
                                  (DsFeatureMap){ aj, qj->shape[0], h, w }, &v, err);
              free (ri);
              free (rj);
              json_array_append_new (row, json_real (v));
              if (!st && log && j > i)
                fprintf (log, "CKA(%s, %s) at s=%g: %.4f\n", qi->name, qj->name, o->s_values[0], v);
            }
          json_array_append_new (matrix, row);
        }
      json_object_set_new (doc, "cka_between_probes", matrix);
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
  for (int i = 0; xs && i < np; i++)
    free (xs[i]);
  free (xs);
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
  DsPipeline *p = NULL;
  if (cli_open_pipeline (o, &be, &p, &err))
    return cli_fail (&err);
  DsStatus st = cli_render_write (o, be, p, stdout, &err);
  cli_close_pipeline (be, p);
#ifdef DS_HAVE_CAIRO
  ds_sheet_cleanup ();
#endif
  return st ? cli_fail (&err) : 0;
}

DsStatus
cli_render_write (const CliOptions *o, DsBackend *be, DsPipeline *p, FILE *log, DsError *err)
{
  CliOptions opt = *o;
  if (opt.n_s == 0)
    opt.s_values[opt.n_s++] = 7.5;
  const DsProbeList *list;
  DsImage img[2] = { 0 };
  DsFeatures feats[2] = { 0 };
  bool *want = NULL;
  uint8_t *shown = NULL;
  Tiles t = { .o = &opt, .size = opt.size };
  int rc = 1, layers[64], n_layers = 0;
  double cka_s[21], *cka = NULL;
  const int n_cka = 21;

  if (ds_colormap_from_name (opt.colormap, &t.cmap, err) || cli_ensure_dir (opt.out_dir, err)
      || ds_pipeline_probes (p, opt.size, &list, err)
      || cli_want_probes (list, opt.probes, opt.n_probes, &want, err))
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
      int res = opt.heat_res ? opt.heat_res : opt.size / 32;
      n_layers = ds_heatmap_cross_layers (list, opt.daam ? 0 : (int64_t) res * res, layers, 64);
      if (n_layers == 0)
        {
          ds_error_set (err, DS_ERR_INVALID,
                        "no cross-attention layer works at %dx%d for a %d image; try --heat-res "
                        "%d, %d or %d",
                        res, res, opt.size, opt.size / 8, opt.size / 16, opt.size / 32);
          goto out;
        }
      for (int i = 0; i < n_layers; i++)
        want[layers[i]] = true;
    }
  for (int i = 0; i < opt.n_images; i++)
    {
      if (ds_image_load (opt.images[i], &img[i], err))
        goto out;
      DsFeatureRequest req = {
        .image = &img[i], .size = opt.size, .fit = opt.crop ? DS_FIT_CENTER_CROP : DS_FIT_STRETCH,
        .prompt = opt.prompt, .uncond_prompt = opt.uncond, .t = opt.t,
        .convention = opt.meng ? DS_TIMESTEP_MENG : DS_TIMESTEP_DIRECT, .seed = opt.seed,
        .want = want,
      };
      if (ds_pipeline_features (p, &req, &feats[i], err))
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
      int k = ds_probe_list_find (list, opt.probes[i]);
      const DsTensor *vals[2] = { &feats[0].values[k], &feats[1].values[k] };
      if (render_probe (&t, &list->probes[k], vals, opt.n_images, cka ? cka + i * n_cka : NULL,
                        cka_s, n_cka, err))
        goto out;
    }
  if (opt.words)
    {
      WordSource ws;
      if (word_source (&opt, p, &img[0], want, &feats[0], layers, n_layers, &ws, err))
        goto out;
      DsStatus wst = render_words (&t, &feats[0].cond, &ws, shown, err);
      free (ws.m);
      if (wst)
        goto out;
    }

  if (opt.n_probes
      && write_measures (&opt, list, feats, opt.n_images, cka, cka_s, n_cka, log, err))
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
  if (log && ds_pipeline_is_demo (p))
    fprintf (log, "note: demo model, UNTRAINED — random weights: the maps show structure, not meaning\n");
  rc = 0;

out:
  tiles_free (&t);
  free (cka);
  free (shown);
  free (want);
  for (int i = 0; i < 2; i++)
    {
      ds_features_free (&feats[i]);
      ds_image_free (&img[i]);
    }
  return rc ? (err->code ? err->code : DS_ERR_NOMEM) : DS_OK;
}
