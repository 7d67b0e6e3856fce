/* diffscope-cli: Diffscope without a window, for scripts, batch runs and figures.
 *
 *   diffscope-cli info     [--model DIR | --demo]
 *   diffscope-cli probes   [--model DIR | --demo] [--size 512]
 *   diffscope-cli features [--model DIR | --demo] --image IMG --prompt TEXT
 *                          [--uncond TEXT] [--t 50] [--meng] [--seed 0] [--size 512]
 *                          [--crop] [--noise FILE[:TENSOR]] --probe NAME [--probe NAME ...]
 *                          [--maps] --out FILE.safetensors
 *
 * `features` writes, per probe, "uncond.<paper name>" and "cond.<paper name>"
 * ([C,H,W], or [heads,Nq,Nk] for maps); with --maps also every cross-attention
 * layer's head-mean probabilities for the cond half as "maps.<layer>" [Nq,77].
 * A JSON record of the run (model, t, seed, prompt ids and words, timings) goes
 * into the file's metadata ("diffscope") and beside it as FILE.json. Both files
 * are written atomically. The demo model is untrained, and every output says so.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-image.h"
#include "ds-pipeline.h"
#include "ds-safetensors.h"

#ifndef DS_DATA_DIR
#define DS_DATA_DIR "resources"
#endif

#define MAX_PROBES 512

typedef struct {
  const char *model, *image, *prompt, *uncond, *out, *noise;
  bool demo, meng, maps, crop;
  int t, size;
  unsigned long long seed;
  const char *probes[MAX_PROBES];
  int n_probes;
} Options;

static void
usage (FILE *f)
{
  fputs ("usage: diffscope-cli COMMAND [OPTIONS]\n"
         "\n"
         "commands:\n"
         "  info       the model and the device\n"
         "  probes     every probe with its shape\n"
         "  features   run one request and write probe tensors (safetensors + JSON)\n"
         "\n"
         "options:\n"
         "  --model DIR       a diffusers Stable Diffusion folder (SD 2.1-base is primary)\n"
         "  --demo            the built-in demo model (untrained, random weights)\n"
         "  --image FILE      PNG or JPEG\n"
         "  --prompt TEXT     question or caption (the cond half)\n"
         "  --uncond TEXT     the uncond half's prompt (default \"\")\n"
         "  --t N             timestep 0..999 (default 50)\n"
         "  --meng            Meng et al.'s convention: the UNet runs at t-1\n"
         "  --seed N          noise seed (default 0)\n"
         "  --noise FILE[:T]  use the noise tensor T (default \"noise\") of a .safetensors\n"
         "                    file, shape [1, 4, size/8, size/8], instead of the seed\n"
         "  --size N          model input side, a multiple of 64 (default 512)\n"
         "  --crop            keep the aspect: short side to size, centre crop\n"
         "                    (default: stretch to size x size, the paper's protocol)\n"
         "  --probe NAME      a probe, paper name (U-L1-R1-B0-Cross-Q) or long id; repeatable\n"
         "  --maps            also every cross-attention layer's head-mean map (cond half)\n"
         "  --out FILE        output .safetensors (FILE.json is written beside it)\n",
         f);
}

static int
fail (const DsError *err)
{
  fprintf (stderr, "diffscope-cli: %s\n", err->message);
  return 1;
}

static int
parse_int (const char *s, const char *what, int lo, int hi, int *out)
{
  char *end;
  errno = 0;
  long v = strtol (s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi)
    {
      fprintf (stderr, "diffscope-cli: %s must be an integer in %d..%d, got \"%s\"\n", what, lo,
               hi, s);
      return -1;
    }
  *out = (int) v;
  return 0;
}

static int
parse_args (int argc, char **argv, Options *o)
{
  enum { O_MODEL = 256, O_DEMO, O_IMAGE, O_PROMPT, O_UNCOND, O_T, O_MENG, O_SEED, O_SIZE,
         O_CROP, O_PROBE, O_MAPS, O_OUT, O_NOISE, O_HELP };
  static const struct option opts[] = {
    { "model", required_argument, 0, O_MODEL }, { "demo", no_argument, 0, O_DEMO },
    { "image", required_argument, 0, O_IMAGE }, { "prompt", required_argument, 0, O_PROMPT },
    { "uncond", required_argument, 0, O_UNCOND }, { "t", required_argument, 0, O_T },
    { "meng", no_argument, 0, O_MENG }, { "seed", required_argument, 0, O_SEED },
    { "size", required_argument, 0, O_SIZE }, { "crop", no_argument, 0, O_CROP },
    { "probe", required_argument, 0, O_PROBE }, { "maps", no_argument, 0, O_MAPS },
    { "out", required_argument, 0, O_OUT }, { "noise", required_argument, 0, O_NOISE },
    { "help", no_argument, 0, O_HELP },
    { 0, 0, 0, 0 },
  };
  *o = (Options){ .t = 50, .size = 512, .uncond = "" };
  int c;
  opterr = 0;
  optind = 2;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1)
    {
      switch (c)
        {
        case O_MODEL: o->model = optarg; break;
        case O_DEMO: o->demo = true; break;
        case O_IMAGE: o->image = optarg; break;
        case O_PROMPT: o->prompt = optarg; break;
        case O_UNCOND: o->uncond = optarg; break;
        case O_T:
          if (parse_int (optarg, "--t", 0, 999, &o->t))
            return -1;
          break;
        case O_MENG: o->meng = true; break;
        case O_SEED:
          {
            char *end;
            errno = 0;
            o->seed = strtoull (optarg, &end, 10);
            if (errno || *end || end == optarg || optarg[0] == '-')
              {
                fprintf (stderr, "diffscope-cli: --seed must be a non-negative integer, got \"%s\"\n",
                         optarg);
                return -1;
              }
            break;
          }
        case O_SIZE:
          if (parse_int (optarg, "--size", 64, 2048, &o->size))
            return -1;
          break;
        case O_CROP: o->crop = true; break;
        case O_PROBE:
          if (o->n_probes == MAX_PROBES)
            {
              fprintf (stderr, "diffscope-cli: at most %d --probe options\n", MAX_PROBES);
              return -1;
            }
          o->probes[o->n_probes++] = optarg;
          break;
        case O_MAPS: o->maps = true; break;
        case O_OUT: o->out = optarg; break;
        case O_NOISE: o->noise = optarg; break;
        case O_HELP: usage (stdout); exit (0);
        default:
          fprintf (stderr, "diffscope-cli: unknown or incomplete option \"%s\"\n",
                   argv[optind - 1]);
          return -1;
        }
    }
  if (optind < argc)
    {
      fprintf (stderr, "diffscope-cli: unexpected argument \"%s\"\n", argv[optind]);
      return -1;
    }
  if (o->demo && o->model)
    {
      fprintf (stderr, "diffscope-cli: give either --model DIR or --demo, not both\n");
      return -1;
    }
  if (!o->demo && !o->model)
    {
      fprintf (stderr, "diffscope-cli: no model: give --model DIR (a diffusers Stable Diffusion "
                       "folder, e.g. stabilityai/stable-diffusion-2-1-base) or --demo for the "
                       "built-in untrained model\n");
      return -1;
    }
  return 0;
}

static const char *
data_dir (void)
{
  const char *d = getenv ("DIFFSCOPE_DATA_DIR");
  return d && *d ? d : DS_DATA_DIR;
}

static DsStatus
open_pipeline (const Options *o, DsBackend **be, DsPipeline **p, DsError *err)
{
  DsStatus st;
  *p = NULL;
  if (!(*be = ds_backend_cpu_new (err)))
    return err->code;
  if (o->demo)
    st = ds_pipeline_open_demo (o->seed ^ 0x5eedULL, data_dir (), *be, p, err);
  else
    st = ds_pipeline_open (o->model, *be, p, err);
  return st;
}

static int
cmd_info (const Options *o)
{
  DsError err = { 0 };
  DsBackend *be = NULL;
  DsPipeline *p = NULL;
  if (open_pipeline (o, &be, &p, &err))
    {
      if (be)
        ds_backend_free (be);
      return fail (&err);
    }
  const DsModelDir *m = ds_pipeline_model (p);
  printf ("model:   %s\n", ds_pipeline_label (p));
  printf ("device:  %s\n", be->name);
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
  if (ds_pipeline_is_demo (p))
    printf ("note:    the demo model is UNTRAINED (random weights): its maps show structure, "
            "not meaning\n");
  ds_pipeline_free (p);
  ds_backend_free (be);
  return 0;
}

static int
cmd_probes (const Options *o)
{
  DsError err = { 0 };
  DsBackend *be = NULL;
  DsPipeline *p = NULL;
  const DsProbeList *list;
  if (open_pipeline (o, &be, &p, &err) || ds_pipeline_probes (p, o->size, &list, &err))
    {
      ds_pipeline_free (p);
      if (be)
        ds_backend_free (be);
      return fail (&err);
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
  ds_pipeline_free (p);
  ds_backend_free (be);
  return 0;
}

static json_t *
tokens_json (const DsTokenizer *tok, const DsTokens *t)
{
  json_t *ids = json_array (), *words = json_array ();
  for (int i = 0; i < DS_CLIP_CONTEXT; i++)
    json_array_append_new (ids, json_integer (t->ids[i]));
  for (int i = 0; i < t->n_words; i++)
    json_array_append_new (words, json_pack ("{s:s, s:i, s:i}", "text", t->words[i].text, "first",
                                             t->words[i].first, "count", t->words[i].count));
  (void) tok;
  return json_pack ("{s:o, s:i, s:b, s:o}", "ids", ids, "n_tokens", t->n_tokens, "truncated",
                    t->truncated, "words", words);
}

/* Writes text to path atomically (temporary file + rename). */
static int
write_text_atomic (const char *path, const char *text, DsError *err)
{
  size_t n = strlen (path) + 16;
  char *tmp = malloc (n);
  snprintf (tmp, n, "%s.tmp-XXXXXX", path);
  int fd = mkstemp (tmp);
  if (fd < 0)
    {
      ds_error_set (err, DS_ERR_IO, "%s: cannot create: %s", path, strerror (errno));
      free (tmp);
      return -1;
    }
  size_t len = strlen (text);
  bool ok = write (fd, text, len) == (ssize_t) len && fsync (fd) == 0;
  ok = close (fd) == 0 && ok;
  if (!ok || rename (tmp, path) != 0)
    {
      ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", path, strerror (errno));
      unlink (tmp);
      free (tmp);
      return -1;
    }
  free (tmp);
  return 0;
}

