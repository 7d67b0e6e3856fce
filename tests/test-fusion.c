/* test-fusion.c: the CLIP + diffusion feature fusion (engine/models/ds-fusion.c
 * and its glue in engine/session/ds-llava.c; docs/models.md §7.9) against the
 * PyTorch reference of tests/reference/gen_fusion_fixtures.py
 * (tests/data/fusion/):
 *  - the diffusion tokens (guidance + average pooling), both modes' fused rows
 *    and their projection through tests/data/llava-tiny's projector
 *    (NMSE <= 1e-8);
 *  - config.json: every key's errors; fusion.safetensors: missing, extra,
 *    wrong-shaped, integer and non-finite tensors; each names the file and
 *    the key or tensor;
 *  - the checks against the models (tests/data/llava-tiny and the SD fixture
 *    tests/data/sd2-tiny): an attention-map probe, an unknown probe, the
 *    channel count, a grid that does not divide the probe, vision_hidden, t;
 *  - end to end: the fused rows are the composition of the parts, the prompt
 *    gets 9 + 16 image tokens with concat (9 with cross_attention), an answer
 *    is generated, and an untrained checkpoint is refused unless allowed and
 *    then marked.
 */
#include "ds-test.h"

#include <stdlib.h>
#include <unistd.h>

#include "ds-fusion.h"
#include "ds-image.h"
#include "ds-llava.h"
#include "ds-session.h"

#define DATA DS_TEST_DATA_DIR
#define FUSION DATA "/fusion"
#define PROBE "U-L3-R1-B0-Cross-Q" /* sd2-tiny at 128: [8, 16, 16] */

/* The fixtures are f32 computations on the same (rounded) weights in both
 * implementations; what differs is only the order of f32 sums (BLAS GEMMs,
 * softmax, pooling in double here), ~1e-14 in NMSE. 1e-8 leaves room for
 * that and still catches any wrong formula, which costs O(1). */
#define NMSE_TOL 1e-8

static DsBackend *be;
static DsSafetensors *expected;
static char tmp[64];

static DsTensor
ref (const char *name)
{
  DsTensor t = { 0 };
  DsError err = { 0 };
  DS_CHECK_OK (ds_safetensors_load_f32 (expected, name, 0, NULL, &t, &err), &err);
  return t;
}

/* ---- the forward against PyTorch ---- */

static void
test_tokens (void)
{
  DsTensor xu = ref ("probe.uncond"), xc = ref ("probe.cond"), want = ref ("tokens"), got;
  DsFusionConfig cfg = { .grid = 4, .s = 7.5f };
  snprintf (cfg.probe, sizeof cfg.probe, PROBE);
  DsError err = { 0 };
  DS_CHECK_OK (ds_fusion_tokens (&cfg, ds_tensor_f32 (&xu), ds_tensor_f32 (&xc), 8, 16, 16, &got,
                                 &err), &err);
  ds_test_check_tensor ("tokens (guided, pooled)", &got, &want, NMSE_TOL);
  ds_tensor_free (&got);
  /* a grid that does not divide the map */
  cfg.grid = 3;
  DsStatus st = ds_fusion_tokens (&cfg, ds_tensor_f32 (&xu), ds_tensor_f32 (&xc), 8, 16, 16,
                                  &got, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "grid 3");
  /* a non-finite guided value */
  cfg.grid = 4;
  ds_tensor_f32 (&xc)[5] = INFINITY;
  st = ds_fusion_tokens (&cfg, ds_tensor_f32 (&xu), ds_tensor_f32 (&xc), 8, 16, 16, &got, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "NaN or infinity");
  ds_tensor_free (&xu);
  ds_tensor_free (&xc);
  ds_tensor_free (&want);
}

