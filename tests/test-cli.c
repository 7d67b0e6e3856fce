/* test-cli.c: diffscope-cli end to end, and every error a user can cause.
 *
 * The end-to-end case runs `features` on the committed sd2-tiny model with the
 * fixture's image, prompt and explicit noise, and compares the written probes
 * with diffusers' (tests/reference/gen_sd_fixtures.py): image file -> VAE ->
 * text encoder -> noise -> UNet, all through the command line. */
#include "ds-test.h"
#include "ds-test-cli.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ds-image.h"
#include "ds-safetensors.h"

static const char *cli;
static char tmpdir[] = "/tmp/ds-test-cli-XXXXXX";
static char output[65536];

/* Runs the CLI with `args` (shell words), captures stdout+stderr, returns the exit code. */
static int
run (const char *args)
{
  return ds_test_cli_run (cli, tmpdir, args, output, sizeof output);
}

#define EXPECT(args, code, needle)                                                             \
  do {                                                                                         \
    int rc_ = run (args);                                                                      \
    DS_CHECK (rc_ == (code), "`%s` exited %d, expected %d; output:\n%s", args, rc_, code,     \
              output);                                                                         \
    DS_CHECK_CONTAINS (output, needle);                                                        \
  } while (0)

#define DATA DS_TEST_DATA_DIR
#define FEATURES_DEMO "features --demo --size 64 --image " DATA "/sd-input.png --prompt cat "

static void
test_usage_errors (void)
{
  EXPECT ("", 2, "usage: diffscope-cli COMMAND");
  EXPECT ("--help", 0, "features");
  EXPECT ("frobnicate", 2, "unknown command \"frobnicate\"");
  EXPECT ("probes", 2, "no model: give --model DIR");
  EXPECT ("probes --demo --model x", 2, "either --model DIR or --demo");
  EXPECT ("probes --demo --bogus", 2, "unknown or incomplete option \"--bogus\"");
  EXPECT ("probes --demo stray", 2, "unexpected argument \"stray\"");
  EXPECT ("features --demo --t 1000", 2, "--t must be an integer in 0..999");
  EXPECT ("features --demo --t 5x", 2, "--t must be an integer");
  EXPECT ("features --demo --seed -1", 2, "--seed must be a non-negative integer");
  EXPECT ("features --demo --image x.png --prompt p --out o", 2, "at least one --probe");
  EXPECT ("probes --demo --size 100", 1, "multiple of 64");
  /* without --size, the model's native size: the built-in UNet's sample size
   * 32 times its VAE's factor 4 */
  EXPECT ("probes --demo", 0, "toy shapes model, trained on synthetic scenes, 128x128 input");
}

/* --device / --precision / DIFFSCOPE_DEVICE: bad values, the CPU's f32-only
 * rule, and --device cuda either working or saying why not. */
static void
test_device_choice (void)
{
  EXPECT ("probes --demo --device gpu", 2, "--device must be auto, cpu or cuda, got \"gpu\"");
  EXPECT ("probes --demo --precision f8", 2, "--precision must be f16, bf16 or f32");
  EXPECT ("info --demo --device cpu --precision f16", 1, "the CPU backend computes in f32 only");
  EXPECT ("info --demo --device cpu", 0, "device:  CPU (f32)");
  DS_CHECK_CONTAINS (output, "size:    128 (native)");
  DS_CHECK_CONTAINS (output, "note:    the built-in model is a toy shapes model, trained on "
                             "synthetic scenes; its words are ");
  EXPECT ("info --demo --device cpu --precision f32", 0, "device:  CPU (f32)");
  int rc = run ("info --demo --device cuda");
  if (rc == 0)
    DS_CHECK_CONTAINS (output, "device:  CUDA · ");
  else
    {
      DS_CHECK (rc == 1, "--device cuda without a GPU exits 1, got %d: %s", rc, output);
      DS_CHECK (strstr (output, "no CUDA device") || strstr (output, "built without CUDA"),
                "--device cuda says why: %s", output);
    }
  /* auto always gives a device, and names it */
  EXPECT ("info --demo", 0, "device:  ");
  char env[64];
  snprintf (env, sizeof env, "DIFFSCOPE_DEVICE=tpu");
  putenv (env);
  EXPECT ("probes --demo", 2, "DIFFSCOPE_DEVICE must be auto, cpu or cuda, got \"tpu\"");
  unsetenv ("DIFFSCOPE_DEVICE");
}

