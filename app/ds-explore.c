/* ds-explore.c: see ds-explore.h. Runs on the explorer's worker thread. */
#include "ds-explore.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ds-analysis.h"
#include "ds-data.h"
#include "ds-device.h"
#include "ds-heatmap.h"
#include "ds-pca.h"
#include "ds-safetensors.h"

#ifndef DS_DATA_DIR
#define DS_DATA_DIR "resources"
#endif

/* The timestep ensemble of the heat maps (DAAM / the paper's Fig. 5 sweep). */
static const int ensemble_timesteps[] = { 189, 389, 589, 789, 989 };

G_DEFINE_QUARK (ds-explore-error-quark, ds_explore_error)

void
ds_explore_set_error (GError **error, const DsError *err)
{
  g_set_error_literal (error, DS_EXPLORE_ERROR, (int) err->code,
                       err->message[0] ? err->message : ds_status_name (err->code));
}

/* ---- shared images ---------------------------------------------------------- */

static void
shared_image_clear (gpointer data)
{
  DsSharedImage *im = data;
  ds_image_free (&im->image);
  g_free (im->name);
}

static DsSharedImage *
shared_image_wrap (DsImage *img, const char *name)
{
  DsSharedImage *im = g_atomic_rc_box_new0 (DsSharedImage);
  im->image = *img;
  im->name = g_strdup (name);
  return im;
}

DsSharedImage *
ds_shared_image_load (const char *path, GError **error)
{
  DsImage img = { 0 };
  DsError err = { 0 };
  if (ds_image_load (path, &img, &err))
    {
      ds_explore_set_error (error, &err);
      return NULL;
    }
  g_autofree char *base = g_path_get_basename (path);
  return shared_image_wrap (&img, base);
}

DsSharedImage *
ds_shared_image_decode (const void *data, gsize size, const char *name, GError **error)
{
  DsImage img = { 0 };
  DsError err = { 0 };
  if (ds_image_decode (data, size, name, &img, &err))
    {
      ds_explore_set_error (error, &err);
      return NULL;
    }
  return shared_image_wrap (&img, name);
}

DsSharedImage *
ds_shared_image_ref (DsSharedImage *im)
{
  return im ? g_atomic_rc_box_acquire (im) : NULL;
}

void
ds_shared_image_unref (DsSharedImage *im)
{
  if (im)
    g_atomic_rc_box_release_full (im, shared_image_clear);
}

/* ---- params and views -------------------------------------------------------- */

DsExploreParams *
ds_explore_params_copy (const DsExploreParams *p)
{
  DsExploreParams *c = g_new (DsExploreParams, 1);
  *c = *p;
  c->image = ds_shared_image_ref (p->image);
  c->image2 = ds_shared_image_ref (p->image2);
  c->prompt = g_strdup (p->prompt);
  c->prompt2 = g_strdup (p->prompt2);
  c->blocks = g_strdupv (p->blocks);
  return c;
}

void
ds_explore_params_clear (DsExploreParams *p)
{
  g_clear_pointer (&p->image, ds_shared_image_unref);
  g_clear_pointer (&p->image2, ds_shared_image_unref);
  g_clear_pointer (&p->prompt, g_free);
  g_clear_pointer (&p->prompt2, g_free);
  g_clear_pointer (&p->blocks, g_strfreev);
}

void
ds_explore_params_free (DsExploreParams *p)
{
  if (!p)
    return;
  ds_explore_params_clear (p);
  g_free (p);
}

static void
pixels_clear (DsPixels *px)
{
  g_clear_pointer (&px->rgba, g_free);
  px->w = px->h = 0;
}

static void
blocks_clear (DsExploreBlock *b, int n)
{
  for (int i = 0; b && i < n; i++)
    {
      for (int j = 0; j < DS_EXPLORE_TILES; j++)
        pixels_clear (&b[i].tile[j]);
      g_clear_pointer (&b[i].delta_mag, g_free);
    }
}

static void
blocks_free (DsExploreBlock *b, int n)
{
  blocks_clear (b, n);
  g_free (b);
}

void
ds_explore_view_free (DsExploreView *v)
{
  if (!v)
    return;
  for (int k = 0; k < 2; k++)
    {
      blocks_free (v->blocks[k], v->n_blocks);
      pixels_clear (&v->overlay[k]);
      g_free (v->values[k]);
      pixels_clear (&v->pair_tile[k]);
    }
  g_free (v->cka);
  g_free (v);
}

