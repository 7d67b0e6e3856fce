/* test-cli-score-batch.c: diffscope-cli score and batch end to end on the
 * built-in model (--demo) at 64×64, and every error a user can cause in them.
 *
 * score: the table and the JSON agree, runs repeat exactly, and one score is
 * recomputed here from the engine's raw outputs (ε, ε̂ and the per-layer
 * logsumexp of ds_pipeline_features) with the formula of docs/models.md §6.5 written
 * out by hand. batch: outputs, their tensors and metadata, skipping, resuming,
 * sharding, a failing job among good ones, and the validation of the jobs file
 * (nothing is written when it is wrong). Usage: test-cli-score-batch CLI. */
#include "ds-test.h"

#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ds-pipeline.h"
#include "ds-safetensors.h"
#include "ds-schedule.h"

#define DATA DS_TEST_DATA_DIR

static const char *cli;
static char tmpdir[] = "/tmp/ds-test-cli-sb-XXXXXX";
static char out[65536], errs[65536]; /* the last run's stdout and stderr */

static void
slurp (const char *path, char *buf, size_t size)
{
  FILE *f = fopen (path, "r");
  size_t n = f ? fread (buf, 1, size - 1, f) : 0;
  buf[n] = '\0';
  if (f)
    fclose (f);
}

/* Runs the CLI with `args` (shell words, which may use $T for the temporary
 * folder); returns the exit code. */
static int
run (const char *args)
{
  char cmd[16384];
  snprintf (cmd, sizeof cmd,
            "cd '%s' && T='%s' && DIFFSCOPE_DATA_DIR=%s '%s' %s >'%s/stdout' 2>'%s/stderr' "
            "</dev/null",
            tmpdir, tmpdir, DS_RESOURCES_DIR, cli, args, tmpdir, tmpdir);
  int status = system (cmd);
  char path[600];
  snprintf (path, sizeof path, "%s/stdout", tmpdir);
  slurp (path, out, sizeof out);
  snprintf (path, sizeof path, "%s/stderr", tmpdir);
  slurp (path, errs, sizeof errs);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

#define EXPECT(args, code, needle)                                                             \
  do {                                                                                         \
    int rc_ = run (args);                                                                      \
    DS_CHECK (rc_ == (code), "`%s` exited %d, expected %d; stderr:\n%s", args, rc_, code,     \
              errs);                                                                           \
    DS_CHECK (strstr (out, needle) || strstr (errs, needle),                                   \
              "`%s` does not mention \"%s\":\n%s%s", args, needle, out, errs);                 \
  } while (0)

static bool
exists (const char *fmt, const char *name)
{
  char path[1024];
  snprintf (path, sizeof path, fmt, tmpdir, name);
  struct stat sb;
  return stat (path, &sb) == 0;
}

static void
write_file (const char *name, const char *text)
{
  char path[1024];
  snprintf (path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen (path, "w");
  fputs (text, f);
  fclose (f);
}

static int
count (const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr (p, needle)); p++)
    n++;
  return n;
}

/* The rest of s after prefix p, or NULL when s does not start with it. */
static const char *
strprefix (const char *s, const char *p)
{
  return strncmp (s, p, strlen (p)) ? NULL : s + strlen (p);
}

/* ---- score ---------------------------------------------------------------- */

#define SCORE "score --demo --size 64 --seed 5 --timesteps 100,600 --trials 2 " \
              "--image " DATA "/sd-input.png --image " DATA "/images/rgb.png "   \
              "--caption 'a red cube on a table' --caption 'a photo of a dog' "

/* The score of caption 1 ("a photo of a dog") with image 0, from the engine's
 * raw outputs: for t in {100, 600} and trials r in {0, 1} (noise seed 5 + r),
 * mean over the four score layers of the built-in model (D-L2-R0, M, U-L3-R0,
 * U-L3-R1: one transformer a down level) of the per-layer logsumexp averaged
 * over [uncond, cond], plus ‖ε − ε̂_u‖ − ‖ε − ε̂_c‖; the mean of the four runs.
 * The built-in model is the one the CLI opens for --demo. */