static void
test_input_errors (void)
{
  char args[4096], path[512];
  EXPECT (FEATURES_DEMO "--probe U-L9-R0-Res-Out --out x", 1, "unknown probe \"U-L9-R0-Res-Out\"");
  EXPECT ("features --demo --image /nonexistent/cat.png --prompt p --probe UNet-Out --out x", 1,
          "/nonexistent/cat.png");
  snprintf (path, sizeof path, "%s/not-an-image.png", tmpdir);
  FILE *f = fopen (path, "w");
  fputs ("hello, I am text\n", f);
  fclose (f);
  snprintf (args, sizeof args, "features --demo --image %s --prompt p --probe UNet-Out --out x",
            path);
  EXPECT (args, 1, "not a PNG or JPEG");
  EXPECT ("info --model /nonexistent/model", 1, "model_index.json");
  /* Noise of the wrong shape: the fixture's is [1, 4, 16, 16] (sd2-tiny's
   * latent of a 128 image), the built-in model's latent of a 128 image is
   * [1, 4, 32, 32] (its VAE downsamples by 4). */
  snprintf (args, sizeof args, "features --demo --size 128 --image %s/sd-input.png --prompt cat "
            "--noise %s/sd2-tiny-expected.safetensors:input.noise "
            "--probe UNet-Out --out %s/o.safetensors", DATA, DATA, tmpdir);
  EXPECT (args, 1, "'input.noise' has shape [1, 4, 16, 16], expected [1, 4, 32, 32]");
  snprintf (args, sizeof args, FEATURES_DEMO "--noise %s/sd2-tiny-expected.safetensors "
            "--probe UNet-Out --out %s/o.safetensors", DATA, tmpdir);
  EXPECT (args, 1, "'noise'");
  /* An output path in a missing directory: a clear error, nothing half-written. */
  EXPECT (FEATURES_DEMO "--probe UNet-Out --out /nonexistent/dir/o.safetensors", 1,
          "/nonexistent/dir/o.safetensors");
}