static void
test_forward (DsLlava *lv, const char *dir, const char *mode, DsFusionMode m, int64_t rows)
{
  printf ("%s\n", mode);
  DsError err = { 0 };
  DsFusion *f = NULL;
  DS_CHECK_OK (ds_fusion_open (dir, be, &f, &err), &err);
  if (!f)
    return;
  const DsFusionConfig *c = ds_fusion_config (f);
  DS_CHECK (c->mode == m && strcmp (ds_fusion_mode_name (c->mode), mode) == 0, "mode %d", c->mode);
  DS_CHECK (c->grid == 4 && c->channels == 8 && c->vision_hidden == 32 && c->t == 50
            && c->s == 7.5f && c->trained && strcmp (c->probe, PROBE) == 0, "config read");
  DS_CHECK (c->heads == (m == DS_FUSION_CROSS_ATTENTION ? 4 : 0), "heads %d", c->heads);
  DS_CHECK (strstr (c->description, "random test weights") != NULL, "%s", c->description);
  DS_CHECK (ds_fusion_n_tokens (f) == 16 && ds_fusion_n_rows (f, 9) == rows, "rows");

  char name[64];
  DsTensor V = ref ("clip"), F = ref ("tokens"), fused = { 0 }, proj = { 0 };
  snprintf (name, sizeof name, "%s.fused", mode);
  DsTensor want_fused = ref (name);
  snprintf (name, sizeof name, "%s.projected", mode);
  DsTensor want_proj = ref (name);
  DS_CHECK_OK (ds_fusion_forward (f, &V, &F, &fused, &err), &err);
  snprintf (name, sizeof name, "%s: fused", mode);
  ds_test_check_tensor (name, &fused, &want_fused, NMSE_TOL);
  if (fused.data)
    DS_CHECK_OK (ds_llava_project (lv, &fused, &proj, &err), &err);
  snprintf (name, sizeof name, "%s: projected", mode);
  if (proj.data)
    ds_test_check_tensor (name, &proj, &want_proj, NMSE_TOL);

  /* inputs of the wrong shape */
  DsTensor Vbad = ds_tensor_reshape (&V, 2, (int64_t[]){ 18, 16 }), none = { 0 };
  DsStatus st = ds_fusion_forward (f, &Vbad, &F, &none, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "CLIP tokens are [18, 16]");
  DsTensor Fbad = ds_tensor_slice0 (&F, 0, 9);
  st = ds_fusion_forward (f, &V, &Fbad, &none, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "diffusion tokens are [9, 8], expected host f32 [16, 8]");
  st = ds_llava_project (lv, &Vbad, &none, &err);
  DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "[18, 16]");
  DS_CHECK (none.data == NULL, "no output on failure");

  DsTensor *ts[] = { &V, &F, &fused, &proj, &want_fused, &want_proj };
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    ds_tensor_free (ts[i]);
  ds_fusion_free (f);
}

/* ---- writing checkpoints ---- */

typedef struct {
  const char *mode, *probe;
  int t, grid, heads;
  int64_t c, cv;
  bool trained;
} Spec;

static Spec
spec_default (void)
{
  return (Spec){ .mode = "concat", .probe = PROBE, .t = 50, .grid = 4, .heads = 4, .c = 8,
                 .cv = 32, .trained = true };
}

static bool
write_text (const char *path, const char *text)
{
  FILE *f = fopen (path, "w");
  if (!f)
    return false;
  bool ok = fputs (text, f) >= 0;
  return fclose (f) == 0 && ok;
}

static void
config_text (const Spec *s, char *buf, size_t n)
{
  char heads[32] = "";
  if (strcmp (s->mode, "cross_attention") == 0)
    snprintf (heads, sizeof heads, "\"heads\": %d, ", s->heads);
  snprintf (buf, n, "{\"format\": \"diffscope-fusion\", \"version\": 1, \"mode\": \"%s\", "
            "\"probe\": \"%s\", \"t\": %d, \"s\": 7.5, \"grid\": %d, \"diffusion_channels\": %lld, "
            "\"vision_hidden\": %lld, %s\"trained\": %s, \"description\": \"test\"}",
            s->mode, s->probe, s->t, s->grid, (long long) s->c, (long long) s->cv, heads,
            s->trained ? "true" : "false");
}

/* Seeded small values into an f32 tensor of the given shape. */
static DsTensor
filled (int ndim, const int64_t *shape, uint32_t seed)
{
  DsTensor t = { 0 };
  ds_tensor_alloc (&t, DS_DTYPE_F32, ndim, shape, NULL);
  for (int64_t i = 0; i < ds_tensor_numel (&t); i++)
    {
      seed = seed * 1664525u + 1013904223u;
      ds_tensor_f32 (&t)[i] = (float) ((seed >> 8) % 2001) / 10000.0f - 0.1f;
    }
  return t;
}

