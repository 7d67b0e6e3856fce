/* test-clip-vision.c: LLaVA-1.5's CLIP vision tower and image processor against
 * transformers (tests/reference/gen_clip_vision_fixture.py, tests/data/clip-vision/).
 *
 * Tower: CLIPVisionModel(pixels).hidden_states[-2][:, 1:] in fp32 with NMSE
 * <= 1e-8, for a llava-hf-style file (f32, vision_tower.vision_model.*, config
 * nested in a LlavaConfig) and a CLIP-style file (f16, vision_model.*, exact
 * GELU, 5x5 patches with 4 pixels per side unseen) that lacks the last layer and
 * post_layernorm (the early stop); batches of 1 and 2; the class token kept
 * ("full"); the other prefix spellings; missing or misshapen tensors and bad
 * configs give errors naming the tensor or key; the real ViT-L/14-336 shapes at
 * reduced depth run with seeded weights (and match transformers when
 * DIFFSCOPE_CLIP_VISION_REAL names a folder from the script's --config real).
 *
 * Processor: ds_clip_image_preprocess equals transformers' PIL-backed
 * CLIPImageProcessor exactly (max abs diff 0: every step is integer until the
 * per-byte f32 map, which is computed with numpy's operation order), with and
 * without LLaVA's pad-to-square, for portrait, landscape, tiny and downscaled
 * images; both preprocessor_config.json forms parse to the same settings.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-clip-image.h"
#include "ds-clip-vision.h"
#include "ds-image.h"
#include "ds-safetensors.h"
#include "ds-test-rewrite.h"
#include "ds-test.h"

#define NMSE_TOL 1e-8
#define DATA DS_TEST_DATA_DIR "/clip-vision"

static DsBackend *be;
static DsSafetensors *expected;
static char tmp_dir[] = "/tmp/ds-test-clip-vision-XXXXXX";

static char *
read_text (const char *path)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    return NULL;
  fseek (f, 0, SEEK_END);
  long n = ftell (f);
  fseek (f, 0, SEEK_SET);
  char *s = malloc ((size_t) n + 1);
  if (s && fread (s, 1, (size_t) n, f) != (size_t) n)
    {
      free (s);
      s = NULL;
    }
  if (s)
    s[n] = 0;
  fclose (f);
  return s;
}

static bool
same_vision (const DsClipVisionConfig *a, const DsClipVisionConfig *b)
{
  return a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size
         && a->num_attention_heads == b->num_attention_heads
         && a->num_hidden_layers == b->num_hidden_layers && a->image_size == b->image_size
         && a->patch_size == b->patch_size && a->num_channels == b->num_channels
         && a->hidden_act == b->hidden_act && a->layer_norm_eps == b->layer_norm_eps
         && a->feature_layer == b->feature_layer && a->keep_class_token == b->keep_class_token;
}

static bool
same_processor (const DsClipImageConfig *a, const DsClipImageConfig *b)
{
  bool same = a->do_resize == b->do_resize && a->shortest_edge == b->shortest_edge
              && a->resize_h == b->resize_h && a->resize_w == b->resize_w
              && a->do_center_crop == b->do_center_crop && a->crop_h == b->crop_h
              && a->crop_w == b->crop_w && a->do_rescale == b->do_rescale
              && a->rescale_factor == b->rescale_factor && a->do_normalize == b->do_normalize
              && a->pad_to_square == b->pad_to_square;
  for (int i = 0; i < 3; i++)
    same &= a->mean[i] == b->mean[i] && a->std[i] == b->std[i];
  return same;
}

static bool
parse_file (const char *path, DsClipVisionConfig *cfg)
{
  char *text = read_text (path);
  DS_CHECK (text != NULL, "cannot read %s", path);
  if (!text)
    return false;
  DsError err = { 0 };
  DsStatus st = ds_clip_vision_config_parse (text, path, cfg, &err);
  DS_CHECK_OK (st, &err);
  free (text);
  return st == DS_OK;
}

/* Runs the tower on host pixels [B,3,S,S] into a new host out [B,T,C],
 * checking the arena plan. */
