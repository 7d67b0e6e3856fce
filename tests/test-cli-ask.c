/* test-cli-ask.c: `diffscope-cli ask` on tests/data/llava-tiny (the tiny
 * LLaVA of tests/reference/gen_llava_fixture.py): the streamed answer is
 * transformers' greedy text, --json gives the ids and the text, sampling is
 * reproducible for a seed, and bad options and folders fail with a message
 * (exit 2 for options, 1 for the model). The answer's text is checked
 * against tests/data/llava-tiny-expected.safetensors.
 *
 * Usage: test-cli-ask /path/to/diffscope-cli
 */
#include "ds-test.h"
#include "ds-test-cli.h"

#include <jansson.h>
#include <stdlib.h>

#include "ds-safetensors.h"

#define TINY DS_TEST_DATA_DIR "/llava-tiny"
#define Q "--question 'What is shown in this picture?'"

static char out[1 << 16];

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      fprintf (stderr, "usage: %s DIFFSCOPE-CLI\n", argv[0]);
      return 2;
    }
  const char *cli = argv[1];
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
    { "ask --llava " TINY " --image x.png " Q " --fusion", "not done yet", 2 },
    { "ask --llava " TINY " --image x.png " Q " --model /m", "not done yet", 2 },
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

  ds_safetensors_close (exp);
  char cmd[256];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", dir);
  return ds_test_finish ();
}