/* A checkpoint folder dir for s with seeded weights; `drop` is a tensor left
 * out, `extra` one added, `bad_shape` one stored [3]. */
static bool
write_checkpoint (const char *dir, const Spec *s, const char *drop, const char *extra,
                  const char *bad_shape)
{
  char path[512], text[1024];
  snprintf (path, sizeof path, "mkdir -p '%s'", dir);
  if (system (path) != 0)
    return false;
  config_text (s, text, sizeof text);
  snprintf (path, sizeof path, "%s/config.json", dir);
  if (!write_text (path, text))
    return false;
  static const char *const cross[] = {
    "cross_attn.norm_q.weight", "cross_attn.norm_q.bias", "cross_attn.norm_kv.weight",
    "cross_attn.norm_kv.bias", "cross_attn.q_proj.weight", "cross_attn.q_proj.bias",
    "cross_attn.k_proj.weight", "cross_attn.k_proj.bias", "cross_attn.v_proj.weight",
    "cross_attn.v_proj.bias", "cross_attn.out_proj.weight", "cross_attn.out_proj.bias",
  };
  const char *names[16];
  DsTensor ts[16];
  DsSafetensorsItem items[16];
  int n = 0;
  names[n] = "diffusion_proj.weight";
  ts[n++] = filled (2, (int64_t[]){ s->cv, s->c }, 1);
  names[n] = "diffusion_proj.bias";
  ts[n++] = filled (1, (int64_t[]){ s->cv }, 2);
  for (int i = 0; strcmp (s->mode, "cross_attention") == 0 && i < 12; i++)
    {
      names[n] = cross[i];
      bool mat = strstr (cross[i], "proj.weight") != NULL;
      ts[n++] = mat ? filled (2, (int64_t[]){ s->cv, s->cv }, 3 + i)
                    : filled (1, (int64_t[]){ s->cv }, 3 + i);
    }
  if (extra)
    {
      names[n] = extra;
      ts[n++] = filled (1, (int64_t[]){ 4 }, 99);
    }
  int m = 0;
  for (int i = 0; i < n; i++)
    {
      if (drop && strcmp (names[i], drop) == 0)
        continue;
      if (bad_shape && strcmp (names[i], bad_shape) == 0)
        {
          ds_tensor_free (&ts[i]);
          ts[i] = filled (1, (int64_t[]){ 3 }, 7);
        }
      items[m++] = (DsSafetensorsItem){ names[i], &ts[i] };
    }
  snprintf (path, sizeof path, "%s/fusion.safetensors", dir);
  DsError err = { 0 };
  DsStatus st = ds_safetensors_write (path, items, m, NULL, &err);
  for (int i = 0; i < n; i++)
    ds_tensor_free (&ts[i]);
  return st == DS_OK;
}

/* ds_fusion_open of dir fails with `code` and a message holding every needle. */
static void
expect_open_error (const char *dir, DsStatus code, const char *needle1, const char *needle2)
{
  DsError err = { 0 };
  DsFusion *f = NULL;
  DsStatus st = ds_fusion_open (dir, be, &f, &err);
  DS_CHECK_STATUS (st, code, &err);
  DS_CHECK (f == NULL, "no fusion on failure");
  DS_CHECK_CONTAINS (err.message, needle1);
  if (needle2)
    DS_CHECK_CONTAINS (err.message, needle2);
  ds_fusion_free (f);
}

/* ---- config.json ---- */

