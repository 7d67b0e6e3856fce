/* cli-ask.c: `diffscope-cli ask`: a question about an image, answered by
 * LLaVA-1.5 (ds-llava.h) and streamed to stdout as it is generated, the image
 * optionally fused with Stable Diffusion features (ds-fusion.h, issue #13).
 *
 *   diffscope-cli ask --llava DIR --image IMG --question TEXT [--max-tokens N]
 *                     [--temperature T [--top-p P] [--seed N]] [--json]
 *                     [--device auto|cpu|cuda] [--precision f16|bf16|f32]
 *                     [--fusion CKPT (--model SD_DIR | --demo) [--allow-untrained-fusion]]
 *
 * The answer's text goes to stdout piece by piece (flushed after each), then a
 * newline; --json prints {"ids": [the generated ids], "text": the answer} at
 * the end instead. Ctrl+C stops between tokens (exit 130, the text so far
 * printed). The options are its own (not cli_parse_args'): of the Stable
 * Diffusion ones only --model and --demo apply, and only with --fusion.
 *
 * --fusion CKPT (a fusion checkpoint folder, docs/models.md §7.9) runs the
 * checkpoint's UNet probe of the SD model (--model DIR, or --demo for the
 * built-in one) with the question as the prompt and fuses it with the CLIP
 * tokens (ds_llava_ask_fused); --json then also prints "fusion": {"mode",
 * "probe", "t", "s", "grid"} and "untrained_fusion". No trained fusion
 * weights exist publicly: a checkpoint whose config says "trained": false is
 * refused unless --allow-untrained-fusion, and then its output is labelled
 * "UNTRAINED FUSION — not an answer" on stderr (before and after the text)
 * and "untrained_fusion": true in --json. --device and --precision choose the
 * backend as for the other commands (ds_device_open: CUDA in f16 when a GPU
 * answers, else the CPU in f32); --json also prints "device".
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ds-data.h"
#include "ds-device.h"
#include "ds-fusion.h"
#include "ds-image.h"
#include "ds-llava.h"
#include "ds-ops.h"

#define UNTRAINED_LABEL "UNTRAINED FUSION \u2014 not an answer"

typedef struct {
  const char *llava, *image, *question;
  const char *fusion, *model; /* --fusion CKPT, --model SD_DIR */
  const char *device, *precision; /* NULL: DIFFSCOPE_DEVICE or auto; the device's default */
  long long max_tokens;
  double temperature, top_p;
  unsigned long long seed;
  bool json, sampled_opts, demo, allow_untrained;
} AskOptions;

static atomic_int ask_cancel;

static void
on_sigint (int sig)
{
  (void) sig;
  atomic_store (&ask_cancel, 1);
}

static void
ask_usage (FILE *f)
{
  fputs ("usage: diffscope-cli ask --llava DIR --image IMG --question TEXT [--max-tokens N]\n"
         "                         [--temperature T [--top-p P] [--seed N]] [--json]\n"
         "                         [--device auto|cpu|cuda] [--precision f16|bf16|f32]\n"
         "                         [--fusion CKPT (--model SD_DIR | --demo)\n"
         "                          [--allow-untrained-fusion]]\n"
         "\n"
         "  --llava DIR       a llava-hf LLaVA-1.5 folder (config.json, preprocessor_config.json,\n"
         "                    tokenizer.json, model.safetensors.index.json and its shards)\n"
         "  --image FILE      PNG or JPEG\n"
         "  --question TEXT   asked as \"USER: <image>\\nTEXT ASSISTANT:\"\n"
         "  --max-tokens N    at most N new tokens, 1..100000 (256); the answer also ends\n"
         "                    at </s> and at the model's context length\n"
         "  --temperature T   sample at temperature T > 0 (default 0: greedy)\n"
         "  --top-p P         with --temperature: nucleus sampling, 0 < P <= 1 (1)\n"
         "  --seed N          with --temperature: the sampler's seed (0)\n"
         "  --json            print {\"ids\": [...], \"text\": ..., \"device\": ...} at the end\n"
         "                    instead of streaming the text\n"
         "  --device D        auto (default: CUDA when a GPU answers, else the CPU), cpu\n"
         "                    or cuda; also DIFFSCOPE_DEVICE\n"
         "  --precision P     what CUDA computes in: f16 (default), bf16 or f32\n"
         "  --fusion CKPT     fuse Stable Diffusion features into the image tokens: a fusion\n"
         "                    checkpoint folder (config.json, fusion.safetensors; see\n"
         "                    docs/models.md 7.9); its UNet probe runs with the question as\n"
         "                    the prompt\n"
         "  --model SD_DIR    with --fusion: the diffusers Stable Diffusion folder the\n"
         "                    checkpoint's probe comes from\n"
         "  --demo            with --fusion, instead of --model: the built-in model\n"
         "                    (" DS_BUILTIN_MODEL_LABEL ")\n"
         "  --allow-untrained-fusion\n"
         "                    run a checkpoint whose config says \"trained\": false; its\n"
         "                    output is labelled \"" UNTRAINED_LABEL "\"\n",
         f);
}