static DsStatus
run (DsClipVision *vt, const DsTensor *pixels, DsTensor *out, DsError *err)
{
  const int64_t B = pixels->shape[0];
  int64_t shape[3] = { B, ds_clip_vision_n_tokens (vt),
                       ds_clip_vision_config (vt)->hidden_size };
  DsStatus st = ds_tensor_alloc (out, DS_DTYPE_F32, 3, shape, err);
  if (st != DS_OK)
    return st;
  size_t bytes = ds_clip_vision_arena_bytes (vt, B);
  DS_CHECK (bytes > 0, "arena size for B = %lld", (long long) B);
  DsArena a;
  if ((st = ds_arena_init (&a, bytes, err)) != DS_OK)
    return st;
  st = ds_clip_vision_forward (vt, be, &a, pixels, out, err);
  DS_CHECK (st != DS_OK || a.peak == bytes, "arena peak %zu, planned %zu", a.peak, bytes);
  DS_CHECK (a.used == 0, "arena not returned to its mark (%zu bytes used)", a.used);
  ds_arena_free (&a);
  return st;
}

static bool
load_ref (const char *name, int ndim, const int64_t *shape, DsTensor *t)
{
  DsError err = { 0 };
  DsStatus st = ds_safetensors_load_f32 (expected, name, ndim, shape, t, &err);
  DS_CHECK_OK (st, &err);
  return st == DS_OK;
}

/* Loads `weights` with cfg and compares its features on `model`.pixels with
 * `ref` (batch and one at a time). */
static void
check_features (const char *what, const DsClipVisionConfig *cfg, const char *weights,
                const char *prefix, const char *model, const char *ref)
{
  DsError err = { 0 };
  DsClipVision *vt = NULL;
  DsTensor px = { 0 }, want = { 0 }, out = { 0 };
  DsStatus st = ds_clip_vision_load (cfg, weights, prefix, be, &vt, &err);
  DS_CHECK_OK (st, &err);
  char name[128];
  const int64_t S = cfg->image_size, G = S / cfg->patch_size;
  const int64_t T = G * G + (cfg->keep_class_token ? 1 : 0);
  snprintf (name, sizeof name, "%s.pixels", model);
  if (st != DS_OK || !load_ref (name, 4, (int64_t[]){ 2, 3, S, S }, &px)
      || !load_ref (ref, 3, (int64_t[]){ 2, T, cfg->hidden_size }, &want))
    goto out;
  DS_CHECK (ds_clip_vision_n_tokens (vt) == T, "%s: %lld tokens, expected %lld", what,
            (long long) ds_clip_vision_n_tokens (vt), (long long) T);
  char label[160];
  if ((st = run (vt, &px, &out, &err)) == DS_OK)
    {
      snprintf (label, sizeof label, "%s, batch 2", what);
      ds_test_check_tensor (label, &out, &want, NMSE_TOL);
    }
  DS_CHECK_OK (st, &err);
  ds_tensor_free (&out);
  for (int b = 0; b < 2; b++)
    {
      DsTensor one = ds_tensor_slice0 (&px, b, 1), w1 = ds_tensor_slice0 (&want, b, 1);
      if ((st = run (vt, &one, &out, &err)) == DS_OK)
        {
          snprintf (label, sizeof label, "%s, image %d", what, b);
          ds_test_check_tensor (label, &out, &w1, NMSE_TOL);
        }
      DS_CHECK_OK (st, &err);
      ds_tensor_free (&out);
    }
out:
  ds_clip_vision_free (vt);
  ds_tensor_free (&px);
  ds_tensor_free (&want);
}