static void
test_demo (void)
{
  char args[4096], path[512];
  snprintf (path, sizeof path, "%s/demo.safetensors", tmpdir);
  snprintf (args, sizeof args, FEATURES_DEMO "--probe D-L2-R0-B0-Cross-Q --maps --out %s", path);
  EXPECT (args, 0, "note: toy shapes model, trained on synthetic scenes");
  DsSafetensors *st;
  DsError err = { 0 };
  DS_CHECK_OK (ds_safetensors_open (path, &st, &err), &err);
  if (err.code)
    return;
  const DsSafetensorsEntry *e = ds_safetensors_find (st, "cond.D-L2-R0-B0-Cross-Q");
  /* built-in widths 32/64/64/64: level 2 has 64 channels; 64 px -> 16x16
   * latent (VAE factor 4) -> halved after levels 0 and 1 -> 4x4 */
  DS_CHECK (e && e->ndim == 3 && e->shape[0] == 64 && e->shape[1] == 4 && e->shape[2] == 4,
            "cond probe shape");
  DS_CHECK (ds_safetensors_find (st, "uncond.D-L2-R0-B0-Cross-Q") != NULL, "uncond probe");
  /* the last up level's last transformer (two a level: R0, R1) runs at the
   * latent's 16x16 = 256 queries; its map is averaged over the heads */
  e = ds_safetensors_find (st, "maps.U-L3-R1");
  DS_CHECK (e && e->ndim == 2 && e->shape[0] == 256 && e->shape[1] == 77, "head-mean map");
  if (e)
    {
      /* each query's probabilities over the 77 keys sum to 1 */
      DsTensor m;
      DS_CHECK_OK (ds_safetensors_load_f32 (st, "maps.U-L3-R1", 0, NULL, &m, &err), &err);
      double worst = 0;
      for (int q = 0; q < 256; q++)
        {
          double sum = 0;
          for (int k = 0; k < 77; k++)
            sum += ds_tensor_f32 (&m)[q * 77 + k];
          worst = fmax (worst, fabs (sum - 1));
        }
      DS_CHECK (worst < 1e-5, "map rows sum to 1 (worst %g)", worst);
      ds_tensor_free (&m);
    }
  const char *meta = ds_safetensors_metadata (st, "diffscope");
  DS_CHECK (meta && strstr (meta, "\"builtin\": true") && strstr (meta, "\"untrained\": false"),
            "metadata says built-in, not untrained");
  DS_CHECK (meta && strstr (meta, "\"model\": \"toy shapes model, trained on synthetic scenes\""),
            "metadata names the built-in model");
  DS_CHECK (meta && strstr (meta, "49406"), "metadata has the token ids");
  ds_safetensors_close (st);
  snprintf (path, sizeof path, "%s/demo.safetensors.json", tmpdir);
  struct stat sb;
  DS_CHECK (stat (path, &sb) == 0 && sb.st_size > 100, "JSON sidecar written");

  /* --maps with a map asked for by name keeps the heads (and averages them on
   * the host); --maps alone has the backend average them: the same maps */
  char per_head[512];
  snprintf (per_head, sizeof per_head, "%s/per-head.safetensors", tmpdir);
  snprintf (args, sizeof args,
            FEATURES_DEMO "--probe D-L2-R0-B0-Cross-Q --probe U-L3-R1-B0-Cross-Map --maps --out %s",
            per_head);
  EXPECT (args, 0, "wrote");
  DsSafetensors *a = NULL, *b = NULL;
  DS_CHECK_OK (ds_safetensors_open (per_head, &a, &err), &err);
  snprintf (path, sizeof path, "%s/demo.safetensors", tmpdir);
  DS_CHECK_OK (ds_safetensors_open (path, &b, &err), &err);
  int n_maps = 0;
  for (int i = 0; a && b && i < ds_safetensors_count (b); i++)
    {
      const DsSafetensorsEntry *me = ds_safetensors_entry (b, i);
      if (strncmp (me->name, "maps.", 5) != 0)
        continue;
      DsTensor x = { 0 }, y = { 0 };
      DS_CHECK_OK (ds_safetensors_load_f32 (b, me->name, 0, NULL, &x, &err), &err);
      DS_CHECK_OK (ds_safetensors_load_f32 (a, me->name, me->ndim, me->shape, &y, &err), &err);
      if (x.data && y.data)
        {
          double nmse = ds_test_nmse (ds_tensor_f32 (&x), ds_tensor_f32 (&y), ds_tensor_numel (&x));
          DS_CHECK (nmse < 1e-12, "%s: device head mean vs host head mean NMSE %g", me->name,
                    nmse);
          n_maps++;
        }
      ds_tensor_free (&x);
      ds_tensor_free (&y);
    }
  /* 3 down levels x 1 transformer + mid + 3 up levels x 2 */
  DS_CHECK (n_maps == 10, "10 cross-attention maps compared, got %d", n_maps);
  DS_CHECK (a && ds_safetensors_find (a, "cond.U-L3-R1-B0-Cross-Map"), "the named map kept");
  ds_safetensors_close (a);
  ds_safetensors_close (b);
}

