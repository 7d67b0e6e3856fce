/* cli.h: what the diffscope-cli commands share (options, model opening, output
 * helpers). Each command lives in its own cli-<command>.c. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "ds-error.h"
#include "ds-pipeline.h"
#include "ds-session.h"
#include "ds-tensor.h"
#include "ds-tokenizer.h"

#define CLI_MAX_LIST 512
/* What the built-in model understands, for the notes beside its output. */
#define CLI_BUILTIN_WORDS                                                                          \
  "its words are the shapes world's (red, green, blue, yellow; circle, square, triangle; left "    \
  "of, right of, above, below)"
/* --size at most: SD 2.x runs at 512 (base) or 768; the cost grows with size²
 * and the attention maps with size⁴, so 2048 took minutes and gigabytes even
 * on the tiny demo model. */
#define CLI_MAX_SIZE 1024

typedef struct {
  const char *model, *prompt, *uncond, *out, *out_dir, *noise, *colormap, *shard, *pairs;
  const char *device, *precision; /* NULL: DIFFSCOPE_DEVICE or auto; f16 on CUDA */
  const char *images[CLI_MAX_LIST];
  int n_images;
  const char *captions[CLI_MAX_LIST];
  int n_captions;
  const char *probes[CLI_MAX_LIST];
  int n_probes;
  double s_values[CLI_MAX_LIST];
  int n_s;
  int timesteps[CLI_MAX_LIST];
  int n_timesteps;
  const char *positional; /* batch: the jobs file */
  bool demo, meng, maps, crop, words, cka, json, daam;
  int t, size, trials, heat_res;
  double opacity;
  unsigned long long seed;
  unsigned long long given; /* the options on the command line, one bit each (cli-common.c) */
} CliOptions;

/* argv[1] is the command; options from argv[2]. Returns 0, or 2 after printing
 * what is wrong, also for an option the command would not use ("--noise is
 * not used by score"). */
int cli_parse_args (int argc, char **argv, CliOptions *o);
/* Prints "diffscope-cli: <message>" and returns 1. */
int cli_fail (const DsError *err);
/* A session (ds-session.h) over the model the options name (or the demo) on
 * the device they choose:
 * --device auto (the default, or DIFFSCOPE_DEVICE) takes CUDA when a device
 * answers and the CPU otherwise, saying so on stderr when a CUDA build finds
 * no GPU; --device cuda fails when none answers; --precision f16|bf16|f32
 * picks what CUDA computes in (f16 by default; the CPU computes in f32). On
 * failure *be and *s are released and NULL. Every command runs its networks
 * through ds_session_run. */
DsStatus cli_open_session (const CliOptions *o, DsBackend **be, DsSession **s, DsError *err);
void cli_close_session (DsBackend *be, DsSession *s);
/* The query the options describe for one image: size, fit, prompt, uncond, t,
 * convention and seed; no probes, no heat maps (heat_nq -1). */
DsQuery cli_query (const CliOptions *o, const DsSession *s, const DsImage *image);
/* want[i] for each --probe name; an unknown name is DS_ERR_NOT_FOUND with the
 * two naming styles in the message. want is calloc'ed (free it). */
DsStatus cli_want_probes (const DsProbeList *list, const char *const *names, int n, bool **want,
                          DsError *err);
/* --noise FILE[:TENSOR] -> [1, C, h, w]. */
DsStatus cli_load_noise (const char *spec, DsLatentShape shape, DsTensor *out, DsError *err);
json_t *cli_tokens_json (const DsTokens *t);
/* Writes text to path atomically (temporary file + rename); -1 on failure. */
int cli_write_text_atomic (const char *path, const char *text, DsError *err);
/* mkdir -p for one level; DS_ERR_IO naming the path when it cannot be made or
 * is not a directory. *created (may be NULL): whether this call made it. */
DsStatus cli_ensure_dir (const char *path, bool *created, DsError *err);
/* DS_ERR_INVALID naming the probe and half (or the heat maps) when a result
 * holds a NaN or infinity: such outputs are never written as a success. */
DsStatus cli_check_finite (const DsSessionResult *r, DsError *err);
/* Progress on stderr when it is a terminal (NULL otherwise), for
 * ds_session_run; cli_run_control_end clears the line after the run. */
const DsRunControl *cli_run_control (void);
void cli_run_control_end (void);

/* The work of `features` and `render` on an open session (for them and for
 * `batch`): the request comes from o (images, prompt, probes, t, seed, ...),
 * the outputs go to o->out (+ ".json") or into o->out_dir; the "wrote ..."
 * lines go to log (NULL: none). Files are written atomically. */
DsStatus cli_features_write (const CliOptions *o, DsBackend *be, DsSession *s, FILE *log,
                             DsError *err);
DsStatus cli_render_write (const CliOptions *o, DsBackend *be, DsSession *s, FILE *log,
                           DsError *err);

/* What batch and score --pairs check of their JSON files before any model
 * work, on its own (tests/fuzz): DS_OK with the number of jobs (pairs), else
 * the error the command prints (DS_ERR_IO: the file cannot be read). */
DsStatus cli_batch_check_jobs (const char *path, const CliOptions *o, int *n_jobs, DsError *err);
DsStatus cli_score_check_pairs (const char *path, int *n_items, DsError *err);

int cli_cmd_info (const CliOptions *o);
int cli_cmd_probes (const CliOptions *o);
int cli_cmd_features (const CliOptions *o);
int cli_cmd_render (const CliOptions *o);
int cli_cmd_score (const CliOptions *o);
int cli_cmd_batch (const CliOptions *o);
/* ask parses its own options (cli-ask.c): none of the Stable Diffusion ones apply. */
int cli_cmd_ask (int argc, char **argv);