static void
test_configs (void)
{
  printf ("configs:\n");
  DsClipVisionConfig c;
  if (parse_file (DATA "/tiny-llava/config.json", &c))
    {
      DS_CHECK (c.hidden_size == 32 && c.intermediate_size == 64 && c.num_attention_heads == 4
                && c.num_hidden_layers == 3 && c.image_size == 56 && c.patch_size == 14
                && c.num_channels == 3, "tiny-llava: shapes");
      DS_CHECK (c.hidden_act == DS_ACT_QUICK_GELU && c.layer_norm_eps == 1e-5f,
                "tiny-llava: CLIPVisionConfig's defaults for the absent keys");
      DS_CHECK (c.feature_layer == -2 && !c.keep_class_token, "tiny-llava: feature keys");
    }
  if (parse_file (DATA "/tiny-clip/config.json", &c))
    DS_CHECK (c.hidden_size == 40 && c.num_hidden_layers == 4 && c.patch_size == 12
              && c.hidden_act == DS_ACT_GELU && c.layer_norm_eps == 1e-6f,
              "tiny-clip: parsed values");

  DsError err = { 0 };
  DsClipVisionConfig l14;
  ds_clip_vision_config_l14_336 (&l14);
  /* A LlavaConfig without vision_config gets transformers' default tower;
   * the original LLaVA's keys pick the layer and the class token. */
  DsStatus st = ds_clip_vision_config_parse (
    "{\"model_type\": \"llava\", \"mm_vision_select_layer\": -1, "
    "\"mm_vision_select_feature\": \"cls_patch\"}", "orig.json", &c, &err);
  DS_CHECK_OK (st, &err);
  DS_CHECK (st != DS_OK || (c.hidden_size == 1024 && c.num_hidden_layers == 24
                            && c.image_size == 336 && c.patch_size == 14
                            && c.feature_layer == -1 && c.keep_class_token),
            "llava defaults + original keys");

  /* from_json, as a LLaVA loader calls it */
  json_t *obj = json_pack ("{s:i, s:i, s:i, s:i, s:i, s:i}", "hidden_size", 1024,
                           "intermediate_size", 4096, "num_attention_heads", 16,
                           "num_hidden_layers", 24, "image_size", 336, "patch_size", 14);
  st = ds_clip_vision_config_from_json (obj, "config.json: vision_config", &c, &err);
  DS_CHECK_OK (st, &err);
  DS_CHECK (st != DS_OK || same_vision (&c, &l14), "from_json = L/14-336");
  json_decref (obj);

  static const struct {
    const char *json, *key;
    DsStatus status;
  } bad[] = {
    { "{\"model_type\": \"llava\", \"vision_config\": {\"hidden_size\": \"32\"}}",
      "'hidden_size'", DS_ERR_FORMAT },
    { "{\"model_type\": \"llava\", \"vision_config\": {\"patch_size\": 0}}", "'patch_size'",
      DS_ERR_INVALID },
    { "{\"vision_config\": {\"hidden_act\": \"relu\"}}", "'hidden_act'", DS_ERR_UNSUPPORTED },
    { "{\"vision_config\": {\"model_type\": \"siglip_vision_model\"}}", "'model_type'",
      DS_ERR_UNSUPPORTED },
    { "{\"hidden_size\": 30, \"num_attention_heads\": 4}", "'hidden_size'", DS_ERR_INVALID },
    { "{\"layer_norm_eps\": \"small\"}", "'layer_norm_eps'", DS_ERR_FORMAT },
    { "{\"num_hidden_layers\": 3, \"vision_feature_layer\": 4}", "'vision_feature_layer'",
      DS_ERR_INVALID },
    { "{\"vision_feature_layer\": [-2, -5]}", "'vision_feature_layer'", DS_ERR_UNSUPPORTED },
    { "{\"vision_feature_select_strategy\": \"pooled\"}", "'vision_feature_select_strategy'",
      DS_ERR_UNSUPPORTED },
    { "[1, 2]", "expected a JSON object", DS_ERR_FORMAT },
    { "{\"hidden_size\": ", "not valid JSON", DS_ERR_FORMAT },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      st = ds_clip_vision_config_parse (bad[i].json, "bad/config.json", &c, &err);
      DS_CHECK_STATUS (st, bad[i].status, &err);
      DS_CHECK_CONTAINS (err.message, bad[i].key);
      DS_CHECK_CONTAINS (err.message, "bad/config.json");
      if (i == 0)
        DS_CHECK_CONTAINS (err.message, "vision_config");
      printf ("  bad config: %s\n", err.message);
    }
}