static void
test_config_errors (void)
{
  static const struct {
    const char *json, *needle;
    DsStatus code;
  } cases[] = {
    { "[1]", "expected a JSON object", DS_ERR_FORMAT },
    { "{\"format\": ", "line 1", DS_ERR_FORMAT },
    { "{}", "\"format\" is missing", DS_ERR_FORMAT },
    { "{\"format\": \"llava\"}", "\"format\" is \"llava\", expected \"diffscope-fusion\"",
      DS_ERR_FORMAT },
    { "{\"format\": \"diffscope-fusion\"}", "\"version\" is missing", DS_ERR_FORMAT },
    { "{\"format\": \"diffscope-fusion\", \"version\": 2}", "\"version\" 2 is not supported",
      DS_ERR_UNSUPPORTED },
    { "{\"format\": \"diffscope-fusion\", \"version\": 1, \"mode\": \"sum\"}", "\"mode\" \"sum\"",
      DS_ERR_FORMAT },
    { "{\"format\": \"diffscope-fusion\", \"version\": 1}", "\"mode\" is missing",
      DS_ERR_FORMAT },
    { "{\"format\": \"diffscope-fusion\", \"version\": 1, \"color\": 1}", "unknown key \"color\"",
      DS_ERR_FORMAT },
    { "{\"format\": \"diffscope-fusion\", \"version\": 1, \"version\": 1}", "duplicate",
      DS_ERR_FORMAT },
  };
  DsError err = { 0 };
  DsFusionConfig cfg;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      DsStatus st = ds_fusion_config_parse (cases[i].json, "x/config.json", &cfg, &err);
      DS_CHECK (st == cases[i].code, "%s: %s (%s)", cases[i].json, ds_status_name (st),
                err.message);
      DS_CHECK_CONTAINS (err.message, cases[i].needle);
      DS_CHECK_CONTAINS (err.message, "x/config.json");
    }

  /* one key at a time wrong in an otherwise good cross_attention config */
  static const struct {
    const char *from, *to, *needle;
  } edits[] = {
    { "\"probe\": \"" PROBE "\"", "\"probe\": 3", "\"probe\" is an integer" },
    { "\"probe\": \"" PROBE "\"", "\"probe\": \"\"", "\"probe\" must be" },
    { "\"t\": 50", "\"t\": -1", "\"t\" is out of range" },
    { "\"t\": 50", "\"t\": 5.5", "\"t\" is a real number" },
    { "\"s\": 7.5", "\"s\": \"7.5\"", "\"s\" is not a number" },
    { "\"s\": 7.5, ", "", "\"s\" is missing" },
    { "\"grid\": 4", "\"grid\": 0", "\"grid\" is out of range" },
    { "\"diffusion_channels\": 8, ", "", "\"diffusion_channels\" is missing" },
    { "\"vision_hidden\": 32", "\"vision_hidden\": true", "\"vision_hidden\" is a boolean" },
    { "\"heads\": 4, ", "", "\"heads\" is missing" },
    { "\"heads\": 4", "\"heads\": 5", "\"heads\" 5 does not divide \"vision_hidden\" 32" },
    { "\"heads\": 4", "\"heads\": 64", "\"heads\" is out of range" },
    { "\"trained\": true", "\"trained\": 1", "\"trained\" is not a boolean" },
    { "\"trained\": true, ", "", "\"trained\" is missing" },
    { "\"description\": \"test\"", "\"description\": 5", "\"description\" is an integer" },
  };
  Spec sp = spec_default ();
  sp.mode = "cross_attention";
  char good[1024];
  config_text (&sp, good, sizeof good);
  DS_CHECK_OK (ds_fusion_config_parse (good, "x/config.json", &cfg, &err), &err);
  DS_CHECK (cfg.mode == DS_FUSION_CROSS_ATTENTION && cfg.heads == 4, "good config");
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++)
    {
      char text[1024];
      const char *at = strstr (good, edits[i].from);
      DS_CHECK (at != NULL, "edit %zu: \"%s\" not in the config", i, edits[i].from);
      if (!at)
        continue;
      snprintf (text, sizeof text, "%.*s%s%s", (int) (at - good), good, edits[i].to,
                at + strlen (edits[i].from));
      DsStatus st = ds_fusion_config_parse (text, "x/config.json", &cfg, &err);
      DS_CHECK (st != DS_OK, "%s: accepted", text);
      DS_CHECK_CONTAINS (err.message, edits[i].needle);
    }
  /* heads in a concat config */
  sp.mode = "concat";
  config_text (&sp, good, sizeof good);
  char text[1024];
  snprintf (text, sizeof text, "%.*s, \"heads\": 4}", (int) strlen (good) - 1, good);
  DS_CHECK (ds_fusion_config_parse (text, "x/config.json", &cfg, &err) == DS_ERR_FORMAT,
            "heads with concat");
  DS_CHECK_CONTAINS (err.message, "mode \"concat\" has no attention");
}

/* ---- fusion.safetensors ---- */