static double
score_by_hand (void)
{
  enum { NL = 4 };
  static const char *const want[NL] = { "D-L2-R0-B0-Cross-Map", "M-B0-Cross-Map",
                                        "U-L3-R0-B0-Cross-Map", "U-L3-R1-B0-Cross-Map" };
  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  DsPipeline *p = NULL;
  DsImage img = { 0 };
  const DsProbeList *list;
  double total = NAN;
  if (ds_pipeline_open_builtin (DS_RESOURCES_DIR, be, &p, &err)
      || ds_image_load (DATA "/sd-input.png", &img, &err) || ds_pipeline_probes (p, 64, &list, &err))
    {
      DS_CHECK_OK (err.code, &err);
      goto out;
    }
  /* positions of the four among the cross-attention layers, in forward order */
  int pos[NL] = { -1, -1, -1, -1 }, n_cross = 0;
  for (int i = 0; i < list->n; i++)
    if (list->probes[i].kind == DS_PROBE_CROSS_MAP)
      {
        for (int j = 0; j < NL; j++)
          if (!strcmp (list->probes[i].name, want[j]))
            pos[j] = n_cross;
        n_cross++;
      }
  /* 3 down levels x 1 + mid + 3 up levels x 2 */
  DS_CHECK (n_cross == 10, "the built-in model has 10 cross-attention layers, got %d", n_cross);
  for (int j = 0; j < NL; j++)
    if (pos[j] < 0)
      {
        DS_CHECK (pos[j] >= 0, "no cross-attention layer %s", want[j]);
        goto out;
      }
  total = 0;
  const int ts[2] = { 100, 600 };
  for (int k = 0; k < 2; k++)
    for (int r = 0; r < 2; r++)
      {
        double lse[64];
        DsFeatureRequest req = { .image = &img, .size = 64, .fit = DS_FIT_STRETCH,
                                 .prompt = "a photo of a dog", .uncond_prompt = "", .t = ts[k],
                                 .seed = 5 + r, .want_eps = true, .cross_lse = lse };
        DsFeatures f;
        DS_CHECK_OK (ds_pipeline_features (p, &req, &f, &err), &err);
        if (err.code)
          goto out;
        int64_t n = ds_tensor_numel (&f.eps) / 2;
        float *eps = malloc ((size_t) n * sizeof *eps);
        ds_noise_normal (5 + r, eps, n);
        double layers = 0, du = 0, dc = 0;
        for (int j = 0; j < NL; j++)
          layers += (lse[2 * pos[j]] + lse[2 * pos[j] + 1]) / 2;
        for (int64_t i = 0; i < n; i++)
          {
            double u = (double) eps[i] - ds_tensor_f32 (&f.eps)[i];
            double c = (double) eps[i] - ds_tensor_f32 (&f.eps)[n + i];
            du += u * u;
            dc += c * c;
          }
        total += layers / NL + sqrt (du) - sqrt (dc);
        free (eps);
        ds_features_free (&f);
      }
  total /= 4;
out:
  ds_image_free (&img);
  ds_pipeline_free (p);
  ds_backend_free (be);
  return total;
}

/* scores [2][2] from the JSON document in `text`; false if malformed. */
static bool
json_scores (const char *text, double s[2][2], json_t **doc_out)
{
  json_error_t jerr;
  json_t *doc = json_loads (text, 0, &jerr);
  DS_CHECK (doc != NULL, "score --json output parses: %s", jerr.text);
  json_t *m = json_object_get (doc, "scores");
  bool ok = json_is_array (m) && json_array_size (m) == 2;
  for (int c = 0; ok && c < 2; c++)
    {
      json_t *row = json_array_get (m, c);
      ok = json_is_array (row) && json_array_size (row) == 2;
      for (int i = 0; ok && i < 2; i++)
        {
          ok = json_is_real (json_array_get (row, i));
          s[c][i] = json_real_value (json_array_get (row, i));
          ok = ok && isfinite (s[c][i]);
        }
    }
  DS_CHECK (ok, "\"scores\" is a 2x2 matrix of finite numbers");
  if (doc_out)
    *doc_out = doc;
  else
    json_decref (doc);
  return ok;
}