static int
bad (const char *fmt, const char *arg)
{
  fprintf (stderr, "diffscope-cli: ask: ");
  fprintf (stderr, fmt, arg);
  fputc ('\n', stderr);
  return 2;
}

/* --fusion needs exactly one SD model; the SD options need --fusion. */
static int
check_fusion_options (const AskOptions *o)
{
  if (o->model && o->demo)
    return bad ("%s", "give either --model SD_DIR or --demo, not both");
  if (o->fusion && !o->model && !o->demo)
    return bad ("%s", "--fusion CKPT needs the Stable Diffusion model its probe comes from: "
                "--model SD_DIR (or --demo for the built-in " DS_BUILTIN_MODEL_LABEL ")");
  if (!o->fusion && (o->model || o->demo))
    return bad ("%s only applies with --fusion CKPT (ask runs LLaVA-1.5 alone without it)",
                o->model ? "--model" : "--demo");
  if (!o->fusion && o->allow_untrained)
    return bad ("%s", "--allow-untrained-fusion only applies with --fusion CKPT");
  return 0;
}

static int
parse_ask (int argc, char **argv, AskOptions *o)
{
  memset (o, 0, sizeof *o);
  o->max_tokens = 256;
  o->top_p = 1.0;
  for (int i = 2; i < argc; i++)
    {
      const char *a = argv[i];
      if (strcmp (a, "--json") == 0)
        {
          o->json = true;
          continue;
        }
      if (strcmp (a, "--demo") == 0 || strcmp (a, "--allow-untrained-fusion") == 0)
        {
          *(a[2] == 'd' ? &o->demo : &o->allow_untrained) = true;
          continue;
        }
      static const char *const with_value[] = { "--llava", "--image", "--question",
                                                "--max-tokens", "--temperature", "--top-p",
                                                "--seed", "--fusion", "--model", "--device",
                                                "--precision" };
      size_t k = 0;
      while (k < sizeof with_value / sizeof with_value[0] && strcmp (a, with_value[k]) != 0)
        k++;
      if (k == sizeof with_value / sizeof with_value[0])
        return bad ("unknown option \"%s\" (see diffscope-cli ask --help)", a);
      if (i + 1 >= argc)
        return bad ("%s needs a value", a);
      const char *v = argv[++i];
      char *end;
      errno = 0;
      switch (k)
        {
        case 0: o->llava = v; break;
        case 1: o->image = v; break;
        case 2: o->question = v; break;
        case 3:
          o->max_tokens = strtoll (v, &end, 10);
          if (errno || *end || end == v || o->max_tokens < 1 || o->max_tokens > 100000)
            return bad ("--max-tokens \"%s\": expected an integer in 1..100000", v);
          break;
        case 4:
          o->temperature = strtod (v, &end);
          if (errno || *end || end == v || !(o->temperature >= 0) || isinf (o->temperature))
            return bad ("--temperature \"%s\": expected a number >= 0", v);
          break;
        case 5:
          o->top_p = strtod (v, &end);
          if (errno || *end || end == v || !(o->top_p > 0 && o->top_p <= 1))
            return bad ("--top-p \"%s\": expected a number in (0, 1]", v);
          o->sampled_opts = true;
          break;
        case 6:
          if (v[0] == '-')
            return bad ("--seed \"%s\": expected a non-negative integer", v);
          o->seed = strtoull (v, &end, 10);
          if (errno || *end || end == v)
            return bad ("--seed \"%s\": expected a non-negative integer", v);
          o->sampled_opts = true;
          break;
        case 7: o->fusion = v; break;
        case 8: o->model = v; break;
        case 9:
          if (strcmp (v, "auto") && strcmp (v, "cpu") && strcmp (v, "cuda"))
            return bad ("--device \"%s\": expected auto, cpu or cuda", v);
          o->device = v;
          break;
        case 10:
          if (strcmp (v, "f16") && strcmp (v, "bf16") && strcmp (v, "f32"))
            return bad ("--precision \"%s\": expected f16, bf16 or f32", v);
          o->precision = v;
          break;
        }
    }
  if (!o->llava)
    return bad ("%s", "--llava DIR is required (a llava-hf LLaVA-1.5 folder)");
  if (!o->image)
    return bad ("%s", "--image FILE is required");
  if (!o->question)
    return bad ("%s", "--question TEXT is required");
  if (o->sampled_opts && o->temperature <= 0)
    return bad ("%s", "--top-p and --seed only apply with --temperature T > 0");
  return check_fusion_options (o);
}

