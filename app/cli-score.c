/* cli-score.c: diffscope-cli score — Discffusion's image–text matching score
 * (docs/models.md §6.5) for every (caption, image) pair, as a table or JSON.
 *
 * One pair's score is ds_session_score (engine/session/ds-score.h) over the
 * timesteps × trials ensemble, with the same noise for every pair (as
 * Discffusion's fixed noise bank); the session caches latents and contexts, so
 * the VAE runs once per image and the text encoder once per caption.
 * Not the released code's 30 steps by default (5: 189..989), and no 0.1
 * factor (rankings do not change).
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ds-analysis.h"
#include "ds-atomic.h"
#include "ds-heatmap.h"
#include "ds-image.h"
#include "ds-score.h"

static const int default_timesteps[] = { 189, 389, 589, 789, 989 };

typedef struct {
  const CliOptions *o;
  DsSession *s;
  DsPipeline *p; /* the session's */
  const int *timesteps;
  int n_timesteps;
  int n_layers;                         /* ds_score_layers: 6 for SD 2.x, 4 built-in */
  int layers[DS_SCORE_MAX_LAYERS];      /* positions among the cross-attention layers */
  char names[DS_SCORE_MAX_LAYERS][48];  /* "D-L2-R0", "M", "U-L3-R2" */
} Scorer;

static DsStatus
scorer_layers (Scorer *s, DsError *err)
{
  return ds_score_layers (s->p, s->o->size, s->layers, s->names, &s->n_layers, err);
}

/* One pair's score: n_timesteps × trials UNet runs (one session query). */
static DsStatus
score_pair (const Scorer *s, const DsImage *img, const char *caption, double *out, DsError *err)
{
  DsQuery q = cli_query (s->o, s->s, img);
  q.prompt = caption;
  q.t = s->timesteps[0];
  q.timesteps = s->timesteps;
  q.n_timesteps = s->n_timesteps;
  q.trials = s->o->trials;
  return ds_session_score (s->s, &q, out, err);
}

/* Index of the largest of n values at stride (NaN never wins); -1 if all NaN. */
static int
argmax (const double *v, int n, int stride)
{
  int best = -1;
  for (int i = 0; i < n; i++)
    if (!isnan (v[i * stride]) && (best < 0 || v[i * stride] > v[best * stride]))
      best = i;
  return best;
}

static json_t *
json_number (double v)
{
  return isfinite (v) ? json_real (v) : json_null ();
}

/* scores [n_captions, n_images] */
static json_t *
score_json (const Scorer *s, DsBackend *be, const double *scores)
{
  const CliOptions *o = s->o;
  const int nc = o->n_captions, ni = o->n_images;
  json_t *ts = json_array (), *layers = json_array (), *images = json_array (),
         *captions = json_array (), *matrix = json_array (), *best_image = json_array (),
         *best_caption = json_array ();
  for (int k = 0; k < s->n_timesteps; k++)
    json_array_append_new (ts, json_integer (s->timesteps[k]));
  for (int j = 0; j < s->n_layers; j++)
    json_array_append_new (layers, json_string (s->names[j]));
  for (int i = 0; i < ni; i++)
    {
      json_array_append_new (images, json_string (o->images[i]));
      json_array_append_new (best_caption, json_integer (argmax (scores + i, nc, ni)));
    }
  for (int c = 0; c < nc; c++)
    {
      json_t *row = json_array ();
      for (int i = 0; i < ni; i++)
        json_array_append_new (row, json_number (scores[c * ni + i]));
      json_array_append_new (matrix, row);
      json_array_append_new (captions, json_string (o->captions[c]));
      json_array_append_new (best_image, json_integer (argmax (scores + c * ni, ni, 1)));
    }
  json_t *doc = json_pack (
    "{s:s, s:s, s:b, s:b, s:s, s:i, s:s, s:s, s:o, s:i, s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
    "score",
    "Discffusion (docs/models.md 6.5): mean over timesteps x trials of (mean over the layers of "
    "the mean cross-attention logsumexp, both CFG halves) + |eps - eps_uncond| - "
    "|eps - eps_cond|; higher = better match",
    "model", ds_pipeline_label (s->p), "untrained", ds_pipeline_is_untrained (s->p), "builtin",
    ds_pipeline_is_builtin (s->p), "device",
    be->name, "size", o->size, "fit", o->crop ? "center-crop" : "stretch",
    "timestep_convention", o->meng ? "meng (unet runs at t-1)" : "direct", "timesteps", ts,
    "trials", o->trials, "seed", (json_int_t) o->seed, "uncond_prompt", o->uncond, "layers",
    layers, "images", images, "captions", captions, "scores", matrix, "best_image", best_image,
    "best_caption", best_caption);
  if (nc == 2 && ni == 2)
    {
      DsWinoground w = ds_winoground_item (scores);
      json_object_set_new (doc, "winoground",
                           json_pack ("{s:b, s:b, s:b}", "text", w.text, "image", w.image,
                                      "group", w.group));
    }
  return doc;
}