static void
test_tiny (void)
{
  printf ("tiny towers:\n");
  DsClipVisionConfig c;
  if (parse_file (DATA "/tiny-llava/config.json", &c))
    {
      check_features ("llava-hf names", &c, DATA "/tiny-llava/model.safetensors", NULL,
                      "tiny-llava", "tiny-llava.features");
      check_features ("explicit prefix", &c, DATA "/tiny-llava/model.safetensors",
                      "vision_tower.vision_model.", "tiny-llava", "tiny-llava.features");
      DsClipVisionConfig full = c;
      full.keep_class_token = true;
      check_features ("class token kept", &full, DATA "/tiny-llava/model.safetensors", NULL,
                      "tiny-llava", "tiny-llava.full");
      DsClipVision *vt = NULL;
      DsError err = { 0 };
      if (ds_clip_vision_load (&c, DATA "/tiny-llava/model.safetensors", NULL, be, &vt, &err)
          == DS_OK)
        DS_CHECK (ds_clip_vision_n_layers_run (vt) == 2, "layers run: %d, expected 2",
                  ds_clip_vision_n_layers_run (vt));
      ds_clip_vision_free (vt);
    }
  /* f16 weights without layer 3 and post_layernorm: feature layer -2 loads. */
  if (parse_file (DATA "/tiny-clip/config.json", &c))
    {
      check_features ("CLIP names, f16, no last layer", &c, DATA "/tiny-clip/model.safetensors",
                      NULL, "tiny-clip", "tiny-clip.features");
      /* Hidden state -1 needs the missing layer: the error names it. */
      DsClipVisionConfig last = c;
      last.feature_layer = -1;
      DsClipVision *vt = NULL;
      DsError err = { 0 };
      DsStatus st = ds_clip_vision_load (&last, DATA "/tiny-clip/model.safetensors", NULL, be,
                                         &vt, &err);
      DS_CHECK_STATUS (st, DS_ERR_NOT_FOUND, &err);
      DS_CHECK_CONTAINS (err.message, "vision_model.encoder.layers.3.");
      DS_CHECK_CONTAINS (err.message, "vision tower");
      DS_CHECK (vt == NULL, "no model on failure");
      printf ("  feature layer -1: %s\n", err.message);
    }
}

/* Replaces the llava-hf prefix by the one in `user` (a DsTestRename). */
static void
swap_prefix (void *user, DsTensor *t, char *name)
{
  (void) t;
  const char *from = "vision_tower.vision_model.", *to = user;
  char old[256];
  snprintf (old, sizeof old, "%s", name);
  if (strncmp (old, from, strlen (from)) == 0)
    snprintf (name, 256, "%s%.200s", to, old + strlen (from));
}

