/* test-cli-ask.c: `diffscope-cli ask` on tests/data/llava-tiny (the tiny
 * LLaVA of tests/reference/gen_llava_fixture.py): the streamed answer is
 * transformers' greedy text, --json gives the ids and the text, sampling is
 * reproducible for a seed, and bad options and folders fail with a message
 * (exit 2 for options, 1 for the model). The answer's text is checked
 * against tests/data/llava-tiny-expected.safetensors.
 *
 * With --fusion (tests/data/fusion/, gen_fusion_fixtures.py) and --model
 * tests/data/sd2-tiny: the answer streams, --json adds "fusion" and
 * "untrained_fusion" and its ids are ds_llava_ask_fused's; a checkpoint with
 * "trained": false is refused without --allow-untrained-fusion and labelled
 * "UNTRAINED FUSION — not an answer" with it; --fusion, --model, --demo and
 * --allow-untrained-fusion without their partners, and bad checkpoints, fail
 * with a message.
 *
 * Usage: test-cli-ask /path/to/diffscope-cli
 */
#include "ds-test.h"
#include "ds-test-cli.h"

#include <jansson.h>
#include <stdlib.h>

#include "ds-fusion.h"
#include "ds-llava.h"
#include "ds-safetensors.h"
#include "ds-session.h"

#define TINY DS_TEST_DATA_DIR "/llava-tiny"
#define QUESTION "What is shown in this picture?"
#define Q "--question '" QUESTION "'"
#define SD DS_TEST_DATA_DIR "/sd2-tiny"
#define CONCAT DS_TEST_DATA_DIR "/fusion/concat"
#define CROSS DS_TEST_DATA_DIR "/fusion/cross-attention"
#define ASK "ask --llava " TINY " --image " DS_TEST_DATA_DIR "/sd-input.png " Q " "
#define LABEL "UNTRAINED FUSION \u2014 not an answer"

static char out[1 << 16];