static void
print_table (const Scorer *s, const double *scores)
{
  const CliOptions *o = s->o;
  const int nc = o->n_captions, ni = o->n_images;
  printf ("# Discffusion image-text scores (higher = better match) · %s\n",
          ds_pipeline_label (s->p));
  printf ("# timesteps");
  for (int k = 0; k < s->n_timesteps; k++)
    printf ("%c%d", k ? ',' : ' ', s->timesteps[k]);
  printf (" × %d trial%s (seed %llu%s), size %d, layers", o->trials, o->trials > 1 ? "s" : "",
          o->seed, o->trials > 1 ? " + trial" : "", o->size);
  for (int j = 0; j < s->n_layers; j++)
    printf (" %s", s->names[j]);
  printf ("\n");
  for (int i = 0; i < ni; i++)
    printf ("image %-4d %s\n", i + 1, o->images[i]);
  for (int c = 0; c < nc; c++)
    printf ("caption %-3d \"%s\"\n", c + 1, o->captions[c]);
  printf ("\n%-12s", "");
  for (int i = 0; i < ni; i++)
    printf (" %12s%-3d", "image ", i + 1);
  printf ("  best image\n");
  for (int c = 0; c < nc; c++)
    {
      printf ("caption %-4d", c + 1);
      for (int i = 0; i < ni; i++)
        printf (" %15.6f", scores[c * ni + i]);
      printf ("  image %d\n", argmax (scores + c * ni, ni, 1) + 1);
    }
  printf ("%-12s", "best caption");
  for (int i = 0; i < ni; i++)
    printf (" %12s%-3d", "caption ", argmax (scores + i, nc, ni) + 1);
  printf ("\n");
  if (nc == 2 && ni == 2)
    {
      DsWinoground w = ds_winoground_item (scores);
      printf ("winoground (caption i <-> image i): text %s, image %s, group %s\n",
              w.text ? "pass" : "fail", w.image ? "pass" : "fail", w.group ? "pass" : "fail");
    }
  if (ds_pipeline_is_builtin (s->p))
    printf ("note: " DS_BUILTIN_MODEL_LABEL "; %s\n", CLI_BUILTIN_WORDS);
}

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

/* --pairs FILE.json: Winoground-style evaluation. FILE is a JSON list of
 * {"name": optional, "captions": [c0, c1], "images": [i0, i1]} with caption k
 * belonging to image k; image paths are relative to FILE's folder. Every item
 * is scored 2 × 2 and judged by ds_winoground_item; the totals are the
 * fractions of items passing the text, image and group tests. */
typedef struct {
  char name[128];
  const char *captions[2];
  char images[2][4096];
} PairItem;