static void
print_piece (const char *text, int32_t id, void *user)
{
  (void) id;
  fputs (text, (FILE *) user);
  fflush ((FILE *) user);
}

/* "fusion": {"mode", "probe", "t", "s", "grid"} of the checkpoint. */
static json_t *
fusion_json (const DsFusionConfig *c)
{
  return json_pack ("{s:s, s:s, s:i, s:f, s:i}", "mode", ds_fusion_mode_name (c->mode), "probe",
                    c->probe, "t", c->t, "s", (double) c->s, "grid", c->grid);
}

static int
print_json (const DsLlavaAnswer *ans, const DsFusion *fusion, const DsBackend *be)
{
  json_t *ids = json_array ();
  for (int64_t i = 0; ids && i < ans->n_ids; i++)
    json_array_append_new (ids, json_integer (ans->ids[i]));
  json_t *root = json_object ();
  if (root && ids)
    {
      json_object_set_new (root, "ids", ids);
      json_object_set_new (root, "text", json_string (ans->text ? ans->text : ""));
      json_object_set_new (root, "device", json_string (be->name));
      if (fusion)
        {
          json_object_set_new (root, "fusion", fusion_json (ds_fusion_config (fusion)));
          json_object_set_new (root, "untrained_fusion", json_boolean (ans->untrained_fusion));
        }
    }
  char *s = root ? json_dumps (root, JSON_ENSURE_ASCII) : NULL;
  json_decref (root);
  if (!s)
    {
      fprintf (stderr, "diffscope-cli: ask: out of memory writing JSON\n");
      return 1;
    }
  puts (s);
  free (s);
  return fflush (stdout) == 0 ? 0 : 1;
}

static void
untrained_label (const DsFusion *f)
{
  fprintf (stderr, "diffscope-cli: ask: " UNTRAINED_LABEL ": %s says \"trained\": false, so "
           "the text is the output of untrained fusion weights\n", ds_fusion_config_path (f));
}

/* The fusion checkpoint, refused when untrained and not allowed; then the SD
 * session. On failure everything opened here is released. */