static void
test_checkpoint_errors (void)
{
  char dir[512], path[600];
  Spec sp = spec_default ();
  sp.mode = "cross_attention";

  snprintf (dir, sizeof dir, "%s/none", tmp);
  expect_open_error (dir, DS_ERR_NOT_FOUND, "none/config.json: cannot open", "fusion.safetensors");

  snprintf (dir, sizeof dir, "%s/good", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, NULL, NULL, NULL), "write %s", dir);
  DsError err = { 0 };
  DsFusion *f = NULL;
  DS_CHECK_OK (ds_fusion_open (dir, be, &f, &err), &err);
  ds_fusion_free (f);

  snprintf (dir, sizeof dir, "%s/noweights", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, NULL, NULL, NULL), "write %s", dir);
  snprintf (path, sizeof path, "%s/fusion.safetensors", dir);
  unlink (path);
  expect_open_error (dir, DS_ERR_IO, "noweights/fusion.safetensors", NULL);

  snprintf (dir, sizeof dir, "%s/missing", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, "cross_attn.k_proj.bias", NULL, NULL), "write");
  expect_open_error (dir, DS_ERR_NOT_FOUND, "missing/fusion.safetensors: tensor "
                     "'cross_attn.k_proj.bias' is missing", "cross_attention");

  snprintf (dir, sizeof dir, "%s/extra", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, NULL, "cross_attn.gate", NULL), "write");
  expect_open_error (dir, DS_ERR_FORMAT, "extra/fusion.safetensors: unexpected tensor "
                     "'cross_attn.gate'", NULL);

  /* a concat checkpoint with cross-attention tensors: extra too */
  snprintf (dir, sizeof dir, "%s/concat-extra", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, NULL, NULL, NULL), "write");
  snprintf (path, sizeof path, "%s/config.json", dir);
  Spec cs = spec_default ();
  char text[1024];
  config_text (&cs, text, sizeof text);
  DS_CHECK (write_text (path, text), "write");
  expect_open_error (dir, DS_ERR_FORMAT, "unexpected tensor 'cross_attn.", "mode \"concat\"");

  snprintf (dir, sizeof dir, "%s/shape", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, NULL, NULL, "diffusion_proj.bias"), "write");
  expect_open_error (dir, DS_ERR_FORMAT, "tensor 'diffusion_proj.bias' has shape [3], "
                     "expected [32]", "shape/fusion.safetensors");

  /* channels in the config and the weights disagree */
  snprintf (dir, sizeof dir, "%s/channels", tmp);
  DS_CHECK (write_checkpoint (dir, &cs, NULL, NULL, NULL), "write");
  cs.c = 16;
  config_text (&cs, text, sizeof text);
  snprintf (path, sizeof path, "%s/config.json", dir);
  DS_CHECK (write_text (path, text), "write");
  expect_open_error (dir, DS_ERR_FORMAT, "'diffusion_proj.weight' has shape [32, 8], expected "
                     "[32, 16]", NULL);

  /* an integer tensor and a non-finite value */
  snprintf (dir, sizeof dir, "%s/dtype", tmp);
  cs = spec_default ();
  DS_CHECK (write_checkpoint (dir, &cs, NULL, NULL, NULL), "write");
  DsTensor w = filled (2, (int64_t[]){ 32, 8 }, 1), b = { 0 };
  ds_tensor_alloc (&b, DS_DTYPE_I32, 1, (int64_t[]){ 32 }, NULL);
  DsSafetensorsItem items[] = { { "diffusion_proj.weight", &w }, { "diffusion_proj.bias", &b } };
  snprintf (path, sizeof path, "%s/fusion.safetensors", dir);
  DS_CHECK_OK (ds_safetensors_write (path, items, 2, NULL, &err), &err);
  expect_open_error (dir, DS_ERR_FORMAT, "tensor 'diffusion_proj.bias' is i32", NULL);
  ds_tensor_free (&b);
  ds_tensor_alloc (&b, DS_DTYPE_F32, 1, (int64_t[]){ 32 }, NULL);
  ds_tensor_f32 (&w)[17] = NAN;
  DS_CHECK_OK (ds_safetensors_write (path, items, 2, NULL, &err), &err);
  expect_open_error (dir, DS_ERR_FORMAT, "diffusion_proj.weight' holds NaN",
                     "dtype/fusion.safetensors");
  ds_tensor_free (&w);
  ds_tensor_free (&b);

  /* a broken config.json in a folder */
  snprintf (dir, sizeof dir, "%s/badjson", tmp);
  DS_CHECK (write_checkpoint (dir, &cs, NULL, NULL, NULL), "write");
  snprintf (path, sizeof path, "%s/config.json", dir);
  DS_CHECK (write_text (path, "{\"format\": \"diffscope-fusion\", \"version\": 1, \"mode\": 3}"),
            "write");
  expect_open_error (dir, DS_ERR_FORMAT, "badjson/config.json: \"mode\" is not a string", NULL);
}

