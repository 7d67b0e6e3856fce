/* cli-common.c: option parsing, model opening and output helpers shared by the
 * diffscope-cli commands (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds-atomic.h"
#include "ds-data.h"
#include "ds-device.h"
#include "ds-pipeline.h"
#include "ds-safetensors.h"

#ifndef DS_DATA_DIR
#define DS_DATA_DIR "resources"
#endif

int
cli_fail (const DsError *err)
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
parse_double (const char *s, const char *what, double lo, double hi, double *out)
{
  char *end;
  errno = 0;
  double v = strtod (s, &end);
  if (errno || *end || end == s || !(v >= lo && v <= hi))
    {
      fprintf (stderr, "diffscope-cli: %s must be a number in %g..%g, got \"%s\"\n", what, lo, hi,
               s);
      return -1;
    }
  *out = v;
  return 0;
}

/* "10,50,100" -> timesteps */
static int
parse_int_list (const char *s, const char *what, int lo, int hi, int *out, int *n)
{
  char buf[4096];
  snprintf (buf, sizeof buf, "%s", s);
  *n = 0;
  for (char *save, *tok = strtok_r (buf, ",", &save); tok; tok = strtok_r (NULL, ",", &save))
    {
      if (*n == CLI_MAX_LIST || parse_int (tok, what, lo, hi, &out[*n]))
        return -1;
      (*n)++;
    }
  if (*n == 0)
    {
      fprintf (stderr, "diffscope-cli: %s needs at least one value\n", what);
      return -1;
    }
  return 0;
}

static int
push (const char **list, int *n, const char *v, const char *what)
{
  if (*n == CLI_MAX_LIST)
    {
      fprintf (stderr, "diffscope-cli: at most %d %s options\n", CLI_MAX_LIST, what);
      return -1;
    }
  list[(*n)++] = v;
  return 0;
}

/* The default --size: the model's native size from its configs (512 for
 * SD 2.1-base, 128 for the built-in model). 0 when the folder cannot be read:
 * opening the session then says why. */
static int
native_size (const CliOptions *o)
{
  char dir[DS_PATH_MAX];
  if (o->demo)
    ds_pipeline_builtin_dir (ds_data_dir (), dir, sizeof dir);
  DsModelDir *d = calloc (1, sizeof *d);
  DsError err = { 0 };
  int size = d && !ds_model_dir_open (o->demo ? dir : o->model, d, &err)
                 ? ds_model_dir_native_size (d) : 0;
  free (d);
  return size;
}

/* The options each command reads (bits as CliOptions.given); the rest are
 * refused instead of being silently ignored. batch and score list options they
 * refuse themselves with a message of their own. */
#define B(name) (1ull << (O_##name - O_MODEL))
enum { O_MODEL = 256, O_DEMO, O_IMAGE, O_PROMPT, O_UNCOND, O_T, O_MENG, O_SEED, O_SIZE,
       O_CROP, O_PROBE, O_MAPS, O_OUT, O_NOISE, O_S, O_COLORMAP, O_WORDS, O_CKA, O_OUT_DIR,
       O_OPACITY, O_HEAT_RES, O_CAPTION, O_TIMESTEPS, O_TRIALS, O_SHARD, O_JSON, O_DAAM, O_PAIRS,
       O_DEVICE, O_PRECISION };