static void
test_score (void)
{
  double s[2][2], again[2][2], table[2][2];
  json_t *doc = NULL;
  EXPECT (SCORE "--json", 0, "\"scores\"");
  if (!json_scores (out, s, &doc))
    {
      json_decref (doc);
      return;
    }
  DS_CHECK (json_is_true (json_object_get (doc, "builtin"))
                && json_is_false (json_object_get (doc, "untrained")),
            "the demo is flagged built-in (and trained)");
  /* the built-in model's score layers: its last down level with cross-attention
   * has one transformer, its last up level two */
  json_t *layers = json_object_get (doc, "layers"), *ts = json_object_get (doc, "timesteps");
  DS_CHECK (json_array_size (layers) == 4
                && !strcmp (json_string_value (json_array_get (layers, 0)), "D-L2-R0")
                && !strcmp (json_string_value (json_array_get (layers, 1)), "M")
                && !strcmp (json_string_value (json_array_get (layers, 2)), "U-L3-R0")
                && !strcmp (json_string_value (json_array_get (layers, 3)), "U-L3-R1"),
            "the four layers are listed");
  DS_CHECK (json_array_size (ts) == 2 && json_integer_value (json_array_get (ts, 1)) == 600
                && json_integer_value (json_object_get (doc, "trials")) == 2,
            "timesteps and trials are recorded");
  const char *model = json_string_value (json_object_get (doc, "model"));
  DS_CHECK (model && !strcmp (model, "toy shapes model, trained on synthetic scenes"),
            "model label: %s", model ? model : "(none)");

  /* one value recomputed from the engine's raw outputs */
  double hand = score_by_hand ();
  printf ("  score(caption 1, image 0): CLI %.9f, by hand %.9f\n", s[1][0], hand);
  DS_CHECK_CLOSE (s[1][0], hand, 1e-7);
  DS_CHECK (s[0][0] != s[1][0] && s[0][0] != s[0][1], "pairs give different scores");

  /* the same run again gives the same numbers, bit for bit; --out writes them */
  EXPECT (SCORE "--json --out $T/scores.json", 0, "\"scores\"");
  json_scores (out, again, NULL);
  DS_CHECK (memcmp (s, again, sizeof s) == 0, "identical runs, identical scores");
  char path[600], text[65536];
  snprintf (path, sizeof path, "%s/scores.json", tmpdir);
  slurp (path, text, sizeof text);
  DS_CHECK (strlen (out) == strlen (text) + 1 && !strncmp (text, out, strlen (text)),
            "--out holds what --json prints");
  json_scores (text, again, NULL);
  DS_CHECK (memcmp (s, again, sizeof s) == 0, "--out file has the scores");

  /* the table: each value as in the JSON, best image / caption, Winoground */
  EXPECT (SCORE, 0, "winoground (caption i <-> image i)");
  DS_CHECK_CONTAINS (out, "note: toy shapes model, trained on synthetic scenes; its words are ");
  DS_CHECK_CONTAINS (out, "image 2    " DATA "/images/rgb.png");
  int best_img[2] = { 0, 0 }, best_cap[2] = { 0, 0 };
  const char *body = strstr (out, "best image\n"); /* the rows under the header */
  for (int c = 0; c < 2; c++)
    {
      char label[32];
      snprintf (label, sizeof label, "\ncaption %d  ", c + 1);
      const char *row = body ? strstr (body, label) : NULL;
      DS_CHECK (row && sscanf (row + strlen (label), "%lf %lf image %d", &table[c][0],
                               &table[c][1], &best_img[c]) == 3,
                "table row for caption %d:\n%s", c + 1, out);
      if (!row)
        return;
      for (int i = 0; i < 2; i++)
        DS_CHECK (fabs (table[c][i] - s[c][i]) <= 6e-7, "table %d,%d: %.6f vs JSON %.9f", c, i,
                  table[c][i], s[c][i]);
      DS_CHECK (best_img[c] == (s[c][1] > s[c][0] ? 2 : 1), "best image for caption %d", c + 1);
    }
  const char *best = strstr (out, "\nbest caption");
  DS_CHECK (best && sscanf (best, "\nbest caption caption %d caption %d", &best_cap[0],
                            &best_cap[1]) == 2,
            "best caption row");
  for (int i = 0; i < 2; i++)
    DS_CHECK (best_cap[i] == (s[1][i] > s[0][i] ? 2 : 1), "best caption for image %d", i + 1);
  bool text_ok = s[0][0] > s[1][0] && s[1][1] > s[0][1], image_ok = s[0][0] > s[0][1] && s[1][1] > s[1][0];
  char wino[128];
  snprintf (wino, sizeof wino, "text %s, image %s, group %s", text_ok ? "pass" : "fail",
           image_ok ? "pass" : "fail", text_ok && image_ok ? "pass" : "fail");
  DS_CHECK_CONTAINS (out, wino);
  json_t *w = json_object_get (doc, "winoground");
  DS_CHECK (json_is_true (json_object_get (w, "text")) == text_ok
                && json_is_true (json_object_get (w, "image")) == image_ok,
            "JSON winoground");
  json_decref (doc);

  /* 1 × 3: no Winoground */
  EXPECT ("score --demo --size 64 --timesteps 500 --caption cube --image " DATA "/sd-input.png "
          "--image " DATA "/images/rgb.png --image " DATA "/images/grey.png",
          0, "image 3");
  DS_CHECK (!strstr (out, "winoground"), "Winoground only for 2 x 2");
}