/* ---- against the models, and end to end ---- */

static void
expect_check_error (DsLlava *lv, DsSession *s, const char *name, const Spec *sp,
                    const char *needle1, const char *needle2)
{
  char dir[512];
  snprintf (dir, sizeof dir, "%s/%s", tmp, name);
  DS_CHECK (write_checkpoint (dir, sp, NULL, NULL, NULL), "write %s", dir);
  DsError err = { 0 };
  DsFusion *f = NULL;
  DS_CHECK_OK (ds_fusion_open (dir, be, &f, &err), &err);
  if (!f)
    return;
  DsStatus st = ds_llava_fusion_check (lv, s, f, &err);
  DS_CHECK (st != DS_OK, "%s: accepted", name);
  DS_CHECK_CONTAINS (err.message, needle1);
  DS_CHECK_CONTAINS (err.message, needle2);
  char cfg[600];
  snprintf (cfg, sizeof cfg, "%s/config.json", name);
  DS_CHECK_CONTAINS (err.message, cfg);
  /* the fused features run the same check first */
  DsImage img = { 0 };
  DsTensor feats = { 0 };
  if (ds_image_load (DATA "/sd-input.png", &img, &err) == DS_OK)
    {
      st = ds_llava_fused_features (lv, s, f, &img, "a question", NULL, &feats, &err);
      DS_CHECK (st != DS_OK && feats.data == NULL, "%s: fused anyway", name);
      DS_CHECK_CONTAINS (err.message, needle1);
    }
  ds_image_free (&img);
  ds_fusion_free (f);
}

static void
test_model_checks (DsLlava *lv, DsSession *s)
{
  Spec sp = spec_default ();
  sp.probe = "U-L3-R1-B0-Cross-Map";
  expect_check_error (lv, s, "map", &sp, "is an attention map", "U-L3-R1-B0-Cross-Map");
  sp.probe = "U-L9-R1-B0-Cross-Q";
  expect_check_error (lv, s, "unknown", &sp, "is not a probe of the SD model", "U-L9");
  sp = spec_default ();
  sp.c = 16;
  expect_check_error (lv, s, "channels", &sp, "\"diffusion_channels\" is 16",
                      "has 8 channels");
  sp = spec_default ();
  sp.grid = 3;
  expect_check_error (lv, s, "grid", &sp, "\"grid\" 3 does not divide", "16x16");
  sp = spec_default ();
  sp.cv = 64;
  expect_check_error (lv, s, "vision", &sp, "\"vision_hidden\" is 64", "is 32 wide");
  sp = spec_default ();
  sp.t = 1000;
  expect_check_error (lv, s, "timestep", &sp, "\"t\"", "1000");
  /* a long id names the same probe */
  sp = spec_default ();
  sp.probe = "up-level3-repeat1-vit-block0-cross-q";
  char dir[512];
  snprintf (dir, sizeof dir, "%s/longid", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, NULL, NULL, NULL), "write");
  DsError err = { 0 };
  DsFusion *f = NULL;
  DS_CHECK_OK (ds_fusion_open (dir, be, &f, &err), &err);
  if (f)
    DS_CHECK_OK (ds_llava_fusion_check (lv, s, f, &err), &err);
  ds_fusion_free (f);
}