/* ---- the explorer (worker-owned) ---------------------------------------------- */

#define N_CKA ((int) G_N_ELEMENTS (((DsExploreView *) 0)->cka_s)) /* s = 0, 0.5, … 10 */

/* One block's tiles, kept while the result they come from is. */
typedef struct {
  DsSessionResult *r;  /* a reference (keeps `data` alive), or NULL: an empty slot */
  const float *data;   /* the probe's X_uncond: the features' identity (a cache hit
                        * hands out a new result object over the same data) */
  int px;
  double cka[N_CKA];   /* CKA(X_s, X_uncond) at s = 0, 0.5, … 10; NaN: undefined */
  double s;
  DsColormap cmap;
  guint64 tick;        /* last use */
  DsExploreBlock b;
} BlockCache;

#define BLOCK_CACHE 16

struct DsExplorer {
  DsBackend *be;
  DsSession *session;
  char device[512];
  BlockCache blocks[BLOCK_CACHE];
  guint64 tick;
};

DsExplorer *
ds_explorer_open (const char *model_dir, const char *device, GError **error)
{
  DsError err = { 0 };
  char note[256];
  DsBackend *be = ds_device_open (device, NULL, note, sizeof note, &err);
  if (!be)
    {
      ds_explore_set_error (error, &err);
      return NULL;
    }
  DsPipeline *p = NULL;
  DsStatus st = model_dir ? ds_pipeline_open (model_dir, be, &p, &err)
                          : ds_pipeline_open_builtin (ds_data_dir (), be, &p, &err);
  if (st)
    {
      ds_backend_free (be);
      ds_explore_set_error (error, &err);
      return NULL;
    }
  return ds_explorer_new (be, p, note, error);
}

/* DIFFSCOPE_CACHE_MB: the bound on cached UNet results (default 256 MiB,
 * ds-session.h); the soak test sets a small one so the cache fills early. */
static DsSessionLimits
session_limits (void)
{
  DsSessionLimits lim = { 0 };
  const char *mb = g_getenv ("DIFFSCOPE_CACHE_MB");
  if (mb && g_ascii_strtoll (mb, NULL, 10) > 0)
    lim.result_bytes = (size_t) g_ascii_strtoll (mb, NULL, 10) << 20;
  return lim;
}

DsExplorer *
ds_explorer_new (DsBackend *be, DsPipeline *p, const char *note, GError **error)
{
  DsError err = { 0 };
  DsSession *s = NULL;
  DsSessionLimits lim = session_limits ();
  if (ds_session_new (p, &lim, &s, &err))
    {
      ds_backend_free (be);
      ds_explore_set_error (error, &err);
      return NULL;
    }
  DsExplorer *x = g_new0 (DsExplorer, 1);
  x->be = be;
  x->session = s;
  snprintf (x->device, sizeof x->device, "%s%s%s", be->name, note && *note ? " — " : "",
            note ? note : "");
  return x;
}

void
ds_explorer_free (DsExplorer *x)
{
  if (!x)
    return;
  for (int k = 0; k < BLOCK_CACHE; k++)
    {
      if (x->blocks[k].r)
        ds_session_result_unref (x->blocks[k].r);
      blocks_clear (&x->blocks[k].b, 1);
    }
  ds_session_free (x->session);
  ds_backend_free (x->be);
  g_free (x);
}

const char *
ds_explorer_label (DsExplorer *x)
{
  return ds_pipeline_label (ds_session_pipeline (x->session));
}

const char *
ds_explorer_device (DsExplorer *x)
{
  return x->device;
}

gboolean
ds_explorer_is_builtin (DsExplorer *x)
{
  return ds_pipeline_is_builtin (ds_session_pipeline (x->session));
}

DsSession *
ds_explorer_session (DsExplorer *x)
{
  return x->session;
}

int
ds_explorer_native_size (DsExplorer *x)
{
  return ds_query_default (x->session).size;
}

static gboolean
is_feature_map (const DsProbeInfo *pi)
{
  return pi->kind != DS_PROBE_SELF_MAP && pi->kind != DS_PROBE_CROSS_MAP;
}