/* A UNet weights file for one level of 8 channels with L transformers a
 * block, from sd2-tiny's (src): every down resnet and transformer, and the
 * mid block's, copy level 0's first; every up resnet (8 + 8 skip channels in)
 * and transformer copies the last up level's second. */
static bool
one_level_weights (const char *src, const char *dst, int L)
{
  static const char *const keep[] = { "conv_in.", "time_embedding.", "conv_norm_out.",
                                      "conv_out." };
  DsError err = { 0 };
  DsSafetensors *st;
  if (ds_safetensors_open (src, &st, &err))
    {
      fprintf (stderr, "%s\n", err.message);
      return false;
    }
  const int n = ds_safetensors_count (st), cap = n * (2 * L + 4);
  DsSafetensorsItem *items = calloc ((size_t) cap, sizeof *items);
  DsTensor *tensors = calloc ((size_t) cap, sizeof *tensors);
  char (*names)[256] = calloc ((size_t) cap, sizeof *names);
  int m = 0;
#define ONE_LEVEL_ADD(...)                                                                   \
  do {                                                                                       \
    tensors[m] = ds_tensor_make (e->dtype, e->ndim, e->shape);                               \
    tensors[m].data = (void *) e->data;                                                      \
    snprintf (names[m], sizeof names[m], __VA_ARGS__);                                       \
    items[m] = (DsSafetensorsItem){ names[m], &tensors[m] };                                 \
    m++;                                                                                     \
  } while (0)
  for (int i = 0; i < n; i++)
    {
      const DsSafetensorsEntry *e = ds_safetensors_entry (st, i);
      const char *rest;
      for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++)
        if (!strncmp (e->name, keep[k], strlen (keep[k])))
          ONE_LEVEL_ADD ("%s", e->name);
      if ((rest = strprefix (e->name, "down_blocks.0.resnets.0.")))
        {
          for (int j = 0; j < L; j++)
            ONE_LEVEL_ADD ("down_blocks.0.resnets.%d.%s", j, rest);
          for (int j = 0; j < 2; j++)
            ONE_LEVEL_ADD ("mid_block.resnets.%d.%s", j, rest);
        }
      if ((rest = strprefix (e->name, "down_blocks.0.attentions.0.")))
        {
          for (int j = 0; j < L; j++)
            ONE_LEVEL_ADD ("down_blocks.0.attentions.%d.%s", j, rest);
          ONE_LEVEL_ADD ("mid_block.attentions.0.%s", rest);
        }
      if ((rest = strprefix (e->name, "up_blocks.3.resnets.1.")))
        for (int j = 0; j <= L; j++)
          ONE_LEVEL_ADD ("up_blocks.0.resnets.%d.%s", j, rest);
      if ((rest = strprefix (e->name, "up_blocks.3.attentions.1.")))
        for (int j = 0; j <= L; j++)
          ONE_LEVEL_ADD ("up_blocks.0.attentions.%d.%s", j, rest);
    }
#undef ONE_LEVEL_ADD
  DsStatus s = ds_safetensors_write (dst, items, m, NULL, &err);
  if (s)
    fprintf (stderr, "%s\n", err.message);
  ds_safetensors_close (st);
  free (items);
  free (tensors);
  free (names);
  return s == DS_OK;
}