static const struct {
  const char *command;
  unsigned long long takes;
} command_options[] = {
  { "info", 0 },
  { "probes", B (SIZE) },
  { "features", B (SEED) | B (IMAGE) | B (PROMPT) | B (UNCOND) | B (T) | B (MENG) | B (SIZE) | B (CROP)
                  | B (PROBE) | B (MAPS) | B (OUT) | B (NOISE) },
  { "render", B (SEED) | B (IMAGE) | B (PROMPT) | B (UNCOND) | B (T) | B (MENG) | B (SIZE) | B (CROP)
                | B (PROBE) | B (NOISE) | B (S) | B (COLORMAP) | B (WORDS) | B (CKA) | B (OUT_DIR)
                | B (OPACITY) | B (HEAT_RES) | B (TIMESTEPS) | B (TRIALS) | B (DAAM) },
  { "score", B (SEED) | B (IMAGE) | B (PROMPT) | B (UNCOND) | B (MENG) | B (SIZE) | B (CROP) | B (CAPTION)
               | B (TIMESTEPS) | B (TRIALS) | B (JSON) | B (OUT) | B (PAIRS) },
  { "batch", B (SEED) | B (IMAGE) | B (PROMPT) | B (PROBE) | B (OUT) | B (NOISE) | B (CAPTION) | B (UNCOND)
               | B (T) | B (MENG) | B (SIZE) | B (CROP) | B (MAPS) | B (S) | B (COLORMAP)
               | B (WORDS) | B (CKA) | B (OUT_DIR) | B (OPACITY) | B (HEAT_RES) | B (TIMESTEPS)
               | B (TRIALS) | B (DAAM) | B (SHARD) },
};
/* render's (and batch's renders') word heat-map options */
static const unsigned long long words_only = B (OPACITY) | B (HEAT_RES) | B (TIMESTEPS)
                                             | B (TRIALS) | B (DAAM);
static const unsigned long long everywhere = B (MODEL) | B (DEMO) | B (DEVICE) | B (PRECISION);

/* Prints why the first option given but not read by `command` is refused;
 * 0 when there is none. */
static int
refuse_unused (const char *command, const CliOptions *o, const struct option *opts)
{
  unsigned long long takes = ~0ull;
  for (size_t i = 0; i < sizeof command_options / sizeof command_options[0]; i++)
    if (strcmp (command, command_options[i].command) == 0)
      takes = command_options[i].takes | everywhere;
  const bool words = (strcmp (command, "render") == 0 || strcmp (command, "batch") == 0)
                     && !o->words;
  for (const struct option *op = opts; op->name; op++)
    {
      unsigned long long bit = 1ull << (op->val - O_MODEL);
      if (!(o->given & bit))
        continue;
      if (!(takes & bit))
        {
          if (bit == B (NOISE) && strcmp (command, "score") == 0)
            fprintf (stderr, "diffscope-cli: --noise is not used by score: its noise comes from "
                             "--seed (seed + trial for each trial)\n");
          else
            fprintf (stderr, "diffscope-cli: --%s is not used by %s (diffscope-cli --help "
                             "lists what each command reads)\n", op->name, command);
          return -1;
        }
      if (words && (bit & words_only))
        {
          fprintf (stderr, "diffscope-cli: --%s is used by %s only with --words (it shapes the "
                           "word heat maps)\n", op->name, command);
          return -1;
        }
    }
  return 0;
}
#undef B