static DsStatus
pairs_read (const char *path, json_t **root, PairItem **items, int *n, DsError *err)
{
  json_error_t je;
  *items = NULL;
  *n = 0;
  *root = NULL;
  struct stat sb;
  if (stat (path, &sb) == 0 && !S_ISREG (sb.st_mode))
    return ds_error_set (err, DS_ERR_IO, "%s: is %s; --pairs takes a JSON file", path,
                         ds_file_kind (sb.st_mode));
  *root = json_load_file (path, JSON_REJECT_DUPLICATES, &je);
  if (!*root)
    return ds_error_set (err, je.line > 0 ? DS_ERR_FORMAT : DS_ERR_IO, "%s:%d: %s", path, je.line,
                         je.text);
  if (!json_is_array (*root) || json_array_size (*root) == 0)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: expected a non-empty JSON list of items", path);
  int count = (int) json_array_size (*root);
  *items = calloc ((size_t) count, sizeof **items);
  if (!*items)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  char dir[4096];
  snprintf (dir, sizeof dir, "%s", path);
  char *slash = strrchr (dir, '/');
  if (slash)
    slash[1] = '\0';
  else
    dir[0] = '\0';
  for (int k = 0; k < count; k++)
    {
      json_t *it = json_array_get (*root, (size_t) k);
      PairItem *pi = &(*items)[k];
      json_t *caps = json_object_get (it, "captions"), *ims = json_object_get (it, "images");
      json_t *name = json_object_get (it, "name");
      if (!json_is_object (it) || !json_is_array (caps) || json_array_size (caps) != 2
          || !json_is_array (ims) || json_array_size (ims) != 2)
        return ds_error_set (err, DS_ERR_FORMAT,
                             "%s: item %d: needs \"captions\" and \"images\", lists of two",
                             path, k);
      snprintf (pi->name, sizeof pi->name, "%s",
                json_is_string (name) ? json_string_value (name) : "");
      if (!pi->name[0])
        snprintf (pi->name, sizeof pi->name, "item-%d", k);
      for (int j = 0; j < 2; j++)
        {
          json_t *c = json_array_get (caps, (size_t) j), *im = json_array_get (ims, (size_t) j);
          if (!json_is_string (c) || !json_is_string (im))
            return ds_error_set (err, DS_ERR_FORMAT,
                                 "%s: item %d (%s): captions and images must be strings", path,
                                 k, pi->name);
          pi->captions[j] = json_string_value (c);
          const char *ip = json_string_value (im);
          snprintf (pi->images[j], sizeof pi->images[j], "%s%s", ip[0] == '/' ? "" : dir, ip);
        }
    }
  *n = count;
  return DS_OK;
}

DsStatus
cli_score_check_pairs (const char *path, int *n_items, DsError *err)
{
  json_t *root;
  PairItem *items;
  DsStatus st = pairs_read (path, &root, &items, n_items, err);
  free (items);
  json_decref (root);
  return st;
}

static int
score_pairs_file (const CliOptions *o, Scorer *s)
{
  DsError err = { 0 };
  DsBackend *be = NULL;
  json_t *root = NULL, *doc = NULL, *list = json_array ();
  PairItem *items = NULL;
  double *all = NULL;
  char *text = NULL;
  int n = 0, rc = 1;
  DsImage img[2] = { 0 };
  if (pairs_read (o->pairs, &root, &items, &n, &err))
    goto out;
  all = calloc ((size_t) n * 4, sizeof *all);
  if (!all || cli_open_session (o, &be, &s->s, &err))
    goto out;
  s->p = ds_session_pipeline (s->s);
  if (scorer_layers (s, &err))
    goto out;
  for (int k = 0; k < n; k++)
    {
      double *sc = all + 4 * k; /* sc[2c + i] */
      for (int i = 0; i < 2; i++)
        if (ds_image_load (items[k].images[i], &img[i], &err))
          {
            ds_error_prefix (&err, err.code, "item %d (%s)", k, items[k].name);
            goto out;
          }
      for (int i = 0; i < 2; i++)
        for (int c = 0; c < 2; c++)
          if (score_pair (s, &img[i], items[k].captions[c], &sc[2 * c + i], &err))
            {
              ds_error_prefix (&err, err.code, "item %d (%s)", k, items[k].name);
              goto out;
            }
      ds_image_free (&img[0]);
      ds_image_free (&img[1]);
      DsWinoground w = ds_winoground_item (sc);
      if (!o->json)
        printf ("%-24s text %-4s image %-4s group %-4s  [%.4f %.4f; %.4f %.4f]\n", items[k].name,
                w.text ? "yes" : "no", w.image ? "yes" : "no", w.group ? "yes" : "no", sc[0],
                sc[1], sc[2], sc[3]);
      json_array_append_new (list, json_pack ("{s:s, s:[[f,f],[f,f]], s:b, s:b, s:b}", "name",
                                              items[k].name, "scores", sc[0], sc[1], sc[2], sc[3],
                                              "text", w.text, "image", w.image, "group", w.group));
    }
  DsWinogroundTotals tot;
  if (ds_winoground_aggregate (all, n, &tot, &err))
    goto out;
  doc = json_pack ("{s:s, s:b, s:b, s:o, s:{s:i, s:f, s:f, s:f}}", "model",
                   ds_pipeline_label (s->p), "untrained", ds_pipeline_is_untrained (s->p),
                   "builtin", ds_pipeline_is_builtin (s->p), "items", list, "totals", "n", tot.n,
                   "text", tot.text_score, "image", tot.image_score, "group", tot.group_score);
  list = NULL;
  text = json_dumps (doc, JSON_INDENT (2) | JSON_REAL_PRECISION (17));
  if (o->out && cli_write_text_atomic (o->out, text, &err))
    goto out;
  if (o->json)
    printf ("%s\n", text);
  else
    printf ("winoground over %d items: text %.1f%%, image %.1f%%, group %.1f%% (chance: text "
            "25%%, image 25%%, group 16.7%%)\n", tot.n,
            100 * tot.text_score, 100 * tot.image_score, 100 * tot.group_score);
  rc = 0;
out:
  if (rc)
    cli_fail (&err);
  ds_image_free (&img[0]);
  ds_image_free (&img[1]);
  json_decref (list);
  json_decref (doc);
  json_decref (root);
  free (text);
  free (items);
  free (all);
  cli_close_session (be, s->s);
  return rc;
}