static void
test_end_to_end (DsLlava *lv, DsSession *s, const char *dir, int64_t rows)
{
  printf ("end to end: %s\n", dir);
  const char *question = "What is shown in this picture?";
  DsError err = { 0 };
  DsImage img = { 0 };
  DsFusion *f = NULL;
  DS_CHECK_OK (ds_image_load (DATA "/sd-input.png", &img, &err), &err);
  DS_CHECK_OK (ds_fusion_open (dir, be, &f, &err), &err);
  if (!f || !img.rgb)
    return;
  DS_CHECK_OK (ds_llava_fusion_check (lv, s, f, &err), &err);

  DsTensor feats = { 0 };
  DS_CHECK_OK (ds_llava_fused_features (lv, s, f, &img, question, NULL, &feats, &err), &err);
  DS_CHECK (feats.ndim == 2 && feats.shape[0] == rows && feats.shape[1] == 64,
            "fused features [%lld, %lld], expected [%lld, 64]", (long long) feats.shape[0],
            (long long) feats.shape[1], (long long) rows);

  /* the same from the parts: the session's probe, tokens, CLIP tokens, forward, projector */
  const char *probes[] = { PROBE };
  DsQuery q = ds_query_default (s);
  q.image = &img;
  q.prompt = question;
  q.uncond_prompt = "";
  q.t = 50;
  q.seed = 0;
  q.probes = probes;
  q.n_probes = 1;
  q.heat_nq = -1;
  DsSessionResult *r = NULL;
  DsTensor F = { 0 }, V = { 0 }, fused = { 0 }, want = { 0 };
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r, &err), &err);
  if (r)
    {
      const DsSessionProbe *p = ds_session_result_probe (r, PROBE);
      DS_CHECK (p && p->c == 8 && p->h == 16 && p->w == 16, "probe shape");
      DS_CHECK (r->from_cache, "the fused features' query is cached: the same query");
      if (p)
        DS_CHECK_OK (ds_fusion_tokens (ds_fusion_config (f), p->uncond, p->cond, 8, 16, 16, &F,
                                       &err), &err);
      ds_session_result_unref (r);
    }
  DS_CHECK_OK (ds_llava_vision_features (lv, &img, &V, &err), &err);
  DS_CHECK (V.shape[0] == 9 && V.shape[1] == 32, "CLIP tokens [9, 32]");
  if (F.data && V.data)
    DS_CHECK_OK (ds_fusion_forward (f, &V, &F, &fused, &err), &err);
  if (fused.data)
    DS_CHECK_OK (ds_llava_project (lv, &fused, &want, &err), &err);
  DS_CHECK (want.data && feats.data && ds_tensor_same_shape (&want, &feats)
            && memcmp (want.data, feats.data, ds_tensor_nbytes (&want)) == 0,
            "fused features = project (forward (CLIP tokens, tokens (probe)))");

  /* the plain path is the same split: image features = project (vision features) */
  DsTensor plain = { 0 }, plain2 = { 0 };
  DS_CHECK_OK (ds_llava_image_features (lv, &img, &plain, &err), &err);
  if (V.data)
    DS_CHECK_OK (ds_llava_project (lv, &V, &plain2, &err), &err);
  DS_CHECK (plain.data && plain2.data
            && memcmp (plain.data, plain2.data, ds_tensor_nbytes (&plain)) == 0,
            "image features = project (vision features)");

  /* an answer: one image token per row */
  DsLlavaParams p;
  ds_llava_params_default (&p);
  p.max_new_tokens = 4;
  p.eos_id = DS_LLAVA_EOS_NONE;
  DsLlavaAnswer plain_ans = { 0 }, ans = { 0 };
  DS_CHECK_OK (ds_llava_ask (lv, &img, question, &p, &plain_ans, &err), &err);
  DS_CHECK_OK (ds_llava_ask_fused (lv, s, f, &img, question, &p, &ans, &err), &err);
  DS_CHECK (ans.n_ids == 4 && ans.text, "4 tokens generated (%lld)", (long long) ans.n_ids);
  DS_CHECK (ans.n_prompt == plain_ans.n_prompt + (rows - 9),
            "prompt of %lld tokens, the plain one %lld, image rows %lld",
            (long long) ans.n_prompt, (long long) plain_ans.n_prompt, (long long) rows);
  DS_CHECK (!ans.untrained_fusion, "a trained checkpoint");
  /* the prompt as the fused ask builds it holds `rows` image tokens */
  char *prompt = NULL;
  int32_t *ids = NULL;
  int64_t n = 0, n_img = 0;
  DS_CHECK_OK (ds_llava_prompt (NULL, question, true, &prompt, &err), &err);
  DS_CHECK_OK (ds_llava_encode_prompt (lv, prompt, feats.shape[0], &ids, &n, &err), &err);
  for (int64_t i = 0; i < n; i++)
    n_img += ids[i] == ds_llava_config (lv)->image_token_id;
  DS_CHECK (n_img == rows && n == ans.n_prompt, "%lld image tokens of %lld", (long long) n_img,
            (long long) n);
  free (ids);
  free (prompt);

  ds_llava_answer_clear (&plain_ans);
  ds_llava_answer_clear (&ans);
  DsTensor *ts[] = { &feats, &F, &V, &fused, &want, &plain, &plain2 };
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    ds_tensor_free (ts[i]);
  ds_fusion_free (f);
  ds_image_free (&img);
}