/* The JSON object in out (after any stderr lines), or NULL. */
static json_t *
json_in_output (void)
{
  const char *brace = strchr (out, '{');
  return brace ? json_loads (brace, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
}

/* The ids ds_llava_ask_fused gives for the checkpoint, 8 greedy tokens, into
 * ids (n_ids set); false on failure. */
static bool
engine_ids (const char *ckpt, int32_t *ids, int64_t *n_ids)
{
  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  DsLlava *lv = NULL;
  DsPipeline *p = NULL;
  DsSession *s = NULL;
  DsFusion *f = NULL;
  DsImage img = { 0 };
  DsLlavaAnswer ans = { 0 };
  DsLlavaParams par;
  ds_llava_params_default (&par);
  par.max_new_tokens = 8;
  bool ok = be && !ds_llava_open (TINY, be, &lv, &err) && !ds_pipeline_open (SD, be, &p, &err)
            && !ds_session_new (p, NULL, &s, &err) && !ds_fusion_open (ckpt, be, &f, &err)
            && !ds_image_load (DS_TEST_DATA_DIR "/sd-input.png", &img, &err)
            && !ds_llava_ask_fused (lv, s, f, &img, QUESTION, &par, &ans, &err);
  if (!ok)
    fprintf (stderr, "engine_ids: %s\n", err.message);
  if (ok)
    {
      *n_ids = ans.n_ids;
      memcpy (ids, ans.ids, (size_t) ans.n_ids * sizeof *ids);
    }
  ds_llava_answer_clear (&ans);
  ds_image_free (&img);
  ds_fusion_free (f);
  ds_session_free (s);
  ds_llava_free (lv);
  if (be)
    ds_backend_free (be);
  return ok;
}

static void
test_fusion (const char *cli, const char *dir)
{
  /* concat, --json: the engine's ids, the fusion's settings, trained */
  int rc = ds_test_cli_run (cli, dir, ASK "--json --max-tokens 8 --fusion " CONCAT " --model " SD,
                            out, sizeof out);
  DS_CHECK (rc == 0, "ask --fusion concat --json: exit %d: %s", rc, out);
  json_t *root = json_in_output ();
  DS_CHECK (root != NULL, "ask --fusion --json printed no JSON: %s", out);
  json_t *ids = json_object_get (root, "ids"), *fu = json_object_get (root, "fusion");
  int32_t want[8];
  int64_t n_want = 0;
  bool ok = engine_ids (CONCAT, want, &n_want);
  DS_CHECK (ok && json_is_array (ids) && (int64_t) json_array_size (ids) == n_want,
            "ids: %s", out);
  for (size_t i = 0; ok && json_is_array (ids) && i < json_array_size (ids); i++)
    DS_CHECK (json_integer_value (json_array_get (ids, i)) == want[i],
              "id %zu differs from ds_llava_ask_fused's", i);
  DS_CHECK (json_is_string (json_object_get (root, "text")), "text: %s", out);
  DS_CHECK (json_is_object (fu)
            && strcmp (json_string_value (json_object_get (fu, "mode")), "concat") == 0
            && strcmp (json_string_value (json_object_get (fu, "probe")), "U-L3-R1-B0-Cross-Q") == 0
            && json_integer_value (json_object_get (fu, "t")) == 50
            && json_number_value (json_object_get (fu, "s")) == 7.5
            && json_integer_value (json_object_get (fu, "grid")) == 4,
            "\"fusion\": %s", out);
  DS_CHECK (json_is_false (json_object_get (root, "untrained_fusion")), "untrained_fusion: %s",
            out);
  DS_CHECK (!strstr (out, "UNTRAINED"), "a trained checkpoint is not labelled: %s", out);
  json_decref (root);

  /* cross_attention, streamed: text and a newline, no JSON */
  rc = ds_test_cli_run (cli, dir, ASK "--max-tokens 6 --fusion " CROSS " --model " SD, out,
                        sizeof out);
  DS_CHECK (rc == 0 && strlen (out) > 1 && out[strlen (out) - 1] == '\n'
              && !strstr (out, "\"ids\""),
            "ask --fusion cross_attention: exit %d: %s", rc, out);

  /* an untrained checkpoint: refused, then labelled */
  char ut[600], cmd[2048];
  snprintf (ut, sizeof ut, "%s/untrained", dir);
  snprintf (cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/fusion.safetensors' '%s/' && sed "
            "'s/\"trained\": true/\"trained\": false/' '%s/config.json' > '%s/config.json'",
            ut, CONCAT, ut, CONCAT, ut);
  DS_CHECK (system (cmd) == 0, "%s", cmd);
  char args[4096];
  snprintf (args, sizeof args, ASK "--max-tokens 4 --fusion %s --model " SD, ut);
  rc = ds_test_cli_run (cli, dir, args, out, sizeof out);
  DS_CHECK (rc == 1, "untrained without the flag: exit %d: %s", rc, out);
  DS_CHECK_CONTAINS (out, "untrained/config.json says \"trained\": false");
  DS_CHECK_CONTAINS (out, "--allow-untrained-fusion");
  snprintf (args, sizeof args, ASK "--max-tokens 4 --fusion %s --model " SD
            " --allow-untrained-fusion", ut);
  rc = ds_test_cli_run (cli, dir, args, out, sizeof out);
  const char *first = strstr (out, LABEL);
  DS_CHECK (rc == 0 && first && strstr (first + 1, LABEL),
            "untrained, streamed: labelled before and after: exit %d: %s", rc, out);
  snprintf (args, sizeof args, ASK "--json --max-tokens 4 --fusion %s --model " SD
            " --allow-untrained-fusion", ut);
  rc = ds_test_cli_run (cli, dir, args, out, sizeof out);
  root = json_in_output ();
  DS_CHECK (rc == 0 && strstr (out, LABEL) && root
            && json_is_true (json_object_get (root, "untrained_fusion")),
            "untrained --json: exit %d: %s", rc, out);
  json_decref (root);

  /* a checkpoint that does not fit */
  char bad_grid[600];
  snprintf (bad_grid, sizeof bad_grid, "%s/grid3", dir);
  snprintf (cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/fusion.safetensors' '%s/' && sed "
            "'s/\"grid\": 4/\"grid\": 3/' '%s/config.json' > '%s/config.json'",
            bad_grid, CONCAT, bad_grid, CONCAT, bad_grid);
  DS_CHECK (system (cmd) == 0, "%s", cmd);
  char grid_args[1024];
  snprintf (grid_args, sizeof grid_args, ASK "--fusion %s --model " SD, bad_grid);

  const struct {
    const char *args, *needle;
    int rc;
  } bad[] = {
    { ASK "--fusion " CONCAT, "--model SD_DIR (or --demo", 2 },
    { ASK "--model " SD, "--model only applies with --fusion", 2 },
    { ASK "--demo", "--demo only applies with --fusion", 2 },
    { ASK "--allow-untrained-fusion", "only applies with --fusion", 2 },
    { ASK "--fusion " CONCAT " --model " SD " --demo", "either --model SD_DIR or --demo", 2 },
    { ASK "--fusion", "--fusion needs a value", 2 },
    { ASK "--fusion /nonexistent --model " SD, "/nonexistent/config.json", 1 },
    { ASK "--fusion " TINY " --model " SD, "llava-tiny/config.json: unknown key", 1 },
    { ASK "--fusion " CONCAT " --model /nonexistent", "/nonexistent", 1 },
    /* the built-in model's U-L3-R1-B0-Cross-Q has 32 channels, not 8 */
    { ASK "--fusion " CONCAT " --demo", "\"diffusion_channels\" is 8", 1 },
    { grid_args, "\"grid\" 3 does not divide", 1 },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      rc = ds_test_cli_run (cli, dir, bad[i].args, out, sizeof out);
      DS_CHECK (rc == bad[i].rc, "%s: exit %d, expected %d: %s", bad[i].args, rc, bad[i].rc, out);
      DS_CHECK (strstr (out, bad[i].needle) != NULL, "%s: \"%s\" does not mention \"%s\"",
                bad[i].args, out, bad[i].needle);
      DS_CHECK (strncmp (out, "diffscope-cli: ", 15) == 0, "%s: \"%s\"", bad[i].args, out);
    }
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      fprintf (stderr, "usage: %s DIFFSCOPE-CLI\n", argv[0]);
      return 2;
    }
  const char *cli = argv[1];
  /* The CPU: the answers are checked against transformers' fp32 (CUDA's are
   * in the cuda suite, test-cli-cuda), and stderr stays free of the note a
   * CUDA build without a GPU prints in auto. */
  setenv ("DIFFSCOPE_DEVICE", "cpu", 1);
  char dir[] = "/tmp/ds-test-cli-ask-XXXXXX";
  DsError err = { 0 };
  DsSafetensors *exp = NULL;
  if (!mkdtemp (dir)
      || ds_safetensors_open (DS_TEST_DATA_DIR "/llava-tiny-expected.safetensors", &exp, &err))
    {
      fprintf (stderr, "setup: %s\n", err.message);
      return 1;
    }
  const char *square_text = ds_safetensors_metadata (exp, "square.text");
  const char *wide_text = ds_safetensors_metadata (exp, "wide.text");
  const DsSafetensorsEntry *wide_ids = ds_safetensors_find (exp, "wide.greedy");

  /* streamed text: exactly the answer and a newline */
  int rc = ds_test_cli_run (cli, dir, "ask --llava " TINY " --image " DS_TEST_DATA_DIR
                            "/sd-input.png " Q " --max-tokens 32", out, sizeof out);
  DS_CHECK (rc == 0, "ask: exit %d: %s", rc, out);
  char want[8192];
  snprintf (want, sizeof want, "%s\n", square_text ? square_text : "?");
  DS_CHECK (strcmp (out, want) == 0, "ask printed \"%s\", expected \"%s\"", out, want);

  /* --json: the ids and the text */
  rc = ds_test_cli_run (cli, dir, "ask --json --llava " TINY " --image " DS_TEST_DATA_DIR
                        "/clip-vision/images/landscape_97x41.png " Q " --max-tokens 32",
                        out, sizeof out);
  DS_CHECK (rc == 0, "ask --json: exit %d: %s", rc, out);
  json_t *root = json_loads (out, 0, NULL);
  DS_CHECK (root != NULL, "ask --json printed no JSON: %s", out);
  json_t *ids = json_object_get (root, "ids"), *text = json_object_get (root, "text");
  DS_CHECK (json_is_array (ids) && json_array_size (ids) == 32, "ids: %s", out);
  bool same = wide_ids && json_is_array (ids) && json_array_size (ids) == 32;
  for (size_t i = 0; same && i < 32; i++)
    same = json_integer_value (json_array_get (ids, i)) == ((const int32_t *) wide_ids->data)[i];
  DS_CHECK (same, "ask --json: ids differ from transformers' greedy ids");
  DS_CHECK (json_is_string (text) && wide_text && strcmp (json_string_value (text), wide_text) == 0,
            "ask --json: text differs");
  json_decref (root);

  /* sampling: the same seed, the same answer */
  static char first[sizeof out];
  const char *sample = "ask --json --llava " TINY " --image " DS_TEST_DATA_DIR "/sd-input.png " Q
                       " --max-tokens 16 --temperature 0.8 --top-p 0.95 --seed 11";
  rc = ds_test_cli_run (cli, dir, sample, out, sizeof out);
  DS_CHECK (rc == 0, "ask sampling: exit %d: %s", rc, out);
  snprintf (first, sizeof first, "%s", out);
  rc = ds_test_cli_run (cli, dir, sample, out, sizeof out);
  DS_CHECK (rc == 0 && strcmp (first, out) == 0, "sampling with one seed differs:\n%s\n%s",
            first, out);

  /* errors */
  static const struct {
    const char *args, *needle;
    int rc;
  } bad[] = {
    { "ask --llava " TINY " --image x.png", "--question", 2 },
    { "ask --image x.png " Q, "--llava", 2 },
    { "ask --llava " TINY " --image x.png " Q " --top-p 0.5", "--temperature", 2 },
    { "ask --llava " TINY " --image x.png " Q " --max-tokens 0", "--max-tokens", 2 },
    { "ask --llava " TINY " --image x.png " Q " --temperature -1", "--temperature", 2 },
    { "ask --llava " TINY " --image x.png " Q " --prompt hi", "unknown option", 2 },
    { "ask --llava " DS_TEST_DATA_DIR " --image " DS_TEST_DATA_DIR "/sd-input.png " Q,
      "config.json", 1 },
    { "ask --llava " TINY " --image /nonexistent.png " Q, "/nonexistent.png", 1 },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      rc = ds_test_cli_run (cli, dir, bad[i].args, out, sizeof out);
      DS_CHECK (rc == bad[i].rc, "%s: exit %d, expected %d: %s", bad[i].args, rc, bad[i].rc, out);
      DS_CHECK (strstr (out, bad[i].needle) != NULL, "%s: \"%s\" does not mention \"%s\"",
                bad[i].args, out, bad[i].needle);
      DS_CHECK (strncmp (out, "diffscope-cli: ", 15) == 0, "%s: \"%s\"", bad[i].args, out);
    }
  rc = ds_test_cli_run (cli, dir, "ask --help", out, sizeof out);
  DS_CHECK (rc == 0 && strstr (out, "--llava DIR"), "ask --help: %d %s", rc, out);
  DS_CHECK (strstr (out, "--fusion CKPT") && strstr (out, "--allow-untrained-fusion"),
            "ask --help names the fusion options: %s", out);

  test_fusion (cli, dir);

  ds_safetensors_close (exp);
  char cmd[256];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", dir);
  return ds_test_finish ();
}