static void
test_against_diffusers (void)
{
  char args[4096], path[512];
  snprintf (path, sizeof path, "%s/e2e.safetensors", tmpdir);
  snprintf (args, sizeof args,
            "features --model %s/sd2-tiny --image %s/sd-input.png --size 128 "
            "--prompt 'a photo of a red cube, on a table!' --t 50 "
            "--noise %s/sd2-tiny-expected.safetensors:input.noise "
            "--probe U-L1-R1-B0-Cross-Q --probe D-L0-R1-B0-Self-Map --probe U-L2-R2-Res-Out "
            "--probe UNet-Out --out %s",
            DATA, DATA, DATA, path);
  EXPECT (args, 0, "wrote");
  DsSafetensors *got, *want;
  DsError err = { 0 };
  DS_CHECK_OK (ds_safetensors_open (path, &got, &err), &err);
  DS_CHECK_OK (ds_safetensors_open (DATA "/sd2-tiny-expected.safetensors", &want, &err), &err);
  if (err.code)
    return;
  static const char *const pairs[][2] = {
    { "U-L1-R1-B0-Cross-Q", "up-level1-repeat1-vit-block0-cross-q" },
    { "D-L0-R1-B0-Self-Map", "down-level0-repeat1-vit-block0-self-map" },
    { "U-L2-R2-Res-Out", "up-level2-repeat2-res-out" },
    { "UNet-Out", "unet-out" },
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
    {
      char gname[128], wname[128];
      snprintf (wname, sizeof wname, "probe.%s", pairs[i][1]);
      DsTensor ref;
      DS_CHECK_OK (ds_safetensors_load_f32 (want, wname, 0, NULL, &ref, &err), &err);
      for (int half = 0; half < 2 && ref.data; half++)
        {
          snprintf (gname, sizeof gname, "%s.%s", half ? "cond" : "uncond", pairs[i][0]);
          DsTensor t;
          DS_CHECK_OK (ds_safetensors_load_f32 (got, gname, 0, NULL, &t, &err), &err);
          if (!t.data)
            continue;
          int64_t n = ds_tensor_numel (&t);
          DS_CHECK (n * 2 == ds_tensor_numel (&ref), "%s size", gname);
          double nmse = ds_test_nmse (ds_tensor_f32 (&t), ds_tensor_f32 (&ref) + half * n, n);
          printf ("  %-24s NMSE vs diffusers %.3g\n", gname, nmse);
          DS_CHECK (nmse <= 1e-8, "%s NMSE %.3g", gname, nmse);
          ds_tensor_free (&t);
        }
      ds_tensor_free (&ref);
    }
  ds_safetensors_close (got);
  ds_safetensors_close (want);
}

/* Compares a rendered PNG with its golden: the same size, and per channel at
 * most 3 levels apart on >= 99% of the values with a mean difference <= 0.5.
 * (Exact here; the slack absorbs BLAS summation-order differences elsewhere.) */
static void
check_golden (const char *rendered, const char *golden)
{
  DsImage a, b;
  DsError err = { 0 };
  DsStatus s1 = ds_image_load (rendered, &a, &err);
  DS_CHECK_OK (s1, &err);
  DsStatus s2 = ds_image_load (golden, &b, &err);
  DS_CHECK_OK (s2, &err);
  if (!s1 && !s2)
    {
      DS_CHECK (a.width == b.width && a.height == b.height, "%s: %dx%d, golden %dx%d", rendered,
                a.width, a.height, b.width, b.height);
      if (a.width == b.width && a.height == b.height)
        {
          size_t n = (size_t) a.width * a.height * 3, off = 0;
          double sum = 0;
          for (size_t i = 0; i < n; i++)
            {
              int d = abs ((int) a.rgb[i] - (int) b.rgb[i]);
              off += d > 3;
              sum += d;
            }
          printf ("  %s: %zu of %zu values differ by more than 3, mean difference %.3f\n", golden,
                  off, n, sum / n);
          DS_CHECK (off <= n / 100 && sum / n <= 0.5, "%s differs from its golden %s", rendered,
                    golden);
        }
    }
  if (!s1)
    ds_image_free (&a);
  if (!s2)
    ds_image_free (&b);
}

static void
test_render (void)
{
  char args[4096], out[600], a[700], b[700];
  snprintf (out, sizeof out, "%s/render", tmpdir);
  snprintf (args, sizeof args,
            "render --demo --size 64 --image %s/sd-input.png --prompt 'a red cube on a table' "
            "--probe U-L1-R1-B0-Cross-Q --probe D-L1-R0-Res-Out --words --heat-res 4 --out-dir %s",
            DATA, out);
  EXPECT (args, 0, "note: toy shapes model, trained on synthetic scenes; its words are ");
  /* The goldens shapes64-<file> are this command's output on the built-in
   * model, copied from --out-dir (tests/data/golden/README.md has the command
   * and the weights they were made with). D-L1-R0-Res-Out: a resnet after a
   * cross-attention transformer, so its cond - uncond delta is not zero. */
  static const char *const files[] = {
    "U-L1-R1-B0-Cross-Q.pca-s7.5.png", "U-L1-R1-B0-Cross-Q.pca-uncond.png",
    "D-L1-R0-Res-Out.pca-delta.png", "D-L1-R0-Res-Out.delta-heat.png", "word-02-red.png",
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    {
      snprintf (a, sizeof a, "%s/%s", out, files[i]);
      snprintf (b, sizeof b, "%s/golden/shapes64-%s", DATA, files[i]);
      check_golden (a, b);
    }
  /* Ensembles: the mean over two identical runs is the single run's map (the
   * accumulator is exact for that), two different timesteps give another map,
   * and DAAM's aggregation runs. */
  char ens[600];
  snprintf (ens, sizeof ens, "%s/ensemble", tmpdir);
  snprintf (args, sizeof args,
            "render --demo --size 64 --image %s/sd-input.png --prompt 'a red cube on a table' "
            "--words --heat-res 4 --timesteps 50,50 --out-dir %s", DATA, ens);
  EXPECT (args, 0, "wrote");
  snprintf (a, sizeof a, "%s/word-02-red.png", ens);
  snprintf (b, sizeof b, "%s/golden/shapes64-word-02-red.png", DATA);
  check_golden (a, b);
  snprintf (args, sizeof args,
            "render --demo --size 64 --image %s/sd-input.png --prompt 'a red cube on a table' "
            "--words --heat-res 4 --timesteps 50,999 --trials 2 --out-dir %s", DATA, ens);
  EXPECT (args, 0, "wrote");
  DsImage e, g;
  DsError err = { 0 };
  if (!ds_image_load (a, &e, &err) && !ds_image_load (b, &g, &err))
    {
      DS_CHECK (memcmp (e.rgb, g.rgb, (size_t) e.width * e.height * 3) != 0,
                "an ensemble over other timesteps changes the map");
      ds_image_free (&e);
      ds_image_free (&g);
    }
  snprintf (args, sizeof args,
            "render --demo --size 64 --image %s/sd-input.png --prompt 'a red cube' "
            "--words --daam --timesteps 189,989 --out-dir %s/daam", DATA, tmpdir);
  EXPECT (args, 0, "wrote 5 PNG");

  /* measures.json: the same image twice is cosine 1 at every probe; the CKA
   * matrix between probes is symmetric with a unit diagonal, and agrees with
   * the sweep at s = 0 being exactly 1. */
  char mdir[600], mpath[700];
  snprintf (mdir, sizeof mdir, "%s/measures", tmpdir);
  snprintf (args, sizeof args,
            "render --demo --size 64 --image %s/sd-input.png --image %s/sd-input.png --prompt cube "
            "--probe U-L1-R1-B0-Cross-Q --probe D-L1-R0-Res-Out --cka --out-dir %s",
            DATA, DATA, mdir);
  EXPECT (args, 0, "CKA(U-L1-R1-B0-Cross-Q, D-L1-R0-Res-Out)");
  snprintf (mpath, sizeof mpath, "%s/measures.json", mdir);
  json_error_t je;
  json_t *doc = json_load_file (mpath, 0, &je);
  DS_CHECK (doc != NULL, "measures.json parses: %s", je.text);
  json_t *probes = json_object_get (doc, "probes");
  for (size_t i = 0; i < json_array_size (probes); i++)
    {
      json_t *cs = json_object_get (json_array_get (probes, i), "cosine_images");
      DS_CHECK (fabs (json_real_value (json_object_get (cs, "flat")) - 1) < 1e-6
                  && fabs (json_real_value (json_object_get (cs, "mean_position")) - 1) < 1e-6,
                "an image against itself has cosine 1");
      json_t *first = json_array_get (json_object_get (json_array_get (probes, i), "cka_vs_s"), 0);
      DS_CHECK (json_real_value (json_array_get (first, 0)) == 0.0
                  && fabs (json_real_value (json_array_get (first, 1)) - 1) < 1e-9,
                "CKA(X_0, X_uncond) = 1");
    }
  json_t *m = json_object_get (doc, "cka_between_probes");
  double m01 = json_real_value (json_array_get (json_array_get (m, 0), 1));
  double m10 = json_real_value (json_array_get (json_array_get (m, 1), 0));
  DS_CHECK (fabs (json_real_value (json_array_get (json_array_get (m, 0), 0)) - 1) < 1e-9
              && fabs (json_real_value (json_array_get (json_array_get (m, 1), 1)) - 1) < 1e-9,
            "unit diagonal");
  DS_CHECK (fabs (m01 - m10) < 1e-9 && m01 > 0 && m01 < 1, "symmetric, in (0, 1): %g %g", m01,
            m10);
  json_decref (doc);

  /* render's own errors */
  snprintf (args, sizeof args, "render --demo --size 64 --image %s/sd-input.png --prompt p "
            "--probe U-L1-R1-B0-Cross-Map --out-dir %s", DATA, out);
  EXPECT (args, 1, "U-L1-R1-B0-Cross-Map is an attention map");
  snprintf (args, sizeof args, "render --demo --size 64 --image %s/sd-input.png --prompt p "
            "--probe UNet-Out --colormap rainbow --out-dir %s", DATA, out);
  EXPECT (args, 1, "rainbow");
  snprintf (args, sizeof args, "render --demo --size 64 --image %s/sd-input.png --prompt p "
            "--words --heat-res 5 --out-dir %s", DATA, out);
  EXPECT (args, 1, "no cross-attention layer works at 5x5");
  snprintf (args, sizeof args, "render --demo --size 64 --image %s/sd-input.png --prompt p "
            "--probe UNet-Out --out-dir %s/sd-input.png", DATA, DATA);
  EXPECT (args, 1, "not a directory");
  EXPECT ("render --demo --prompt p --probe UNet-Out --out-dir x", 2, "render needs --image");
}

/* score --pairs: each item's 2x2 matrix equals `score` on the same captions and
 * images, and the verdicts follow Winoground's definition from the matrix. */
static void
test_pairs (void)
{
  char args[4096], path[600];
  snprintf (path, sizeof path, "%s/pairs.json", tmpdir);
  snprintf (args, sizeof args, "score --demo --size 64 --timesteps 189,989 --pairs %s/cli/pairs.json "
            "--json --out %s", DATA, path);
  EXPECT (args, 0, "\"totals\"");
  json_error_t je;
  json_t *doc = json_load_file (path, 0, &je);
  DS_CHECK (doc != NULL, "pairs JSON parses: %s", je.text);
  json_t *item = json_array_get (json_object_get (doc, "items"), 0);
  json_t *m = json_object_get (item, "scores");
  double s[4];
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < 2; i++)
      s[2 * c + i] = json_real_value (json_array_get (json_array_get (m, (size_t) c), (size_t) i));
  bool text = s[0] > s[2] && s[3] > s[1], image = s[0] > s[1] && s[3] > s[2];
  DS_CHECK (json_is_true (json_object_get (item, "text")) == text, "text verdict");
  DS_CHECK (json_is_true (json_object_get (item, "image")) == image, "image verdict");
  DS_CHECK (json_is_true (json_object_get (item, "group")) == (text && image), "group verdict");
  json_t *tot = json_object_get (doc, "totals");
  DS_CHECK (json_integer_value (json_object_get (tot, "n")) == 2, "two items");
  DS_CHECK (json_is_true (json_object_get (doc, "builtin"))
              && json_is_false (json_object_get (doc, "untrained")),
            "pairs JSON: the built-in model, not untrained");
  /* the table's totals line, with the chance levels beside it */
  char line[200];
  snprintf (line, sizeof line, "winoground over 2 items: text %.1f%%, image %.1f%%, group %.1f%% "
            "(chance: text 25%%, image 25%%, group 16.7%%)",
            100 * json_real_value (json_object_get (tot, "text")),
            100 * json_real_value (json_object_get (tot, "image")),
            100 * json_real_value (json_object_get (tot, "group")));
  snprintf (args, sizeof args, "score --demo --size 64 --timesteps 189,989 --pairs %s/cli/pairs.json",
            DATA);
  EXPECT (args, 0, line);

  /* the same pair through the plain score command */
  char single[600];
  snprintf (single, sizeof single, "%s/single.json", tmpdir);
  snprintf (args, sizeof args,
            "score --demo --size 64 --timesteps 189,989 --image %s/sd-input.png --image "
            "%s/images/grey.png --caption 'a red circle and a yellow triangle' --caption 'a plain "
            "grey square' --json --out %s", DATA, DATA, single);
  EXPECT (args, 0, "scores");
  json_t *one = json_load_file (single, 0, &je);
  json_t *mat = one ? json_object_get (one, "scores") : NULL;
  for (int c = 0; mat && c < 2; c++)
    for (int i = 0; i < 2; i++)
      {
        double v = json_real_value (json_array_get (json_array_get (mat, (size_t) c), (size_t) i));
        DS_CHECK (fabs (v - s[2 * c + i]) < 1e-9, "caption %d image %d: %.9f vs %.9f", c, i, v,
                  s[2 * c + i]);
      }
  json_decref (one);
  json_decref (doc);

  /* errors */
  FILE *f = fopen (path, "w");
  fputs ("[{\"captions\": [\"only one\"], \"images\": [\"a.png\", \"b.png\"]}]", f);
  fclose (f);
  snprintf (args, sizeof args, "score --demo --size 64 --pairs %s", path);
  EXPECT (args, 1, "item 0: needs \"captions\" and \"images\", lists of two");
  snprintf (args, sizeof args, "score --demo --pairs %s --image x.png", path);
  EXPECT (args, 2, "--pairs takes its images and captions from the file");
  f = fopen (path, "w");
  fputs ("[{\"captions\": [\"a\", \"b\"], \"images\": [\"missing.png\", \"b.png\"]}]", f);
  fclose (f);
  snprintf (args, sizeof args, "score --demo --size 64 --pairs %s", path);
  EXPECT (args, 1, "missing.png");
}


/* A [1, 4, 16, 16] noise file (the built-in model's latent at --size 64: its
 * VAE downsamples by 4), every value v except element 5, which is v5. */
static void
write_noise (const char *path, float v, float v5)
{
  DsTensor t = { 0 };
  DsError err = { 0 };
  DS_CHECK_OK (ds_tensor_alloc (&t, DS_DTYPE_F32, 4, (int64_t[]){ 1, 4, 16, 16 }, &err), &err);
  float *x = ds_tensor_f32 (&t);
  for (int i = 0; i < 1024; i++)
    x[i] = i == 5 ? v5 : v * ((float) ((i * 37) % 17 - 8) / 8.0f);
  DsSafetensorsItem item = { "noise", &t };
  DS_CHECK_OK (ds_safetensors_write (path, &item, 1, NULL, &err), &err);
  ds_tensor_free (&t);
}

static bool
same_file (const char *a, const char *b)
{
  FILE *fa = fopen (a, "rb"), *fb = fopen (b, "rb");
  bool same = fa && fb;
  while (same)
    {
      int ca = fgetc (fa), cb = fgetc (fb);
      same = ca == cb;
      if (ca == EOF)
        break;
    }
  if (fa)
    fclose (fa);
  if (fb)
    fclose (fb);
  return same;
}

/* Issue #14: hostile or pointless input is refused with a clear message. */
static void
test_hardening (void)
{
  char args[2048], noise[512], path[512], dir[512];
  struct stat sb;

  /* --size: at most 1024, and the message says what size costs */
  EXPECT ("probes --demo --size 2048", 2, "--size must be an integer in 64..1024");
  DS_CHECK_CONTAINS (output, "size^2");

  /* options a command would silently ignore are refused */
  EXPECT ("info --demo --prompt cat", 2, "--prompt is not used by info");
  /* --seed seeds the noise only (the built-in model's weights are fixed) */
  EXPECT ("info --demo --seed 3", 2, "--seed is not used by info");
  EXPECT ("probes --demo --seed 3", 2, "--seed is not used by probes");
  EXPECT (FEATURES_DEMO "--probe UNet-Out --s 3 --out x", 2, "--s is not used by features");
  EXPECT ("score --demo --image " DATA "/sd-input.png --caption a --noise n.safetensors", 2,
          "--noise is not used by score");
  EXPECT ("score --demo --image " DATA "/sd-input.png --caption a --t 10", 2,
          "--t is not used by score");
  EXPECT ("render --demo --size 64 --image " DATA "/sd-input.png --prompt p --probe UNet-Out "
          "--trials 2 --out-dir x", 2, "--trials is used by render only with --words");
  EXPECT ("batch --demo jobs.json --out-dir x --json", 2, "--json is not used by batch");

  /* non-finite noise: named, nothing written */
  snprintf (noise, sizeof noise, "%s/nan-noise.safetensors", tmpdir);
  write_noise (noise, 1.0f, NAN);
  snprintf (path, sizeof path, "%s/nan.safetensors", tmpdir);
  snprintf (args, sizeof args, FEATURES_DEMO "--noise %s --probe UNet-Out --out %s", noise, path);
  EXPECT (args, 1, "tensor 'noise' holds NaN at element 5");
  DS_CHECK (stat (path, &sb) != 0, "nothing written for NaN noise");
  /* finite noise so large that the features overflow: never written as a success */
  snprintf (noise, sizeof noise, "%s/huge-noise.safetensors", tmpdir);
  write_noise (noise, 3.4e38f, 3.4e38f);
  snprintf (args, sizeof args, FEATURES_DEMO "--t 999 --noise %s --probe UNet-Out --out %s", noise,
            path);
  EXPECT (args, 1, "probe UNet-Out (uncond half) holds");
  DS_CHECK (stat (path, &sb) != 0, "nothing written for non-finite features");

  /* render honours --noise: other noise, other pictures; the same noise twice, the same */
  snprintf (noise, sizeof noise, "%s/noise.safetensors", tmpdir);
  write_noise (noise, 1.0f, 0.5f);
  const char *runs[3][2] = { { "r-seed", "" }, { "r-noise", noise }, { "r-noise2", noise } };
  for (int i = 0; i < 3; i++)
    {
      snprintf (args, sizeof args,
                "render --demo --size 64 --image " DATA "/sd-input.png --prompt cube "
                "--probe UNet-Out %s%s --out-dir %s/%s",
                runs[i][1][0] ? "--noise " : "", runs[i][1], tmpdir, runs[i][0]);
      EXPECT (args, 0, "wrote");
    }
  char a[600], b[600];
  snprintf (a, sizeof a, "%s/r-seed/UNet-Out.pca-uncond.png", tmpdir);
  snprintf (b, sizeof b, "%s/r-noise/UNet-Out.pca-uncond.png", tmpdir);
  DS_CHECK (!same_file (a, b), "render --noise changes the pictures");
  snprintf (a, sizeof a, "%s/r-noise2/UNet-Out.pca-uncond.png", tmpdir);
  DS_CHECK (same_file (a, b), "render --noise is deterministic");

  /* a failed render leaves no folder it made */
  snprintf (dir, sizeof dir, "%s/never-made", tmpdir);
  snprintf (args, sizeof args, "render --demo --size 64 --image /nonexistent.png --prompt p "
            "--probe UNet-Out --out-dir %s", dir);
  EXPECT (args, 1, "/nonexistent.png");
  DS_CHECK (stat (dir, &sb) != 0, "no empty --out-dir left behind");

  /* --pairs DIR: said to be a directory, not a JSON syntax error */
  snprintf (args, sizeof args, "score --demo --size 64 --pairs %s", tmpdir);
  EXPECT (args, 1, "is a directory; --pairs takes a JSON file");

  /* features --out on a FIFO: refused (FILE.json would go beside it) */
  snprintf (path, sizeof path, "%s/out.fifo", tmpdir);
  DS_CHECK (mkfifo (path, 0600) == 0, "mkfifo");
  snprintf (args, sizeof args, FEATURES_DEMO "--probe UNet-Out --out %s", path);
  EXPECT (args, 1, "out.fifo: is a FIFO");
  DS_CHECK (lstat (path, &sb) == 0 && S_ISFIFO (sb.st_mode), "the FIFO is left alone");
  unlink (path);
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      fprintf (stderr, "usage: test-cli PATH-TO-diffscope-cli\n");
      return 1;
    }
  cli = argv[1];
  if (!mkdtemp (tmpdir))
    return 1;
  test_usage_errors ();
  test_device_choice ();
  test_input_errors ();
  test_demo ();
  test_against_diffusers ();
  test_render ();
  test_pairs ();
  test_hardening ();
  char cmd[600];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", tmpdir);
  return ds_test_finish ();
}