int
cli_cmd_score (const CliOptions *o)
{
  if (o->pairs)
    {
      if (o->n_images || o->n_captions)
        {
          fprintf (stderr, "diffscope-cli: --pairs takes its images and captions from the file; "
                           "drop --image and --caption\n");
          return 2;
        }
      Scorer s = { .o = o, .timesteps = o->n_timesteps ? o->timesteps : default_timesteps,
                   .n_timesteps = o->n_timesteps ? o->n_timesteps
                                                 : (int) (sizeof default_timesteps / sizeof (int)) };
      return score_pairs_file (o, &s);
    }
  if (o->n_images < 1 || o->n_captions < 1 || o->prompt)
    {
      fprintf (stderr, "diffscope-cli: score needs at least one --image and one --caption "
                       "(both repeatable; captions are given with --caption, not --prompt)\n");
      return 2;
    }
  Scorer s = { .o = o, .timesteps = o->n_timesteps ? o->timesteps : default_timesteps,
               .n_timesteps = o->n_timesteps ? o->n_timesteps
                                             : (int) (sizeof default_timesteps / sizeof (int)) };
  const int nc = o->n_captions, ni = o->n_images;
  DsError err = { 0 };
  DsBackend *be = NULL;
  DsImage *imgs = calloc ((size_t) ni, sizeof *imgs);
  double *scores = calloc ((size_t) nc * ni, sizeof *scores); /* [captions, images] */
  json_t *doc = NULL;
  char *text = NULL;
  int rc = 1;
  if (!imgs || !scores)
    {
      ds_error_set (&err, DS_ERR_NOMEM, "out of memory");
      goto out;
    }
  /* every image first, so an unreadable one fails before any UNet work */
  for (int i = 0; i < ni; i++)
    if (ds_image_load (o->images[i], &imgs[i], &err))
      goto out;
  if (cli_open_session (o, &be, &s.s, &err))
    goto out;
  s.p = ds_session_pipeline (s.s);
  if (scorer_layers (&s, &err))
    goto out;
  bool progress = isatty (STDERR_FILENO);
  for (int i = 0; i < ni; i++)
    for (int c = 0; c < nc; c++)
      {
        double t0 = now_s ();
        if (score_pair (&s, &imgs[i], o->captions[c], &scores[c * ni + i], &err))
          {
            ds_error_prefix (&err, err.code, "image %s, caption \"%s\"", o->images[i],
                             o->captions[c]);
            goto out;
          }
        if (progress)
          fprintf (stderr, "[%d/%d] image %d, caption %d: %.6f (%.1f s)\n", i * nc + c + 1,
                   ni * nc, i + 1, c + 1, scores[c * ni + i], now_s () - t0);
      }
  doc = score_json (&s, be, scores);
  text = json_dumps (doc, JSON_INDENT (2) | JSON_REAL_PRECISION (17));
  if (o->out && cli_write_text_atomic (o->out, text, &err))
    goto out;
  if (o->json)
    printf ("%s\n", text);
  else
    print_table (&s, scores);
  rc = 0;

out:
  if (rc)
    cli_fail (&err);
  free (text);
  json_decref (doc);
  for (int i = 0; imgs && i < ni; i++)
    ds_image_free (&imgs[i]);
  free (imgs);
  free (scores);
  cli_close_session (be, s.s);
  return rc;
}