int
cli_parse_args (int argc, char **argv, CliOptions *o)
{
  static const struct option opts[] = {
    { "model", required_argument, 0, O_MODEL }, { "demo", no_argument, 0, O_DEMO },
    { "image", required_argument, 0, O_IMAGE }, { "prompt", required_argument, 0, O_PROMPT },
    { "uncond", required_argument, 0, O_UNCOND }, { "t", required_argument, 0, O_T },
    { "meng", no_argument, 0, O_MENG }, { "seed", required_argument, 0, O_SEED },
    { "size", required_argument, 0, O_SIZE }, { "crop", no_argument, 0, O_CROP },
    { "probe", required_argument, 0, O_PROBE }, { "maps", no_argument, 0, O_MAPS },
    { "out", required_argument, 0, O_OUT }, { "noise", required_argument, 0, O_NOISE },
    { "s", required_argument, 0, O_S }, { "colormap", required_argument, 0, O_COLORMAP },
    { "words", no_argument, 0, O_WORDS }, { "cka", no_argument, 0, O_CKA },
    { "out-dir", required_argument, 0, O_OUT_DIR }, { "opacity", required_argument, 0, O_OPACITY },
    { "heat-res", required_argument, 0, O_HEAT_RES }, { "caption", required_argument, 0, O_CAPTION },
    { "timesteps", required_argument, 0, O_TIMESTEPS }, { "trials", required_argument, 0, O_TRIALS },
    { "shard", required_argument, 0, O_SHARD }, { "json", no_argument, 0, O_JSON },
    { "daam", no_argument, 0, O_DAAM }, { "pairs", required_argument, 0, O_PAIRS },
    { "device", required_argument, 0, O_DEVICE },
    { "precision", required_argument, 0, O_PRECISION },
    { 0, 0, 0, 0 },
  };
  *o = (CliOptions){ .t = 50, .size = 0, .uncond = "", .colormap = "viridis", .opacity = 0.6,
                     .trials = 1 };
  int c;
  opterr = 0;
  optind = 2;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1)
    {
      int bad = 0;
      switch (c)
        {
        case O_MODEL: o->model = optarg; break;
        case O_DEMO: o->demo = true; break;
        case O_IMAGE: bad = push (o->images, &o->n_images, optarg, "--image"); break;
        case O_PROMPT: o->prompt = optarg; break;
        case O_UNCOND: o->uncond = optarg; break;
        case O_T: bad = parse_int (optarg, "--t", 0, 999, &o->t); break;
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
                bad = -1;
              }
            break;
          }
        case O_SIZE:
          if (parse_int (optarg, "--size", 64, CLI_MAX_SIZE, &o->size))
            {
              fprintf (stderr, "diffscope-cli: SD 2.x runs at 512 or 768; time and memory grow "
                               "with size^2 and the attention maps with size^4 (%d costs 4x "
                               "and 16x what 512 does)\n", CLI_MAX_SIZE);
              bad = -1;
            }
          break;
        case O_CROP: o->crop = true; break;
        case O_PROBE: bad = push (o->probes, &o->n_probes, optarg, "--probe"); break;
        case O_MAPS: o->maps = true; break;
        case O_OUT: o->out = optarg; break;
        case O_NOISE: o->noise = optarg; break;
        case O_S:
          if (o->n_s == CLI_MAX_LIST)
            bad = push (NULL, &o->n_s, optarg, "--s");
          else
            bad = parse_double (optarg, "--s", -100, 100, &o->s_values[o->n_s++]);
          break;
        case O_COLORMAP: o->colormap = optarg; break;
        case O_WORDS: o->words = true; break;
        case O_CKA: o->cka = true; break;
        case O_OUT_DIR: o->out_dir = optarg; break;
        case O_OPACITY: bad = parse_double (optarg, "--opacity", 0, 1, &o->opacity); break;
        case O_HEAT_RES: bad = parse_int (optarg, "--heat-res", 1, 256, &o->heat_res); break;
        case O_CAPTION: bad = push (o->captions, &o->n_captions, optarg, "--caption"); break;
        case O_TIMESTEPS:
          bad = parse_int_list (optarg, "--timesteps", 0, 999, o->timesteps, &o->n_timesteps);
          break;
        case O_TRIALS: bad = parse_int (optarg, "--trials", 1, 64, &o->trials); break;
        case O_SHARD: o->shard = optarg; break;
        case O_JSON: o->json = true; break;
        case O_DAAM: o->daam = true; break;
        case O_PAIRS: o->pairs = optarg; break;
        case O_DEVICE: o->device = optarg; break;
        case O_PRECISION: o->precision = optarg; break;
        default:
          fprintf (stderr, "diffscope-cli: unknown or incomplete option \"%s\"\n",
                   argv[optind - 1]);
          bad = -1;
        }
      if (bad)
        return 2;
      if (c >= O_MODEL && c <= O_PRECISION)
        o->given |= 1ull << (c - O_MODEL);
    }
  if (optind < argc && strcmp (argv[1], "batch") == 0 && !o->positional)
    o->positional = argv[optind++];
  if (optind < argc)
    {
      fprintf (stderr, "diffscope-cli: unexpected argument \"%s\"\n", argv[optind]);
      return 2;
    }
  const char *dev = o->device ? o->device : getenv ("DIFFSCOPE_DEVICE");
  if (dev && *dev && strcmp (dev, "auto") && strcmp (dev, "cpu") && strcmp (dev, "cuda"))
    {
      fprintf (stderr, "diffscope-cli: %s must be auto, cpu or cuda, got \"%s\"\n",
               o->device ? "--device" : "DIFFSCOPE_DEVICE", dev);
      return 2;
    }
  if (o->precision && strcmp (o->precision, "f16") && strcmp (o->precision, "bf16")
      && strcmp (o->precision, "f32"))
    {
      fprintf (stderr, "diffscope-cli: --precision must be f16, bf16 or f32, got \"%s\"\n",
               o->precision);
      return 2;
    }
  if (refuse_unused (argv[1], o, opts))
    return 2;
  if (o->demo && o->model)
    {
      fprintf (stderr, "diffscope-cli: give either --model DIR or --demo, not both\n");
      return 2;
    }
  if (!o->demo && !o->model)
    {
      fprintf (stderr, "diffscope-cli: no model: give --model DIR (a diffusers Stable Diffusion "
                       "folder, e.g. stabilityai/stable-diffusion-2-1-base) or --demo for the "
                       "built-in " DS_BUILTIN_MODEL_LABEL "\n");
      return 2;
    }
  if (o->size == 0)
    o->size = native_size (o);
  return 0;
}