static void
test_untrained (DsLlava *lv, DsSession *s)
{
  Spec sp = spec_default ();
  sp.trained = false;
  char dir[512];
  snprintf (dir, sizeof dir, "%s/untrained", tmp);
  DS_CHECK (write_checkpoint (dir, &sp, NULL, NULL, NULL), "write");
  DsError err = { 0 };
  DsFusion *f = NULL;
  DsImage img = { 0 };
  DS_CHECK_OK (ds_fusion_open (dir, be, &f, &err), &err);
  DS_CHECK_OK (ds_image_load (DATA "/sd-input.png", &img, &err), &err);
  if (!f || !img.rgb)
    return;
  DS_CHECK (!ds_fusion_config (f)->trained, "trained false read");
  DsLlavaParams p;
  ds_llava_params_default (&p);
  p.max_new_tokens = 2;
  DsLlavaAnswer ans = { 0 };
  DsStatus st = ds_llava_ask_fused (lv, s, f, &img, "What?", &p, &ans, &err);
  DS_CHECK_STATUS (st, DS_ERR_UNSUPPORTED, &err);
  DS_CHECK_CONTAINS (err.message, "untrained/config.json: \"trained\" is false");
  DS_CHECK (ans.n_ids == 0 && !ans.text, "no answer");
  ds_llava_answer_clear (&ans);
  p.allow_untrained_fusion = true;
  DS_CHECK_OK (ds_llava_ask_fused (lv, s, f, &img, "What?", &p, &ans, &err), &err);
  DS_CHECK (ans.untrained_fusion && ans.n_ids >= 1, "marked untrained");
  ds_llava_answer_clear (&ans);
  /* a cancel before the UNet runs stops it */
  atomic_int cancel = 1;
  DsTensor feats = { 0 };
  st = ds_llava_fused_features (lv, s, f, &img, "Another question?", &cancel, &feats, &err);
  DS_CHECK_STATUS (st, DS_ERR_CANCELLED, &err);
  ds_fusion_free (f);
  ds_image_free (&img);
}

int
main (void)
{
  DsError err = { 0 };
  DsLlava *lv = NULL;
  DsPipeline *pipe = NULL;
  DsSession *s = NULL;
  snprintf (tmp, sizeof tmp, "/tmp/ds-test-fusion-XXXXXX");
  if (!(be = ds_backend_cpu_new (&err)) || !mkdtemp (tmp)
      || ds_safetensors_open (FUSION "/expected.safetensors", &expected, &err)
      || ds_llava_open (DATA "/llava-tiny", be, &lv, &err)
      || ds_pipeline_open (DATA "/sd2-tiny", be, &pipe, &err)
      || ds_session_new (pipe, NULL, &s, &err))
    {
      fprintf (stderr, "setup: %s\n", err.message);
      return 1;
    }
  test_tokens ();
  test_forward (lv, FUSION "/concat", "concat", DS_FUSION_CONCAT, 25);
  test_forward (lv, FUSION "/cross-attention", "cross_attention", DS_FUSION_CROSS_ATTENTION, 9);
  test_config_errors ();
  test_checkpoint_errors ();
  test_model_checks (lv, s);
  test_end_to_end (lv, s, FUSION "/concat", 25);
  test_end_to_end (lv, s, FUSION "/cross-attention", 9);
  test_untrained (lv, s);

  ds_session_free (s);
  ds_llava_free (lv);
  ds_safetensors_close (expected);
  ds_backend_free (be);
  char cmd[128];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", tmp);
  return ds_test_finish ();
}