/* "FILE" or "FILE:TENSOR" -> the tensor, which must have the latent's shape. */
static DsStatus
load_noise (const char *spec, DsLatentShape shape, DsTensor *out, DsError *err)
{
  char path[4096];
  snprintf (path, sizeof path, "%s", spec);
  const char *name = "noise";
  char *colon = strrchr (path, ':');
  if (colon && !strchr (colon, '/'))
    {
      *colon = '\0';
      name = colon + 1;
    }
  DsSafetensors *st;
  DsStatus s = ds_safetensors_open (path, &st, err);
  if (s)
    return s;
  int64_t want[4] = { 1, shape.channels, shape.h, shape.w };
  s = ds_safetensors_load_f32 (st, name, 4, want, out, err);
  ds_safetensors_close (st);
  return s ? ds_error_prefix (err, s, "--noise") : DS_OK;
}

static int
cmd_features (const Options *o)
{
  DsError err = { 0 };
  if (!o->image || !o->prompt || !o->out || (o->n_probes == 0 && !o->maps))
    {
      fprintf (stderr, "diffscope-cli: features needs --image, --prompt, --out and at least one "
                       "--probe (or --maps); see diffscope-cli probes for the names\n");
      return 2;
    }
  DsBackend *be = NULL;
  DsPipeline *p = NULL;
  const DsProbeList *list;
  DsImage img = { 0 };
  bool *want = NULL;
  DsFeatures feats = { 0 };
  DsTensor noise = { 0 };
  DsSafetensorsItem *items = NULL;
  DsTensor *views = NULL;
  char **names = NULL;
  int rc = 1, n_items = 0;
  json_t *meta = NULL;
  char *meta_text = NULL;

  if (open_pipeline (o, &be, &p, &err) || ds_pipeline_probes (p, o->size, &list, &err))
    goto out;
  want = calloc ((size_t) list->n, 1);
  for (int i = 0; i < o->n_probes; i++)
    {
      int k = ds_probe_list_find (list, o->probes[i]);
      if (k < 0)
        {
          ds_error_set (&err, DS_ERR_NOT_FOUND,
                        "unknown probe \"%s\": use a paper name like U-L1-R1-B0-Cross-Q or a long "
                        "id like up-level1-repeat1-vit-block0-cross-q (diffscope-cli probes "
                        "lists all %d)",
                        o->probes[i], list->n);
          goto out;
        }
      want[k] = true;
    }
  if (o->maps)
    for (int i = 0; i < list->n; i++)
      if (list->probes[i].kind == DS_PROBE_CROSS_MAP)
        want[i] = true;
  if (ds_image_load (o->image, &img, &err))
    goto out;
  if (o->noise && load_noise (o->noise, ds_pipeline_latent_shape (p, o->size), &noise, &err))
    goto out;

  DsFeatureRequest req = {
    .image = &img, .size = o->size, .fit = o->crop ? DS_FIT_CENTER_CROP : DS_FIT_STRETCH,
    .prompt = o->prompt, .uncond_prompt = o->uncond, .t = o->t,
    .convention = o->meng ? DS_TIMESTEP_MENG : DS_TIMESTEP_DIRECT, .seed = o->seed, .want = want,
    .noise = noise.data,
  };
  if (ds_pipeline_features (p, &req, &feats, &err))
    goto out;
  if (feats.cond.truncated)
    fprintf (stderr, "diffscope-cli: note: the prompt has %d tokens; only the first 75 are used\n",
             feats.cond.n_pieces_total);

  /* items: per probe uncond + cond, per map layer (with --maps) the head mean */
  int cap = 3 * list->n;
  items = calloc ((size_t) cap, sizeof *items);
  views = calloc ((size_t) cap, sizeof *views);
  names = calloc ((size_t) cap, sizeof *names);
  json_t *probes_json = json_array ();
  for (int i = 0; i < list->n; i++)
    {
      const DsTensor *v = &feats.values[i];
      if (!v->data)
        continue;
      const DsProbeInfo *q = &feats.probes.probes[i];
      bool asked = false;
      for (int k = 0; k < o->n_probes; k++)
        asked |= ds_probe_list_find (list, o->probes[k]) == i;
      if (asked)
        for (int half = 0; half < 2; half++)
          {
            DsTensor s = ds_tensor_slice0 (v, half, 1);
            views[n_items] = ds_tensor_reshape (&s, 3, q->shape);
            names[n_items] = malloc (96);
            snprintf (names[n_items], 96, "%s.%s", half ? "cond" : "uncond", q->name);
            items[n_items] = (DsSafetensorsItem){ names[n_items], &views[n_items] };
            n_items++;
          }
      if (o->maps && q->kind == DS_PROBE_CROSS_MAP)
        {
          /* head mean of the cond half: [heads, Nq, Nk] -> [Nq, Nk] */
          int64_t H = q->shape[0], Nq = q->shape[1], Nk = q->shape[2];
          DsTensor *m = &views[n_items];
          ds_tensor_alloc (m, DS_DTYPE_F32, 2, (int64_t[]){ Nq, Nk }, NULL);
          const float *src = ds_tensor_f32 (v) + H * Nq * Nk;
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
      char shape[64];
      json_array_append_new (probes_json,
                             json_pack ("{s:s, s:s, s:s}", "name", q->name, "id", q->id, "shape",
                                        ds_shape_str (3, q->shape, shape, sizeof shape)));
    }

  const DsModelDir *md = ds_pipeline_model (p);
  meta = json_pack ("{s:s, s:b, s:s, s:s, s:s, s:i, s:i, s:s, s:I, s:i, s:s, s:o, s:o, s:o, "
                    "s:{s:f, s:f, s:f, s:f}}",
                    "model", ds_pipeline_label (p), "untrained", ds_pipeline_is_demo (p),
                    "model_dir", md->root, "device", be->name, "image", o->image, "size", o->size,
                    "t", o->t, "timestep_convention", o->meng ? "meng (unet runs at t-1)" : "direct",
                    "seed", (json_int_t) o->seed, "unet_timestep", feats.unet_timestep, "prompt",
                    o->prompt, "cond", tokens_json (ds_pipeline_tokenizer (p), &feats.cond),
                    "uncond", tokens_json (ds_pipeline_tokenizer (p), &feats.uncond), "probes",
                    probes_json, "timings_ms", "image", feats.ms_image, "vae", feats.ms_vae, "text",
                    feats.ms_text, "unet", feats.ms_unet);
  json_object_set_new (meta, "uncond_prompt", json_string (o->uncond));
  json_object_set_new (meta, "fit", json_string (o->crop ? "center-crop" : "stretch"));
  json_object_set_new (meta, "latent", json_string ("VAE posterior mean x scaling_factor"));
  meta_text = json_dumps (meta, JSON_INDENT (2) | JSON_SORT_KEYS);
  const char *md_pairs[] = { "diffscope", meta_text, NULL };
  if (ds_safetensors_write (o->out, items, n_items, md_pairs, &err))
    goto out;
  size_t jn = strlen (o->out) + 8;
  char *jpath = malloc (jn);
  snprintf (jpath, jn, "%s.json", o->out);
  int wr = write_text_atomic (jpath, meta_text, &err);
  if (wr == 0)
    {
      printf ("wrote %s (%d tensors) and %s\n", o->out, n_items, jpath);
      printf ("timings: image %.1f ms, VAE %.1f ms, text %.1f ms, UNet %.1f ms\n", feats.ms_image,
              feats.ms_vae, feats.ms_text, feats.ms_unet);
      if (ds_pipeline_is_demo (p))
        printf ("note: demo model, UNTRAINED — random weights\n");
      rc = 0;
    }
  free (jpath);

out:
  if (rc)
    fail (&err);
  for (int i = 0; names && i < n_items; i++)
    {
      free (names[i]);
      ds_tensor_free (&views[i]);
    }
  free (names);
  free (views);
  free (items);
  free (meta_text);
  json_decref (meta);
  ds_features_free (&feats);
  ds_tensor_free (&noise);
  ds_image_free (&img);
  free (want);
  ds_pipeline_free (p);
  if (be)
    ds_backend_free (be);
  return rc;
}

int
main (int argc, char **argv)
{
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)
    {
      usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? 2 : 0;
    }
  Options o;
  const char *cmd = argv[1];
  if (strcmp (cmd, "info") && strcmp (cmd, "probes") && strcmp (cmd, "features"))
    {
      fprintf (stderr, "diffscope-cli: unknown command \"%s\" (info, probes, features)\n", cmd);
      return 2;
    }
  if (parse_args (argc, argv, &o))
    return 2;
  if (strcmp (cmd, "info") == 0)
    return cmd_info (&o);
  if (strcmp (cmd, "probes") == 0)
    return cmd_probes (&o);
  return cmd_features (&o);
}