static void
test_score_errors (void)
{
  EXPECT ("score --demo --image " DATA "/sd-input.png", 2, "--caption");
  EXPECT ("score --demo --caption cube", 2, "--image");
  EXPECT ("score --demo --image " DATA "/sd-input.png --caption a --timesteps 5,x", 2,
          "--timesteps");
  EXPECT ("score --demo --size 64 --image " DATA "/sd-input.png --image /nonexistent/b.png "
          "--caption a",
          1, "/nonexistent/b.png");
  /* The layer rule (each cross-attention transformer of the last down level
   * with cross-attention, the mid block's, each of the last up level's) takes
   * 1 to 16 layers. The mid block always has cross-attention (the only mid
   * block the engine loads), and the UNet takes at most 3 layers a block, so
   * a model that loads has 1 to 3 + 1 + 4 = 8 of them: both ends are checked
   * to work. sd2-tiny without attention in the down and up blocks keeps only
   * the mid block's: one layer, fewer than the built-in model's four. */
  char cmd[2048];
  snprintf (cmd, sizeof cmd, "cp -r '%s/sd2-tiny' '%s/mid-only'", DATA, tmpdir);
  DS_CHECK (system (cmd) == 0, "copy sd2-tiny");
  snprintf (cmd, sizeof cmd, "%s/mid-only/unet/config.json", tmpdir);
  json_t *cfg = json_load_file (cmd, 0, NULL);
  json_t *down = json_array (), *up = json_array ();
  for (int i = 0; i < 4; i++)
    {
      json_array_append_new (down, json_string ("DownBlock2D"));
      json_array_append_new (up, json_string ("UpBlock2D"));
    }
  json_object_set_new (cfg, "down_block_types", down);
  json_object_set_new (cfg, "up_block_types", up);
  DS_CHECK (json_dump_file (cfg, cmd, 0) == 0, "write %s", cmd);
  json_decref (cfg);
  EXPECT ("score --model $T/mid-only --size 64 --timesteps 500 --image " DATA "/sd-input.png "
          "--caption a --json", 0, "\"scores\"");
  json_error_t jerr;
  json_t *doc = json_loads (out, 0, &jerr);
  json_t *layers = json_object_get (doc, "layers");
  json_t *v = json_array_get (json_array_get (json_object_get (doc, "scores"), 0), 0);
  DS_CHECK (json_array_size (layers) == 1
                && !strcmp (json_string_value (json_array_get (layers, 0)), "M"),
            "the mid block's layer alone is scored: %s", out);
  DS_CHECK (json_is_real (v) && isfinite (json_real_value (v)), "a finite score from one layer");
  json_decref (doc);

  /* One-level UNets with L transformers a block (weights copied from
   * sd2-tiny's 8-channel level): L down + the mid block's + L + 1 up score
   * layers. L = 3, the most the UNet takes, is 8 layers, the most a model
   * has. L = 8 would be 18, more than the rule's 16: the UNet refuses it before
   * the score is reached (were it accepted, score must say "needs 1 to 16
   * cross-attention layers ...; ... has 18" and this check must say so). */
  for (int L = 3; L <= 8; L += 5)
    {
      char dir[1024], path[1100];
      snprintf (dir, sizeof dir, "%s/one-level-%d", tmpdir, L);
      snprintf (cmd, sizeof cmd, "cp -r '%s/sd2-tiny' '%s'", DATA, dir);
      DS_CHECK (system (cmd) == 0, "copy sd2-tiny");
      snprintf (path, sizeof path, "%s/unet/config.json", dir);
      cfg = json_load_file (path, 0, NULL);
      json_object_set_new (cfg, "block_out_channels", json_pack ("[i]", 8));
      json_object_set_new (cfg, "attention_head_dim", json_pack ("[i]", 1));
      json_object_set_new (cfg, "down_block_types", json_pack ("[s]", "CrossAttnDownBlock2D"));
      json_object_set_new (cfg, "up_block_types", json_pack ("[s]", "CrossAttnUpBlock2D"));
      json_object_set_new (cfg, "layers_per_block", json_integer (L));
      DS_CHECK (json_dump_file (cfg, path, 0) == 0, "write %s", path);
      json_decref (cfg);
      snprintf (path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
      DS_CHECK (one_level_weights (DATA "/sd2-tiny/unet/diffusion_pytorch_model.safetensors", path,
                                   L),
                "write %s", path);
      char args[1200];
      snprintf (args, sizeof args, "score --model %s --size 64 --timesteps 500 --image "
                DATA "/sd-input.png --caption a --json", dir);
      if (L == 3)
        {
          EXPECT (args, 0, "\"scores\"");
          doc = json_loads (out, 0, &jerr);
          layers = json_object_get (doc, "layers");
          static const char *const eight[] = { "D-L0-R0", "D-L0-R1", "D-L0-R2", "M",
                                               "U-L0-R0", "U-L0-R1", "U-L0-R2", "U-L0-R3" };
          bool ok = json_array_size (layers) == 8;
          for (size_t j = 0; ok && j < 8; j++)
            ok = !strcmp (json_string_value (json_array_get (layers, j)), eight[j]);
          DS_CHECK (ok, "the eight layers are scored: %s", out);
          json_decref (doc);
        }
      else
        EXPECT (args, 1, "UNet layers_per_block 8 is not supported (1 to 3)");
    }
}

/* ---- batch ---------------------------------------------------------------- */

#define JOBS                                                                                   \
  "[\n"                                                                                        \
  " {\"name\": \"cube\", \"image\": \"a.png\", \"prompt\": \"a red cube\",\n"                \
  "  \"probes\": [\"U-L1-R1-B0-Cross-Q\", \"D-L2-R0-B0-Cross-Map\"]},\n"                     \
  " {\"image\": \"" DATA "/images/rgb.png\", \"prompt\": \"stripes\", \"probes\": "          \
  "[\"UNet-Out\"],\n  \"t\": 500, \"seed\": 3, \"s\": [1, 7.5], \"render\": true},\n"         \
  " {\"name\": \"third\", \"image\": \"%s\", \"prompt\": \"x\", \"uncond\": \"blurry\", "      \
  "\"probes\": [\"up-level2-repeat1-res-out\"], \"seed\": 2}\n"                                \
  "]\n"

static json_t *
sidecar (const char *name)
{
  char path[1024];
  snprintf (path, sizeof path, "%s/out/%s.safetensors.json", tmpdir, name);
  json_t *doc = json_load_file (path, 0, NULL);
  DS_CHECK (doc != NULL, "%s parses", path);
  return doc;
}

static void
test_batch (void)
{
  char jobs[4096], cmd[1024];
  snprintf (cmd, sizeof cmd, "mkdir -p '%s/jobs' && cp '%s/sd-input.png' '%s/jobs/a.png'", tmpdir,
            DATA, tmpdir);
  DS_CHECK (system (cmd) == 0, "%s", cmd);
  snprintf (jobs, sizeof jobs, JOBS, "a.png");
  write_file ("jobs/jobs.json", jobs);

  /* relative images are found beside the jobs file, wherever the CLI runs */
  EXPECT ("batch --demo --size 64 jobs/jobs.json --out-dir out", 0, "3 done, 0 skipped, 0 failed");
  DS_CHECK_CONTAINS (errs, "[1/3] cube: done in ");
  DS_CHECK_CONTAINS (errs, "[2/3] job-1: done in ");
  DS_CHECK_CONTAINS (errs, "[3/3] third: done in ");
  DsSafetensors *st;
  DsError err = { 0 };
  char path[1024];
  snprintf (path, sizeof path, "%s/out/cube.safetensors", tmpdir);
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (!err.code)
    {
      DS_CHECK (ds_safetensors_find (st, "cond.U-L1-R1-B0-Cross-Q")
                    && ds_safetensors_find (st, "uncond.U-L1-R1-B0-Cross-Q")
                    && ds_safetensors_find (st, "cond.D-L2-R0-B0-Cross-Map")
                    && ds_safetensors_find (st, "uncond.D-L2-R0-B0-Cross-Map"),
                "cube's tensors");
      ds_safetensors_close (st);
    }
  snprintf (path, sizeof path, "%s/out/job-1.safetensors", tmpdir);
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (!err.code)
    {
      const DsSafetensorsEntry *e = ds_safetensors_find (st, "cond.UNet-Out");
      /* 4 latent channels; 64 px / the built-in VAE's factor 4 = 16x16 */
      DS_CHECK (e && e->ndim == 3 && e->shape[0] == 4 && e->shape[1] == 16 && e->shape[2] == 16,
                "job-1's UNet-Out");
      ds_safetensors_close (st);
    }
  snprintf (path, sizeof path, "%s/out/third.safetensors", tmpdir);
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (!err.code)
    {
      DS_CHECK (ds_safetensors_find (st, "cond.U-L2-R1-Res-Out") != NULL, "long ids work");
      ds_safetensors_close (st);
    }
  /* the job's fields reach the request */
  json_t *m = sidecar ("job-1");
  DS_CHECK (json_integer_value (json_object_get (m, "t")) == 500
                && json_integer_value (json_object_get (m, "seed")) == 3
                && !strcmp (json_string_value (json_object_get (m, "prompt")), "stripes")
                && !strcmp (json_string_value (json_object_get (m, "image")),
                            DATA "/images/rgb.png"),
            "job-1's metadata");
  json_decref (m);
  m = sidecar ("third");
  DS_CHECK (json_integer_value (json_object_get (m, "t")) == 50
                && json_integer_value (json_object_get (m, "seed")) == 2
                && !strcmp (json_string_value (json_object_get (m, "uncond_prompt")), "blurry")
                && json_is_true (json_object_get (m, "builtin"))
                && json_is_false (json_object_get (m, "untrained")),
            "third's metadata (default t, given uncond)");
  json_decref (m);
  /* render: PNGs in out/job-1/, one per s; none for jobs without "render" */
  DS_CHECK (exists ("%s/out/job-1/%s", "UNet-Out.pca-s1.png")
                && exists ("%s/out/job-1/%s", "UNet-Out.pca-s7.5.png")
                && exists ("%s/out/job-1/%s", "input.png"),
            "job-1's render");
  DS_CHECK (!exists ("%s/out/%s", "cube"), "no render for cube");

  /* a job gives what `features` gives for the same request */
  EXPECT ("features --demo --size 64 --image jobs/a.png --prompt 'a red cube' "
          "--probe U-L1-R1-B0-Cross-Q --probe D-L2-R0-B0-Cross-Map --out $T/f.safetensors",
          0, "wrote");
  DsSafetensors *a, *b;
  snprintf (path, sizeof path, "%s/f.safetensors", tmpdir);
  DS_CHECK_OK (ds_safetensors_open (path, &a, &err), &err);
  snprintf (path, sizeof path, "%s/out/cube.safetensors", tmpdir);
  DS_CHECK_OK (ds_safetensors_open (path, &b, &err), &err);
  if (!err.code)
    {
      DsTensor x, y;
      DS_CHECK_OK (ds_safetensors_load_f32 (a, "cond.U-L1-R1-B0-Cross-Q", 0, NULL, &x, &err), &err);
      DS_CHECK_OK (ds_safetensors_load_f32 (b, "cond.U-L1-R1-B0-Cross-Q", 0, NULL, &y, &err), &err);
      DS_CHECK (x.data && y.data && ds_tensor_nbytes (&x) == ds_tensor_nbytes (&y)
                    && memcmp (x.data, y.data, ds_tensor_nbytes (&x)) == 0,
                "batch job = features, bit for bit");
      ds_tensor_free (&x);
      ds_tensor_free (&y);
      ds_safetensors_close (a);
      ds_safetensors_close (b);
    }

  /* rerun: everything exists; then only the job with a missing file reruns */
  EXPECT ("batch --demo --size 64 jobs/jobs.json --out-dir out", 0, "0 done, 3 skipped, 0 failed");
  DS_CHECK (count (errs, "skip (exists)") == 3, "three skips:\n%s", errs);
  snprintf (path, sizeof path, "%s/out/third.safetensors.json", tmpdir);
  unlink (path);
  EXPECT ("batch --demo --size 64 jobs/jobs.json --out-dir out", 0, "1 done, 2 skipped, 0 failed");
  DS_CHECK_CONTAINS (errs, "[3/3] third: done in ");
  DS_CHECK (exists ("%s/out/%s", "third.safetensors.json"), "third redone");

  /* --shard 1/2 runs job 1 only */
  EXPECT ("batch --demo --size 64 jobs/jobs.json --out-dir shard --shard 1/2", 0,
          "1 done, 0 skipped, 0 failed");
  DS_CHECK (exists ("%s/shard/%s", "job-1.safetensors")
                && !exists ("%s/shard/%s", "cube.safetensors")
                && !exists ("%s/shard/%s", "third.safetensors"),
            "only job 1 in the shard");
  DS_CHECK (!strstr (errs, "cube"), "job 0 is not mentioned:\n%s", errs);

  /* a bad image fails its job only */
  snprintf (jobs, sizeof jobs, JOBS, "missing.png");
  write_file ("jobs/bad.json", jobs);
  EXPECT ("batch --demo --size 64 jobs/bad.json --out-dir badout", 1,
          "2 done, 0 skipped, 1 failed");
  DS_CHECK_CONTAINS (errs, "[3/3] third: FAILED: ");
  DS_CHECK_CONTAINS (errs, "missing.png");
  DS_CHECK (exists ("%s/badout/%s", "cube.safetensors.json")
                && exists ("%s/badout/%s", "job-1.safetensors.json")
                && !exists ("%s/badout/%s", "third.safetensors"),
            "the good jobs are written");
}

/* Each broken jobs file: an exit code, a message naming the job and field,
 * and no output folder. */
static void
test_batch_errors (void)
{
  static const struct {
    const char *json, *args;
    int code;
    const char *needle;
  } cases[] = {
    { "[{\"image\": \"a.png\", ", "", 2, "not valid JSON: line 1" },
    { "{\"jobs\": []}", "", 2, "expected a JSON array of job objects, got an object" },
    { "[{\"name\": \"j\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"]}]", "", 2,
      "job 0 (\"j\"): \"image\" must be" },
    { "[{\"image\": \"a.png\", \"probes\": [\"UNet-Out\"]}]", "", 2, "job 0: \"prompt\" must be" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\"}]", "", 2, "job 0: \"probes\" must be" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": []}]", "", 2,
      "\"probes\" must be an array of 1 to 512 probe names, got an empty array" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"]},"
      " {\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"], \"t\": \"50\"}]",
      "", 2, "job 1: \"t\" must be an integer in 0..999, got a string" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"], \"t\": 1000}]", "",
      2, "got 1000" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"], \"s\": [1, \"x\"]}]",
      "", 2, "\"s\" must be a number" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"], \"render\": 1}]", "",
      2, "\"render\" must be true or false" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"], \"promt\": 1}]", "",
      2, "job 0: unknown field \"promt\"" },
    { "[{\"name\": \"a/b\", \"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"]}]",
      "", 2, "\"name\" must be a file name" },
    { "[{\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"]},"
      " {\"name\": \"sun\", \"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"U-L9-R0-Res-Out\"]}]",
      "", 2, "job 1 (\"sun\"): \"probes\": unknown probe \"U-L9-R0-Res-Out\"" },
    { "[{\"name\": \"m\", \"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"M-B0-Cross-Map\"],"
      " \"render\": true}]",
      "", 2, "job 0 (\"m\"): \"probes\": M-B0-Cross-Map is an attention map" },
    { "[{\"name\": \"job-1\", \"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"]},"
      " {\"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"]}]",
      "", 2, "job 1: \"name\": \"job-1\" is also job 0's name" },
    /* issue #14: a newline would end up in file names and progress lines */
    { "[{\"name\": \"a\\nb\", \"image\": \"a.png\", \"prompt\": \"p\", \"probes\": [\"UNet-Out\"]}]",
      "", 2, "job 0 (\"a\\nb\"): \"name\" must be a file name (a non-empty string without '/' or "
      "control characters" },
    { "[]", "--shard 1/x", 2, "--shard must be K/N" },
    { "[]", "--shard 2/2", 2, "--shard must be K/N with 0 <= K < N" },
    { "[]", "--image a.png", 2, "batch needs JOBS.json and --out-dir" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      char args[1024];
      write_file ("jobs/v.json", cases[i].json);
      snprintf (args, sizeof args, "batch --demo --size 64 jobs/v.json --out-dir never %s",
                cases[i].args);
      EXPECT (args, cases[i].code, cases[i].needle);
      DS_CHECK (!exists ("%s/%s", "never"), "case %zu wrote nothing", i);
    }
  EXPECT ("batch --demo --size 64 jobs/none.json --out-dir never", 1,
          "jobs/none.json: cannot open the jobs file");
  EXPECT ("batch --demo --size 64 jobs/jobs.json", 2, "--out-dir");
  EXPECT ("batch --demo --size 64 jobs --out-dir never", 1, "jobs: is a directory, not a jobs file");
  DS_CHECK (!exists ("%s/%s", "never"), "nothing written");
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      fprintf (stderr, "usage: test-cli-score-batch PATH-TO-diffscope-cli\n");
      return 1;
    }
  cli = argv[1];
  if (!mkdtemp (tmpdir))
    return 1;
  test_score ();
  test_score_errors ();
  test_batch ();
  test_batch_errors ();
  char cmd[600];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", tmpdir);
  return ds_test_finish ();
}