static void
test_edited_files (void)
{
  printf ("edited tiny-llava files:\n");
  DsClipVisionConfig c;
  if (!parse_file (DATA "/tiny-llava/config.json", &c))
    return;
  if (!mkdtemp (tmp_dir))
    {
      DS_CHECK (false, "mkdtemp %s failed", tmp_dir);
      return;
    }
  const char *src = DATA "/tiny-llava/model.safetensors";
  char path[512];
  snprintf (path, sizeof path, "%s/model.safetensors", tmp_dir);
  DsError err = { 0 };
  DsClipVision *vt = NULL;
  DsStatus st;

  /* The other spellings load to the same features. */
  static const char *const prefixes[] = { "model.vision_tower.vision_model.", "vision_model.",
                                          "" };
  for (int i = 0; i < 3; i++)
    if (ds_test_rewrite (src, path, &(DsTestEdit){ 0 }, swap_prefix, (void *) prefixes[i], NULL,
                         0))
      {
        char what[96];
        snprintf (what, sizeof what, "prefix \"%s\"", prefixes[i]);
        check_features (what, &c, path, NULL, "tiny-llava", "tiny-llava.features");
      }

  /* A tensor of the last layer is never read. */
  const char *last = "vision_tower.vision_model.encoder.layers.2.mlp.fc1.weight";
  if (ds_test_rewrite (src, path, &(DsTestEdit){ .drop = last }, NULL, NULL, NULL, 0))
    check_features ("without a last-layer tensor", &c, path, NULL, "tiny-llava",
                    "tiny-llava.features");

  const char *name = "vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias";
  if (ds_test_rewrite (src, path, &(DsTestEdit){ .drop = name }, NULL, NULL, NULL, 0))
    {
      st = ds_clip_vision_load (&c, path, NULL, be, &vt, &err);
      DS_CHECK_STATUS (st, DS_ERR_NOT_FOUND, &err);
      DS_CHECK_CONTAINS (err.message, name);
      DS_CHECK_CONTAINS (err.message, path);
      DS_CHECK_CONTAINS (err.message, "vision tower");
      DS_CHECK (vt == NULL, "no model on failure");
      printf ("  missing tensor: %s\n", err.message);
    }
  name = "vision_tower.vision_model.embeddings.position_embedding.weight";
  if (ds_test_rewrite (src, path, &(DsTestEdit){ .shrink = name }, NULL, NULL, NULL, 0))
    {
      st = ds_clip_vision_load (&c, path, NULL, be, &vt, &err);
      DS_CHECK_STATUS (st, DS_ERR_FORMAT, &err);
      DS_CHECK_CONTAINS (err.message, name);
      DS_CHECK_CONTAINS (err.message, path);
      DS_CHECK (vt == NULL, "no model on failure");
      printf ("  wrong shape: %s\n", err.message);
    }
  /* A config that does not fit the file: the tensor and shapes are named. */
  DsClipVisionConfig wide = c;
  wide.hidden_size = 64;
  st = ds_clip_vision_load (&wide, src, NULL, be, &vt, &err);
  DS_CHECK_STATUS (st, DS_ERR_FORMAT, &err);
  DS_CHECK_CONTAINS (err.message, "patch_embedding");
  printf ("  other config: %s\n", err.message);
  st = ds_clip_vision_load (&c, DATA "/no-such.safetensors", NULL, be, &vt, &err);
  DS_CHECK (st != DS_OK, "a missing file fails");
  DS_CHECK_CONTAINS (err.message, "no-such.safetensors");
  unlink (path);
  rmdir (tmp_dir);
}

/* Seeded weights: deterministic, finite; wrong pixel shapes are refused. */
static void
test_random (void)
{
  printf ("seeded towers:\n");
  DsClipVisionConfig c;
  if (!parse_file (DATA "/tiny-clip/config.json", &c))
    return;
  DsError err = { 0 };
  DsClipVision *a = NULL, *b = NULL;
  DsTensor px = { 0 }, o1 = { 0 }, o2 = { 0 };
  DsStatus st = ds_clip_vision_new_random (&c, 7, be, &a, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK)
    st = ds_clip_vision_new_random (&c, 7, be, &b, &err);
  DS_CHECK_OK (st, &err);
  if (st != DS_OK || !load_ref ("tiny-clip.pixels", 4, (int64_t[]){ 2, 3, 64, 64 }, &px))
    goto out;
  if ((st = run (a, &px, &o1, &err)) == DS_OK && (st = run (b, &px, &o2, &err)) == DS_OK)
    {
      DS_CHECK (memcmp (o1.data, o2.data, ds_tensor_nbytes (&o1)) == 0, "same seed, same output");
      bool finite = true;
      for (int64_t i = 0; i < ds_tensor_numel (&o1); i++)
        finite &= isfinite (ds_tensor_f32 (&o1)[i]) != 0;
      DS_CHECK (finite, "finite output");
    }
  DS_CHECK_OK (st, &err);

  DsArena ar;
  if (ds_arena_init (&ar, ds_clip_vision_arena_bytes (a, 2), &err) == DS_OK)
    {
      DsTensor small = ds_tensor_make (DS_DTYPE_F32, 4, (int64_t[]){ 2, 3, 56, 56 });
      small.data = px.data;
      st = ds_clip_vision_forward (a, be, &ar, &small, &o1, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "[2, 3, 64, 64]");
      DsTensor bad_out = ds_tensor_make (DS_DTYPE_F32, 3, (int64_t[]){ 2, 26, 40 });
      bad_out.data = o1.data;
      st = ds_clip_vision_forward (a, be, &ar, &px, &bad_out, &err);
      DS_CHECK_STATUS (st, DS_ERR_INVALID, &err);
      DS_CHECK_CONTAINS (err.message, "output");
      ds_arena_free (&ar);
    }
out:
  ds_tensor_free (&px);
  ds_tensor_free (&o1);
  ds_tensor_free (&o2);
  ds_clip_vision_free (a);
  ds_clip_vision_free (b);
}