static DsStatus
open_fusion (const AskOptions *o, DsBackend *be, DsFusion **f, DsSession **s, DsError *err)
{
  *f = NULL;
  *s = NULL;
  DsStatus st = ds_fusion_open (o->fusion, be, f, err);
  if (st == DS_OK && !ds_fusion_config (*f)->trained && !o->allow_untrained)
    st = ds_error_set (err, DS_ERR_UNSUPPORTED, "ask: %s says \"trained\": false: an "
                       "untrained fusion's output is not an answer, so it is not run "
                       "(--allow-untrained-fusion runs it, labelled \"" UNTRAINED_LABEL "\")",
                       ds_fusion_config_path (*f));
  DsPipeline *p = NULL;
  if (st == DS_OK)
    st = o->demo ? ds_pipeline_open_builtin (ds_data_dir (), be, &p, err)
                 : ds_pipeline_open (o->model, be, &p, err);
  if (st == DS_OK)
    st = ds_session_new (p, NULL, s, err); /* takes p, also on failure */
  if (st != DS_OK)
    {
      ds_fusion_free (*f);
      *f = NULL;
    }
  return st;
}

int
cli_cmd_ask (int argc, char **argv)
{
  for (int k = 2; k < argc; k++)
    if (strcmp (argv[k], "--help") == 0 || strcmp (argv[k], "-h") == 0)
      {
        ask_usage (stdout);
        return 0;
      }
  AskOptions o;
  int rc = parse_ask (argc, argv, &o);
  if (rc)
    return rc;

  DsError err = { 0 };
  DsImage img = { 0 };
  DsBackend *be = NULL;
  DsLlava *lv = NULL;
  DsFusion *fusion = NULL;
  DsSession *sd = NULL;
  DsLlavaAnswer ans = { 0 };
  DsStatus st = ds_image_load (o.image, &img, &err);
  if (st == DS_OK)
    {
      char note[512];
      const char *dev = o.device ? o.device : getenv ("DIFFSCOPE_DEVICE");
      if (!(be = ds_device_open (dev, o.precision, note, sizeof note, &err)))
        st = err.code ? err.code : DS_ERR_DEVICE;
      else if (note[0])
        fprintf (stderr, "diffscope-cli: %s\n", note);
    }
  if (st == DS_OK && o.fusion)
    st = open_fusion (&o, be, &fusion, &sd, &err);
  if (st == DS_OK)
    st = ds_llava_open (o.llava, be, &lv, &err);
  if (st == DS_OK && fusion)
    st = ds_llava_fusion_check (lv, sd, fusion, &err);
  const bool untrained = fusion && !ds_fusion_config (fusion)->trained;
  if (st == DS_OK)
    {
      DsLlavaParams p;
      ds_llava_params_default (&p);
      p.max_new_tokens = o.max_tokens;
      p.sampling = (DsLlamaSampling){ .temperature = (float) o.temperature,
                                      .top_p = (float) o.top_p, .seed = o.seed };
      p.on_text = o.json ? NULL : print_piece;
      p.user = stdout;
      p.cancel = &ask_cancel;
      p.allow_untrained_fusion = o.allow_untrained;
      if (untrained)
        untrained_label (fusion);
      void (*old) (int) = signal (SIGINT, on_sigint);
      st = fusion ? ds_llava_ask_fused (lv, sd, fusion, &img, o.question, &p, &ans, &err)
                  : ds_llava_ask (lv, &img, o.question, &p, &ans, &err);
      signal (SIGINT, old);
    }
  if (st == DS_OK || st == DS_ERR_CANCELLED)
    {
      if (o.json)
        rc = print_json (&ans, fusion, be);
      else
        {
          fputc ('\n', stdout);
          rc = fflush (stdout) == 0 ? 0 : 1;
        }
      if (untrained)
        untrained_label (fusion);
      if (st == DS_ERR_CANCELLED)
        {
          fprintf (stderr, "diffscope-cli: ask: interrupted after %lld tokens\n",
                   (long long) ans.n_ids);
          rc = 130;
        }
    }
  else
    rc = cli_fail (&err);
  ds_llava_answer_clear (&ans);
  ds_llava_free (lv);
  ds_fusion_free (fusion);
  ds_session_free (sd);
  if (be)
    ds_backend_free (be);
  ds_image_free (&img);
  return rc;
}