/* The backend the options name (--device, or DIFFSCOPE_DEVICE, or auto); the
 * choice is ds_device_open's, shared with the explorer. The options were
 * validated by cli_parse_args. */
static DsBackend *
cli_backend_new (const CliOptions *o, DsError *err)
{
  const char *dev = o->device ? o->device : getenv ("DIFFSCOPE_DEVICE");
  char note[512];
  DsBackend *be = ds_device_open (dev, o->precision, note, sizeof note, err);
  if (be && note[0])
    fprintf (stderr, "diffscope-cli: %s\n", note);
  return be;
}

DsStatus
cli_open_session (const CliOptions *o, DsBackend **be, DsSession **s, DsError *err)
{
  *s = NULL;
  if (!(*be = cli_backend_new (o, err)))
    return err->code;
  DsPipeline *p;
  DsStatus st = o->demo ? ds_pipeline_open_builtin (ds_data_dir (), *be, &p, err)
                        : ds_pipeline_open (o->model, *be, &p, err);
  if (!st)
    st = ds_session_new (p, NULL, s, err); /* takes p, also on failure */
  if (st)
    {
      ds_backend_free (*be);
      *be = NULL;
    }
  return st;
}

void
cli_close_session (DsBackend *be, DsSession *s)
{
  ds_session_free (s);
  ds_backend_free (be);
}

DsQuery
cli_query (const CliOptions *o, const DsSession *s, const DsImage *image)
{
  DsQuery q = ds_query_default (s);
  q.image = image;
  q.size = o->size;
  q.fit = o->crop ? DS_FIT_CENTER_CROP : DS_FIT_STRETCH;
  q.prompt = o->prompt;
  q.uncond_prompt = o->uncond;
  q.t = o->t;
  q.convention = o->meng ? DS_TIMESTEP_MENG : DS_TIMESTEP_DIRECT;
  q.seed = o->seed;
  q.heat_nq = -1;
  return q;
}

DsStatus
cli_want_probes (const DsProbeList *list, const char *const *names, int n, bool **want,
                 DsError *err)
{
  *want = calloc ((size_t) list->n, 1);
  if (!*want)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n; i++)
    {
      int k = ds_probe_list_find (list, names[i]);
      if (k < 0)
        return ds_error_set (err, DS_ERR_NOT_FOUND,
                             "unknown probe \"%s\": use a paper name like U-L1-R1-B0-Cross-Q or a "
                             "long id like up-level1-repeat1-vit-block0-cross-q (diffscope-cli "
                             "probes lists all %d)",
                             names[i], list->n);
      (*want)[k] = true;
    }
  return DS_OK;
}

DsStatus
cli_ensure_dir (const char *path, bool *created, DsError *err)
{
  struct stat sb;
  if (created)
    *created = false;
  if (stat (path, &sb) == 0)
    return S_ISDIR (sb.st_mode) ? DS_OK
                                : ds_error_set (err, DS_ERR_IO, "%s: exists and is %s, not a "
                                                "directory", path, ds_file_kind (sb.st_mode));
  if (mkdir (path, 0755) != 0)
    return ds_error_set (err, DS_ERR_IO, "%s: cannot create the directory: %s", path,
                         strerror (errno));
  if (created)
    *created = true;
  return DS_OK;
}