/* CLIP ViT-L/14-336's shapes at 3 layers (feature layer -2 runs 2) with
 * seeded weights; against transformers when DIFFSCOPE_CLIP_VISION_REAL is set. */
static void
test_real_shapes (void)
{
  printf ("ViT-L/14-336 shapes, 2 of 3 layers:\n");
  DsClipVisionConfig c;
  ds_clip_vision_config_l14_336 (&c);
  c.num_hidden_layers = 3;
  DsError err = { 0 };
  DsClipVision *vt = NULL;
  DsTensor px = { 0 }, out = { 0 }, want = { 0 };
  const char *dir = getenv ("DIFFSCOPE_CLIP_VISION_REAL");
  char path[1024];
  DsStatus st;
  DsSafetensors *st_file = NULL;
  if (dir && *dir)
    {
      snprintf (path, sizeof path, "%s/config.json", dir);
      if (!parse_file (path, &c))
        return;
      snprintf (path, sizeof path, "%s/model.safetensors", dir);
      st = ds_clip_vision_load (&c, path, NULL, be, &vt, &err);
      snprintf (path, sizeof path, "%s/expected.safetensors", dir);
      if (st == DS_OK && (st = ds_safetensors_open (path, &st_file, &err)) == DS_OK
          && (st = ds_safetensors_load_f32 (st_file, "pixels", 4,
                                            (int64_t[]){ 1, 3, 336, 336 }, &px, &err))
               == DS_OK)
        st = ds_safetensors_load_f32 (st_file, "features", 3, (int64_t[]){ 1, 576, 1024 },
                                      &want, &err);
      ds_safetensors_close (st_file);
    }
  else
    {
      printf ("  (DIFFSCOPE_CLIP_VISION_REAL not set: seeded weights, shapes only)\n");
      st = ds_clip_vision_new_random (&c, 1, be, &vt, &err);
      if (st == DS_OK)
        st = ds_tensor_alloc (&px, DS_DTYPE_F32, 4, (int64_t[]){ 1, 3, 336, 336 }, &err);
      for (int64_t i = 0; st == DS_OK && i < ds_tensor_numel (&px); i++)
        ds_tensor_f32 (&px)[i] = sinf (0.001f * (float) i);
    }
  DS_CHECK_OK (st, &err);
  if (st != DS_OK)
    goto out;
  DS_CHECK (ds_clip_vision_n_layers_run (vt) == 2 && ds_clip_vision_n_tokens (vt) == 576,
            "2 layers, 576 tokens");
  st = run (vt, &px, &out, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK && want.data)
    ds_test_check_tensor ("features [1, 576, 1024]", &out, &want, NMSE_TOL);
  else if (st == DS_OK)
    {
      double ss = 0;
      for (int64_t i = 0; i < ds_tensor_numel (&out); i++)
        ss += (double) ds_tensor_f32 (&out)[i] * ds_tensor_f32 (&out)[i];
      DS_CHECK (isfinite (ss) && ss > 0, "finite, non-zero output");
    }
out:
  ds_clip_vision_free (vt);
  ds_tensor_free (&px);
  ds_tensor_free (&out);
  ds_tensor_free (&want);
}