char **
ds_explorer_block_names (DsExplorer *x)
{
  const DsProbeList *list;
  DsError err = { 0 };
  GPtrArray *a = g_ptr_array_new ();
  if (!ds_pipeline_probes (ds_session_pipeline (x->session), ds_explorer_native_size (x), &list,
                           &err))
    for (int i = 0; i < list->n; i++)
      if (is_feature_map (&list->probes[i]))
        g_ptr_array_add (a, g_strdup (list->probes[i].name));
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

/* ---- pixels ------------------------------------------------------------------- */

static gboolean
fail (GError **error, DsError *err)
{
  ds_explore_set_error (error, err);
  return FALSE;
}

static void
rgb_to_rgba (const guint8 *rgb, size_t n, guint8 *rgba)
{
  for (size_t i = 0; i < n; i++)
    {
      rgba[4 * i] = rgb[3 * i];
      rgba[4 * i + 1] = rgb[3 * i + 1];
      rgba[4 * i + 2] = rgb[3 * i + 2];
      rgba[4 * i + 3] = 255;
    }
}

/* PCA colours rgb01 [gw·gh, 3] -> px × px RGBA (nearest, as Meng et al.). */
static gboolean
pixels_from_rgb01 (const float *rgb01, int gw, int gh, int px, DsPixels *out, GError **error)
{
  DsError err = { 0 };
  g_autofree guint8 *small = g_malloc ((size_t) gw * gh * 3);
  g_autofree guint8 *big = g_malloc ((size_t) px * px * 3);
  ds_render_rgb01 (rgb01, (size_t) gw * gh, small);
  if (ds_render_resize_nearest (small, gw, gh, 3, px, px, big, &err))
    return fail (error, &err);
  out->w = out->h = px;
  out->rgba = g_malloc ((size_t) px * px * 4);
  rgb_to_rgba (big, (size_t) px * px, out->rgba);
  return TRUE;
}

/* A scalar map [gh, gw] -> px × px RGBA through a colormap (bilinear); over
 * [vmin, vmax], or its own range when both are NaN. */
static gboolean
pixels_from_map (const float *map, int gw, int gh, int px, DsColormap cmap, double vmin,
                 double vmax, DsPixels *out, GError **error)
{
  DsError err = { 0 };
  out->rgba = g_malloc ((size_t) px * px * 4);
  out->w = out->h = px;
  if (ds_render_heatmap (map, gw, gh, px, px, cmap, vmin, vmax, out->rgba, &err))
    {
      pixels_clear (out);
      return fail (error, &err);
    }
  return TRUE;
}

static gboolean
pca_tile (const float *x, int64_t c, int gw, int gh, int px, DsPixels *out, char *caption,
          size_t cap_size, const char *what, GError **error)
{
  DsError err = { 0 };
  const int64_t n = (int64_t) gw * gh;
  g_autofree float *rgb01 = g_malloc ((size_t) n * 3 * sizeof (float));
  double ratio[3];
  if (ds_pca_rgb (x, c, n, rgb01, ratio, &err))
    return fail (error, &err);
  snprintf (caption, cap_size, "%s · var %.0f/%.0f/%.0f%%", what, 100 * ratio[0], 100 * ratio[1],
            100 * ratio[2]);
  return pixels_from_rgb01 (rgb01, gw, gh, px, out, error);
}

/* ---- CKA -------------------------------------------------------------------------- */

/* out [N_CKA] = CKA(X_s, X_uncond) of one probe; NaN where undefined (a
 * constant map). */
static void
guidance_cka (const DsSessionProbe *pr, double *out)
{
  float s[N_CKA];
  for (int i = 0; i < N_CKA; i++)
    s[i] = 0.5f * i;
  DsError err = { 0 };
  if (ds_cka_guidance_sweep (pr->uncond, pr->cond, pr->c, pr->h * pr->w, s, N_CKA, out, &err))
    for (int i = 0; i < N_CKA; i++)
      out[i] = NAN;
}

/* ---- one block's tiles ---------------------------------------------------------- */

/* The X_s tile of a block at strength s (the only tile that depends on s). */
static gboolean
xs_tile (const DsSessionProbe *pr, double s, int px, DsExploreBlock *b, GError **error)
{
  const int64_t c = pr->c, n = pr->h * pr->w;
  g_autofree float *xs = g_malloc ((size_t) (c * n) * sizeof (float));
  ds_guidance_amplify (pr->uncond, pr->cond, (float) s, xs, c * n);
  char what[64];
  snprintf (what, sizeof what, "PCA X_s (s = %.2g)", s);
  pixels_clear (&b->tile[1]);
  return pca_tile (xs, c, (int) pr->w, (int) pr->h, px, &b->tile[1], b->caption[1],
                   sizeof b->caption[1], what, error);
}

/* The |Δcond| tile in a colormap. */
static gboolean
magnitude_tile (DsExploreBlock *b, int px, DsColormap cmap, GError **error)
{
  pixels_clear (&b->tile[3]);
  return pixels_from_map (b->delta_mag, b->gw, b->gh, px, cmap, NAN, NAN, &b->tile[3], error);
}

/* Every tile of a block: PCA of X_uncond and of Δcond, |Δcond|, X_s at s. */
static gboolean
block_tiles (const DsSessionProbe *pr, double s, int px, DsColormap cmap, DsExploreBlock *b,
             GError **error)
{
  const int64_t c = pr->c, n = pr->h * pr->w;
  const int gw = (int) pr->w, gh = (int) pr->h;
  g_strlcpy (b->name, pr->name, sizeof b->name);
  g_autofree float *delta = g_malloc ((size_t) (c * n) * sizeof (float));
  ds_delta_cond (pr->uncond, pr->cond, delta, c * n);
  b->gw = gw;
  b->gh = gh;
  b->delta_mag = g_malloc ((size_t) n * sizeof (float));
  ds_delta_magnitude (delta, c, n, b->delta_mag);
  if (!pca_tile (pr->uncond, c, gw, gh, px, &b->tile[0], b->caption[0], sizeof b->caption[0],
                 "PCA X_uncond", error)
      || !xs_tile (pr, s, px, b, error)
      || !pca_tile (delta, c, gw, gh, px, &b->tile[2], b->caption[2], sizeof b->caption[2],
                    "PCA Δcond", error)
      || !magnitude_tile (b, px, cmap, error))
    return FALSE;
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    {
      lo = fminf (lo, b->delta_mag[i]);
      hi = fmaxf (hi, b->delta_mag[i]);
    }
  snprintf (b->caption[3], sizeof b->caption[3], "|Δcond| · %.3g … %.3g", lo, hi);
  return TRUE;
}

static void
block_copy (DsExploreBlock *dst, const DsExploreBlock *src)
{
  *dst = *src;
  for (int j = 0; j < DS_EXPLORE_TILES; j++)
    dst->tile[j].rgba = g_memdup2 (src->tile[j].rgba, (gsize) src->tile[j].w * src->tile[j].h * 4);
  dst->delta_mag = g_memdup2 (src->delta_mag, (gsize) src->gw * src->gh * sizeof (float));
}

/* A block's tiles from the explorer's cache: the PCA of X_uncond and of
 * Δcond depend only on the features, |Δcond| on the colormap too, X_s on s;
 * so an s change computes one PCA per block and a word pick none. */
static gboolean
cached_block (DsExplorer *x, DsSessionResult *r, int i, double s, int px, DsColormap cmap,
              DsExploreBlock *out, double *cka, GError **error)
{
  BlockCache *e = NULL, *oldest = &x->blocks[0];
  for (int k = 0; k < BLOCK_CACHE; k++)
    {
      BlockCache *c = &x->blocks[k];
      if (c->r && c->data == r->probes[i].uncond && c->px == px)
        e = c;
      if (c->tick < oldest->tick)
        oldest = c;
    }
  if (!e)
    {
      e = oldest;
      if (e->r)
        ds_session_result_unref (e->r);
      blocks_clear (&e->b, 1);
      memset (e, 0, sizeof *e);
      if (!block_tiles (&r->probes[i], s, px, cmap, &e->b, error))
        {
          blocks_clear (&e->b, 1);
          memset (&e->b, 0, sizeof e->b);
          return FALSE;
        }
      e->r = ds_session_result_ref (r);
      e->data = r->probes[i].uncond;
      e->px = px;
      guidance_cka (&r->probes[i], e->cka);
      e->s = s;
      e->cmap = cmap;
    }
  else
    {
      if (e->s != s && !xs_tile (&r->probes[i], s, px, &e->b, error))
        return FALSE;
      e->s = s;
      if (e->cmap != cmap && !magnitude_tile (&e->b, px, cmap, error))
        return FALSE;
      e->cmap = cmap;
    }
  e->tick = ++x->tick;
  block_copy (out, &e->b);
  if (cka)
    memcpy (cka, e->cka, sizeof e->cka);
  return TRUE;
}

/* ---- overlays ---------------------------------------------------------------------- */

#define OVERLAY_PX 256

static gboolean
word_overlay (const DsSessionResult *r, const DsExploreParams *p, int k, DsExploreView *v,
              int slot, GError **error)
{
  if (!r->heat || p->word[k] < 0)
    return TRUE;
  const int64_t hw = r->heat_h * r->heat_w;
  DsTokenWord word = { .first = p->word[k], .count = MAX (p->word_count[k], 1) };
  g_strlcpy (word.text, "(chosen word)", sizeof word.text);
  for (int i = 0; i < r->cond.n_words; i++)
    if (r->cond.words[i].first == word.first)
      word = r->cond.words[i];
  DsError err = { 0 };
  float *map = g_malloc ((size_t) hw * sizeof (float));
  if (ds_heatmap_word (r->heat, hw, r->heat_k, &word, map, &err))
    {
      g_free (map);
      return fail (error, &err);
    }
  ds_heatmap_normalize (map, hw, DS_HEATMAP_NORM_MAX);
  v->values[slot] = map;
  v->vw[slot] = (int) r->heat_w;
  v->vh[slot] = (int) r->heat_h;
  snprintf (v->overlay_label[slot], sizeof v->overlay_label[slot],
            "“%s”: cross-attention, %d layers × heads at %lld×%lld%s", word.text, r->heat_layers,
            (long long) r->heat_h, (long long) r->heat_w,
            r->runs > 1 ? ", timestep ensemble" : "");
  return pixels_from_map (map, (int) r->heat_w, (int) r->heat_h, OVERLAY_PX, p->cmap, 0.0, 1.0,
                          &v->overlay[slot], error);
}

/* Cosine similarity of X_s at the point in a to every position of b (same
 * probe; b may be a): out [b.h·b.w] in [-1, 1]. */
static void
point_similarity (const DsSessionProbe *a, const DsSessionProbe *b, double s, double u, double vv,
                  float *out)
{
  const int64_t c = a->c, na = a->h * a->w, nb = b->h * b->w;
  const int64_t gx = CLAMP ((int64_t) (u * a->w), 0, a->w - 1);
  const int64_t gy = CLAMP ((int64_t) (vv * a->h), 0, a->h - 1);
  const int64_t at = gy * a->w + gx;
  g_autofree double *f = g_malloc ((size_t) c * sizeof (double));
  double fn = 0;
  for (int64_t ch = 0; ch < c; ch++)
    {
      double xu = a->uncond[ch * na + at], xc = a->cond[ch * na + at];
      f[ch] = xu + s * (xc - xu);
      fn += f[ch] * f[ch];
    }
  for (int64_t i = 0; i < nb; i++)
    {
      double dot = 0, gn = 0;
      for (int64_t ch = 0; ch < c; ch++)
        {
          double xu = b->uncond[ch * nb + i], xc = b->cond[ch * nb + i];
          double g = xu + s * (xc - xu);
          dot += f[ch] * g;
          gn += g * g;
        }
      out[i] = fn > 0 && gn > 0 ? (float) (dot / sqrt (fn * gn)) : 0.0f;
    }
}

static gboolean
point_overlay (const DsSessionProbe *a, const DsSessionProbe *b, const DsExploreParams *p,
               DsExploreView *v, int slot, GError **error)
{
  const int64_t nb = b->h * b->w;
  float *map = g_malloc ((size_t) nb * sizeof (float));
  point_similarity (a, b, p->s, p->point_u, p->point_v, map);
  v->values[slot] = map;
  v->vw[slot] = (int) b->w;
  v->vh[slot] = (int) b->h;
  snprintf (v->overlay_label[slot], sizeof v->overlay_label[slot],
            "cosine similarity to the point (%d, %d) at %s%s",
            (int) CLAMP (p->point_u * a->w, 0, a->w - 1),
            (int) CLAMP (p->point_v * a->h, 0, a->h - 1), a->name,
            slot == 1 && a != b ? ", second image" : "");
  return pixels_from_map (map, (int) b->w, (int) b->h, OVERLAY_PX, p->cmap, -1.0, 1.0,
                          &v->overlay[slot], error);
}

static gboolean
tile_overlay (DsExploreView *v, const DsExploreParams *p)
{
  if (p->tile_row < 0 || p->tile_row >= v->n_blocks || p->tile_col < 0
      || p->tile_col >= DS_EXPLORE_TILES)
    return TRUE;
  const DsExploreBlock *b = &v->blocks[0][p->tile_row];
  const DsPixels *t = &b->tile[p->tile_col];
  v->overlay[0].w = t->w;
  v->overlay[0].h = t->h;
  v->overlay[0].rgba = g_memdup2 (t->rgba, (size_t) t->w * t->h * 4);
  snprintf (v->overlay_label[0], sizeof v->overlay_label[0], "%s: %s", b->name,
            b->caption[p->tile_col]);
  if (p->tile_col == 3)
    {
      v->values[0] = g_memdup2 (b->delta_mag, (size_t) b->gw * b->gh * sizeof (float));
      v->vw[0] = b->gw;
      v->vh[0] = b->gh;
    }
  return TRUE;
}

/* ---- the update ------------------------------------------------------------------- */

static double
now_ms (void)
{
  return g_get_monotonic_time () / 1e3;
}

static DsStatus run_query_once (DsExplorer *x, const DsExploreParams *p, const DsImage *image,
                                const char *prompt, const DsRunControl *ctl,
                                DsSessionResult **out, DsError *err);

/* The GPU was lost (a fault that ends the CUDA context, be->lost): the same
 * model opens again on the CPU, the device label says why, and the lost
 * backend goes. The caches go with the old session; cached blocks are host
 * data and stay. */
static DsStatus
move_to_cpu (DsExplorer *x, DsError *err)
{
  const DsPipeline *old = ds_session_pipeline (x->session);
  if (ds_pipeline_is_untrained (old))
    return err->code; /* a test fixture: nothing to reopen it from */
  DsBackend *cpu = ds_backend_cpu_new (err);
  if (!cpu)
    return err->code;
  DsPipeline *p = NULL;
  DsStatus st = ds_pipeline_is_builtin (old)
                  ? ds_pipeline_open_builtin (ds_data_dir (), cpu, &p, err)
                  : ds_pipeline_open (ds_pipeline_model (old)->root, cpu, &p, err);
  DsSession *s = NULL;
  DsSessionLimits lim = session_limits ();
  if (st == DS_OK)
    st = ds_session_new (p, &lim, &s, err); /* takes p, also on failure */
  if (st != DS_OK)
    {
      ds_backend_free (cpu);
      return ds_error_prefix (err, st, "moving to the CPU after the GPU failed");
    }
  ds_session_free (x->session);
  ds_backend_free (x->be);
  x->session = s;
  x->be = cpu;
  snprintf (x->device, sizeof x->device,
            "%s — the GPU failed and cannot be used again until Diffscope restarts", cpu->name);
  return DS_OK;
}

static DsStatus
run_query (DsExplorer *x, const DsExploreParams *p, const DsImage *image, const char *prompt,
           const DsRunControl *ctl, DsSessionResult **out, DsError *err)
{
  DsStatus st = run_query_once (x, p, image, prompt, ctl, out, err);
  if (st == DS_ERR_DEVICE && x->be->lost)
    {
      g_message ("%s; moving to the CPU", err->message);
      if (move_to_cpu (x, err) == DS_OK)
        st = run_query_once (x, p, image, prompt, ctl, out, err);
    }
  return st;
}

static DsStatus
run_query_once (DsExplorer *x, const DsExploreParams *p, const DsImage *image,
                const char *prompt, const DsRunControl *ctl, DsSessionResult **out,
                DsError *err)
{
  DsQuery q = ds_query_default (x->session);
  q.image = image;
  if (p->size > 0)
    q.size = p->size;
  q.prompt = prompt ? prompt : "";
  q.t = p->t;
  q.seed = p->seed;
  q.probes = (const char *const *) p->blocks;
  q.n_probes = p->blocks ? (int) g_strv_length (p->blocks) : 0;
  if (p->ensemble)
    {
      q.timesteps = ensemble_timesteps;
      q.n_timesteps = G_N_ELEMENTS (ensemble_timesteps);
      q.trials = MAX (p->trials, 1);
    }
  return ds_session_run (x->session, &q, ctl, out, err);
}

DsExploreView *
ds_explore_update (DsExplorer *x, const DsExploreParams *p, const atomic_int *cancel,
                   DsProgressFn progress, gpointer progress_data, GError **error)
{
  if (!p->image)
    {
      g_set_error_literal (error, DS_EXPLORE_ERROR, DS_ERR_INVALID, "no image is open");
      return NULL;
    }
  DsRunControl ctl = { .cancel = cancel, .progress = progress, .user = progress_data };
  DsError err = { 0 };
  DsSessionStats before;
  ds_session_stats (x->session, &before);
  const double t0 = now_ms ();
  const gboolean two = p->prompt2 && *p->prompt2;
  DsSessionResult *r[2] = { NULL, NULL }, *r2 = NULL; /* per prompt; image 2 with prompt 0 */
  DsExploreView *v = NULL;
  DsStatus st = run_query (x, p, &p->image->image, p->prompt, &ctl, &r[0], &err);
  if (!st && two)
    st = run_query (x, p, &p->image->image, p->prompt2, &ctl, &r[1], &err);
  if (!st && p->image2)
    st = run_query (x, p, &p->image2->image, p->prompt, &ctl, &r2, &err);
  if (st)
    {
      ds_explore_set_error (error, &err);
      goto out;
    }
  const double t1 = now_ms ();

  v = g_new0 (DsExploreView, 1);
  v->n_prompts = two ? 2 : 1;
  v->n_s = N_CKA;
  for (int i = 0; i < N_CKA; i++)
    v->cka_s[i] = 0.5 * i;
  v->cka = g_new0 (double, (size_t) MAX (r[0]->n_probes, 1) * N_CKA);
  v->t = p->t;
  v->s = p->s;
  v->seed = p->seed;
  v->n_blocks = r[0]->n_probes;
  g_strlcpy (v->device, x->device, sizeof v->device);
  for (int k = 0; k < v->n_prompts; k++)
    {
      v->tokens[k] = r[k]->cond;
      v->truncated[k] = r[k]->cond.truncated;
      v->blocks[k] = g_new0 (DsExploreBlock, MAX (v->n_blocks, 1));
      for (int i = 0; i < v->n_blocks; i++)
        {
          if (cancel && atomic_load (cancel))
            {
              g_set_error_literal (error, DS_EXPLORE_ERROR, DS_ERR_CANCELLED, "superseded");
              goto fail;
            }
          if (!cached_block (x, r[k], i, p->s, p->tile_px > 0 ? p->tile_px : 160, p->cmap,
                             &v->blocks[k][i], k ? NULL : v->cka + (size_t) i * N_CKA, error))
            goto fail;
        }
    }

  /* the left picture: image 1 with prompt 0's overlay */
  gboolean ok = TRUE;
  if (p->overlay == DS_OVERLAY_WORD)
    ok = word_overlay (r[0], p, 0, v, 0, error);
  else if (p->overlay == DS_OVERLAY_TILE)
    ok = tile_overlay (v, p);
  else if (p->overlay == DS_OVERLAY_POINT && p->point && v->n_blocks > 0)
    ok = point_overlay (&r[0]->probes[0], &r[0]->probes[0], p, v, 0, error);
  /* the right picture: image 2 (pair view), else image 1 with prompt 2 */
  if (ok && r2)
    {
      if (p->overlay == DS_OVERLAY_POINT && p->point && v->n_blocks > 0)
        ok = point_overlay (&r[0]->probes[0], &r2->probes[0], p, v, 1, error);
      else if (p->overlay == DS_OVERLAY_WORD)
        ok = word_overlay (r2, p, 0, v, 1, error);
    }
  else if (ok && two && p->overlay == DS_OVERLAY_WORD)
    ok = word_overlay (r[1], p, 1, v, 1, error);
  if (!ok)
    goto fail;

  /* the pair view: one PCA over both images' X_s at the first block */
  if (r2 && v->n_blocks > 0)
    {
      const DsSessionProbe *a = &r[0]->probes[0], *b = &r2->probes[0];
      const int64_t na = a->h * a->w, nb = b->h * b->w, c = a->c;
      g_autofree float *xa = g_malloc ((size_t) (c * na) * sizeof (float));
      g_autofree float *xb = g_malloc ((size_t) (c * nb) * sizeof (float));
      g_autofree float *ra = g_malloc ((size_t) na * 3 * sizeof (float));
      g_autofree float *rb = g_malloc ((size_t) nb * 3 * sizeof (float));
      ds_guidance_amplify (a->uncond, a->cond, (float) p->s, xa, c * na);
      ds_guidance_amplify (b->uncond, b->cond, (float) p->s, xb, c * nb);
      const float *xs[2] = { xa, xb };
      const int64_t ns[2] = { na, nb };
      float *rgb[2] = { ra, rb };
      double ratio[3];
      int px = p->tile_px > 0 ? p->tile_px : 160;
      if (ds_pca_rgb_joint (xs, ns, 2, c, rgb, ratio, &err))
        {
          ds_explore_set_error (error, &err);
          goto fail;
        }
      if (!pixels_from_rgb01 (ra, (int) a->w, (int) a->h, px, &v->pair_tile[0], error)
          || !pixels_from_rgb01 (rb, (int) b->w, (int) b->h, px, &v->pair_tile[1], error))
        goto fail;
      v->pair = TRUE;
      snprintf (v->pair_caption, sizeof v->pair_caption,
                "joint PCA of X_s (s = %.2g) at %s · var %.0f/%.0f/%.0f%%", p->s, a->name,
                100 * ratio[0], 100 * ratio[1], 100 * ratio[2]);
    }


  DsSessionStats after;
  ds_session_stats (x->session, &after);
  v->unet_forwards = (int) (after.unet_forwards - before.unet_forwards);
  v->unet_forwards_total = after.unet_forwards;
  v->ms_network = t1 - t0;
  DsSessionResult *all[3] = { r[0], r[1], r2 };
  for (int k = 0; k < 3; k++)
    if (all[k])
      {
        v->ms_image += all[k]->ms_image;
        v->ms_vae += all[k]->ms_vae;
        v->ms_text += all[k]->ms_text;
        v->ms_unet += all[k]->ms_unet;
      }
  v->ms_analysis = now_ms () - t1;
  goto out;

fail:
  ds_explore_view_free (v);
  v = NULL;
out:
  for (int k = 0; k < 2; k++)
    if (r[k])
      ds_session_result_unref (r[k]);
  if (r2)
    ds_session_result_unref (r2);
  return v;
}

/* ---- export ----------------------------------------------------------------------- */

gboolean
ds_explore_export_features (DsExplorer *x, const DsExploreParams *p, const char *path,
                            const atomic_int *cancel, GError **error)
{
  if (!p->image)
    {
      g_set_error_literal (error, DS_EXPLORE_ERROR, DS_ERR_INVALID, "no image is open");
      return FALSE;
    }
  DsRunControl ctl = { .cancel = cancel };
  DsError err = { 0 };
  const gboolean two = p->prompt2 && *p->prompt2;
  DsSessionResult *r[2] = { NULL, NULL };
  DsStatus st = run_query (x, p, &p->image->image, p->prompt, &ctl, &r[0], &err);
  if (!st && two)
    st = run_query (x, p, &p->image->image, p->prompt2, &ctl, &r[1], &err);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GArray *items = g_array_new (FALSE, TRUE, sizeof (DsSafetensorsItem));
  DsTensor *tensors = NULL;
  int n_t = 0;
  if (!st)
    {
      int n_prompts = two ? 2 : 1;
      tensors = g_new0 (DsTensor, 2 * n_prompts * r[0]->n_probes + 1);
      for (int k = 0; k < n_prompts && !st; k++)
        for (int i = 0; i < r[k]->n_probes && !st; i++)
          for (int half = 0; half < 2 && !st; half++)
            {
              const DsSessionProbe *pr = &r[k]->probes[i];
              DsTensor *t = &tensors[n_t++];
              int64_t shape[3] = { pr->c, pr->h, pr->w };
              if ((st = ds_tensor_alloc (t, DS_DTYPE_F32, 3, shape, &err)))
                break;
              memcpy (t->data, half ? pr->cond : pr->uncond, ds_tensor_nbytes (t));
              char *name = g_strdup_printf ("%s%s.%s", k ? "mismatched." : "",
                                            half ? "cond" : "uncond", pr->name);
              g_ptr_array_add (names, name);
              DsSafetensorsItem it = { name, t };
              g_array_append_val (items, it);
            }
    }
  if (!st)
    {
      g_autofree char *t = g_strdup_printf ("%d", p->t);
      g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, p->seed);
      const char *meta[] = { "model", ds_explorer_label (x), "image", p->image->name,
                             "prompt", p->prompt ? p->prompt : "",
                             "mismatched_prompt", two ? p->prompt2 : "",
                             "t", t, "seed", seed, "uncond_prompt", "", NULL };
      st = ds_safetensors_write (path, (const DsSafetensorsItem *) items->data, (int) items->len,
                                 meta, &err);
    }
  for (int i = 0; i < n_t; i++)
    ds_tensor_free (&tensors[i]);
  g_free (tensors);
  g_array_free (items, TRUE);
  g_ptr_array_free (names, TRUE);
  for (int k = 0; k < 2; k++)
    if (r[k])
      ds_session_result_unref (r[k]);
  if (st)
    {
      ds_explore_set_error (error, &err);
      return FALSE;
    }
  return TRUE;
}