DsStatus
cli_check_finite (const DsSessionResult *r, DsError *err)
{
  for (int k = 0; k < r->n_probes; k++)
    {
      const DsSessionProbe *q = &r->probes[k];
      const int64_t n = q->c * q->h * q->w;
      for (int half = 0; half < 2; half++)
        {
          const float *x = half ? q->cond : q->uncond;
          for (int64_t i = 0; i < n; i++)
            if (!isfinite (x[i]))
              return ds_error_set (err, DS_ERR_INVALID,
                                   "probe %s (%s half) holds %s at element %lld; nothing "
                                   "written (non-finite weights or noise?)",
                                   q->name, half ? "cond" : "uncond",
                                   isnan (x[i]) ? "NaN" : "an infinity", (long long) i);
        }
    }
  const int64_t nh = r->heat ? r->heat_h * r->heat_w * r->heat_k : 0;
  for (int64_t i = 0; i < nh; i++)
    if (!isfinite (r->heat[i]))
      return ds_error_set (err, DS_ERR_INVALID,
                           "the cross-attention heat maps hold %s; nothing written "
                           "(non-finite weights or noise?)",
                           isnan (r->heat[i]) ? "NaN" : "an infinity");
  return DS_OK;
}

/* Progress on a terminal's stderr: "unet 12/25 (run 2/5)", redrawn in place. */
static void
progress_print (void *user, DsSessionStage stage, int done, int total, int run, int runs)
{
  (void) user;
  if (runs > 1)
    fprintf (stderr, "\r\033[K%s %d/%d (run %d/%d)", ds_session_stage_name (stage), done, total,
             (run > 0 ? run : 0) + 1, runs);
  else
    fprintf (stderr, "\r\033[K%s %d/%d", ds_session_stage_name (stage), done, total);
  fflush (stderr);
}

const DsRunControl *
cli_run_control (void)
{
  static const DsRunControl ctl = { .progress = progress_print };
  return isatty (STDERR_FILENO) ? &ctl : NULL;
}

void
cli_run_control_end (void)
{
  if (isatty (STDERR_FILENO))
    fputs ("\r\033[K", stderr);
}

json_t *
cli_tokens_json (const DsTokens *t)
{
  json_t *ids = json_array (), *words = json_array ();
  for (int i = 0; i < DS_CLIP_CONTEXT; i++)
    json_array_append_new (ids, json_integer (t->ids[i]));
  for (int i = 0; i < t->n_words; i++)
    json_array_append_new (words, json_pack ("{s:s, s:i, s:i}", "text", t->words[i].text, "first",
                                             t->words[i].first, "count", t->words[i].count));
  return json_pack ("{s:o, s:i, s:b, s:o}", "ids", ids, "n_tokens", t->n_tokens, "truncated",
                    t->truncated, "words", words);
}

/* Writes text to path atomically (ds-atomic: temporary file + rename). */
int
cli_write_text_atomic (const char *path, const char *text, DsError *err)
{
  DsAtomicFile af;
  if (ds_atomic_open (&af, path, err))
    return -1;
  size_t len = strlen (text);
  DsStatus st = fwrite (text, 1, len, af.f) == len
                  ? DS_OK
                  : ds_error_set (err, DS_ERR_IO, "%s: cannot write: %s", path, strerror (errno));
  return ds_atomic_commit (&af, st, err) == DS_OK ? 0 : -1;
}

/* "FILE" or "FILE:TENSOR" -> the tensor, which must have the latent's shape. */
DsStatus
cli_load_noise (const char *spec, DsLatentShape shape, DsTensor *out, DsError *err)
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
  s = ds_safetensors_load_float (st, name, 4, want, out, err);
  ds_safetensors_close (st);
  return s ? ds_error_prefix (err, s, "--noise") : DS_OK;
}