/* ---- the processor ---- */

static bool
parse_processor (const char *path, DsClipImageConfig *pc)
{
  char *text = read_text (path);
  DS_CHECK (text != NULL, "cannot read %s", path);
  if (!text)
    return false;
  DsError err = { 0 };
  DsStatus st = ds_clip_image_config_parse (text, path, pc, &err);
  DS_CHECK_OK (st, &err);
  free (text);
  return st == DS_OK;
}

static void
test_processor (void)
{
  printf ("processor:\n");
  DsClipImageConfig pc, old, l14;
  ds_clip_image_config_l14_336 (&l14);
  if (!parse_processor (DATA "/preprocessor_config.json", &pc)
      || !parse_processor (DATA "/preprocessor_config_old.json", &old))
    return;
  DS_CHECK (same_processor (&pc, &l14), "llava-hf's file = the L/14-336 settings");
  DS_CHECK (same_processor (&old, &l14), "the older integer form = the same");

  DsTensor lut = { 0 };
  if (!load_ref ("processor.lut", 2, (int64_t[]){ 3, 256 }, &lut))
    return;
  static const struct {
    const char *name, *src;
    bool pad;
  } cases[] = {
    { "portrait", "portrait_45x71.png", false },
    { "portrait_pad", "portrait_45x71.png", true },
    { "landscape", "landscape_97x41.png", false },
    { "landscape_pad", "landscape_97x41.png", true },
    { "tiny", "tiny_5x3.png", false },
    { "large_pad", "large_500x381.png", true },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      char path[512];
      DsError err = { 0 };
      DsImage img = { 0 }, bytes = { 0 };
      DsTensor got = { 0 };
      snprintf (path, sizeof path, "%s/images/%s", DATA, cases[i].src);
      DsStatus st = ds_image_load (path, &img, &err);
      snprintf (path, sizeof path, "%s/processed/%s.png", DATA, cases[i].name);
      if (st == DS_OK)
        st = ds_image_load (path, &bytes, &err);
      DS_CHECK_OK (st, &err);
      pc.pad_to_square = cases[i].pad;
      if (st == DS_OK && (st = ds_clip_image_preprocess (&img, &pc, &got, &err)) == DS_OK)
        {
          DS_CHECK (got.ndim == 4 && got.shape[0] == 1 && got.shape[1] == 3
                    && got.shape[2] == 336 && got.shape[3] == 336, "%s: shape", cases[i].name);
          /* transformers' pixel_values = lut[c][byte] (checked by the script) */
          double max_diff = 0;
          const size_t n = 336 * 336;
          for (size_t p = 0; p < n && bytes.width == 336 && bytes.height == 336; p++)
            for (int ch = 0; ch < 3; ch++)
              {
                float want = ds_tensor_f32 (&lut)[ch * 256 + bytes.rgb[3 * p + ch]];
                double d = (double) ds_tensor_f32 (&got)[ch * n + p] - want;
                max_diff = fmax (max_diff, fabs (d));
              }
          printf ("  %-14s %dx%d%s: max abs diff %g\n", cases[i].name, img.width, img.height,
                  cases[i].pad ? " padded" : "", max_diff);
          DS_CHECK (max_diff == 0, "%s: max abs diff %g, expected exact", cases[i].name,
                    max_diff);
        }
      DS_CHECK_OK (st, &err);
      ds_tensor_free (&got);
      ds_image_free (&img);
      ds_image_free (&bytes);
    }
  ds_tensor_free (&lut);

  static const struct {
    const char *json, *key;
    DsStatus status;
  } bad[] = {
    { "{\"resample\": 2}", "'resample'", DS_ERR_UNSUPPORTED },
    { "{\"size\": {\"shortest_edge\": 336, \"longest_edge\": 672}}", "'size.longest_edge'",
      DS_ERR_UNSUPPORTED },
    { "{\"size\": {\"shortest_edge\": \"336\"}}", "'size.shortest_edge'", DS_ERR_FORMAT },
    { "{\"crop_size\": {\"height\": 336}}", "'crop_size'", DS_ERR_FORMAT },
    { "{\"image_mean\": [0.5, 0.5]}", "'image_mean'", DS_ERR_FORMAT },
    { "{\"image_std\": [0.5, 0, 0.5]}", "'image_std'", DS_ERR_INVALID },
    { "{\"do_resize\": 1}", "'do_resize'", DS_ERR_FORMAT },
    { "{\"rescale_factor\": \"x\"}", "'rescale_factor'", DS_ERR_FORMAT },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      DsError err = { 0 };
      DsStatus st = ds_clip_image_config_parse (bad[i].json, "bad/preprocessor_config.json",
                                                &pc, &err);
      DS_CHECK_STATUS (st, bad[i].status, &err);
      DS_CHECK_CONTAINS (err.message, bad[i].key);
      DS_CHECK_CONTAINS (err.message, "bad/preprocessor_config.json");
      printf ("  bad config: %s\n", err.message);
    }

  /* Issue #14: a 1×131073 image at shortest edge 16384 has a long side of
   * 2147500032 pixels, which wrapped around in an int to a negative size. */
  {
    DsClipImageConfig wide = l14;
    wide.shortest_edge = 16384;
    DsImage thin = { .width = 1, .height = 131073, .rgb = calloc (131073, 3) };
    DsTensor px = { 0 };
    DsError e = { 0 };
    DsStatus s = ds_clip_image_preprocess (&thin, &wide, &px, &e);
    DS_CHECK_STATUS (s, DS_ERR_INVALID, &e);
    DS_CHECK_CONTAINS (e.message, "image 1×131073: resizing its short side to 16384 pixels "
                                  "makes the long side 2147500032 pixels");
    ds_tensor_free (&px);
    free (thin.rgb);
  }

  /* A crop larger than the image pads with zero bytes, ceil((crop - side) / 2)
   * before it (transformers' numpy center_crop): a 3x2 image into 6x5. */
  DsClipImageConfig crop = l14;
  crop.do_resize = false;
  crop.crop_w = 6;
  crop.crop_h = 5;
  uint8_t rgb[2 * 3 * 3];
  for (int i = 0; i < 18; i++)
    rgb[i] = (uint8_t) (10 * i + 5);
  DsImage small = { .width = 3, .height = 2, .rgb = rgb };
  DsTensor got = { 0 };
  DsError err = { 0 };
  DsStatus st = ds_clip_image_preprocess (&small, &crop, &got, &err);
  DS_CHECK_OK (st, &err);
  if (st == DS_OK)
    {
      /* rows: pad ceil(3/2) = 2 above; columns: pad ceil(3/2) = 2 left */
      const float zero_r = (0.0f - (float) l14.mean[0]) / (float) l14.std[0];
      const float first_r
        = ((float) (5 * (1.0 / 255.0)) - (float) l14.mean[0]) / (float) l14.std[0];
      DS_CHECK (ds_tensor_f32 (&got)[0] == zero_r, "padding is byte 0");
      DS_CHECK (ds_tensor_f32 (&got)[2 * 6 + 2] == first_r, "image starts at (2, 2)");
      DS_CHECK (ds_tensor_f32 (&got)[4 * 6 + 5] == zero_r, "bottom right is padding");
    }
  ds_tensor_free (&got);
}

int
main (void)
{
  DsError err = { 0 };
  be = ds_backend_cpu_new (&err);
  DS_CHECK (be != NULL, "CPU backend: %s", err.message);
  DsStatus st = ds_safetensors_open (DATA "/expected.safetensors", &expected, &err);
  DS_CHECK_OK (st, &err);
  if (!be || st != DS_OK)
    return ds_test_finish ();
  test_configs ();
  test_tiny ();
  test_edited_files ();
  test_random ();
  test_processor ();
  test_real_shapes ();
  ds_safetensors_close (expected);
  ds_backend_free (be);
  return ds_test_finish ();
}
