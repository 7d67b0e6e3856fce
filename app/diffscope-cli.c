/* diffscope-cli: Diffscope without a window, for scripts, batch runs and figures.
 *
 *   diffscope-cli info     [--model DIR | --demo]
 *   diffscope-cli probes   [--model DIR | --demo] [--size N]
 *   diffscope-cli features [--model DIR | --demo] --image IMG --prompt TEXT
 *                          [--uncond TEXT] [--t 50] [--meng] [--seed 0] [--size N]
 *                          [--crop] [--noise FILE[:TENSOR]] --probe NAME [--probe NAME ...]
 *                          [--maps] --out FILE.safetensors
 *   diffscope-cli render   (model and request options as for features) --probe NAME ...
 *                          [--s 7.5 ...] [--words] [--cka] [--colormap viridis]
 *                          [--opacity 0.6] [--heat-res 16] [--image IMG2] --out-dir DIR
 *   diffscope-cli score    [--model DIR | --demo] --image IMG ... --caption TEXT ...
 *                          [--timesteps 189,389,589,789,989] [--trials 1] [--seed 0]
 *                          [--size N] [--uncond ""] [--json] [--out FILE.json]
 *   diffscope-cli batch    [--model DIR | --demo] JOBS.json --out-dir DIR [--shard K/N]
 *                          [request options: defaults for every job]
 *   diffscope-cli ask      --llava DIR --image IMG --question TEXT [--max-tokens N]
 *                          [--fusion CKPT (--model DIR | --demo) [--allow-untrained-fusion]]
 *                          [--temperature T [--top-p P] [--seed N]] [--json]
 *
 * Every file is written atomically (temporary file + rename; a FIFO or a
 * character device such as /dev/stdout is written through, a directory or
 * other non-file is refused). An option a command does not read is refused. --demo is the
 * built-in model (a toy shapes model, trained on synthetic scenes), and every output says
 * so. --size defaults to the model's native size (512 for SD 2.1-base, 128 built-in). Each
 * command is in cli-<command>.c.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void
usage (FILE *f)
{
  fputs ("usage: diffscope-cli COMMAND [OPTIONS]\n"
         "\n"
         "commands:\n"
         "  info       the model and the device\n"
         "  probes     every probe with its shape\n"
         "  features   run one request and write probe tensors (safetensors + JSON)\n"
         "  render     PNGs: PCA of X_uncond, X_s and Δcond, |Δcond| heat, word heatmaps,\n"
         "             a contact sheet and a CKA-vs-s plot\n"
         "  score      image–text scores (cross-attention logsumexp + noise bias)\n"
         "  batch      many jobs from a JSON file, resumable, shardable\n"
         "  ask        answer a question about an image with LLaVA-1.5, streamed\n"
         "             (diffscope-cli ask --help)\n"
         "\n"
         "model:\n"
         "  --model DIR       a diffusers Stable Diffusion folder (SD 2.1-base is primary)\n"
         "  --demo            the built-in model: a toy shapes model, trained on synthetic\n"
         "                    scenes (red/green/blue/yellow circles, squares, triangles)\n"
         "device:\n"
         "  --device D        auto (default: CUDA when a GPU answers, else the CPU), cpu\n"
         "                    or cuda; also DIFFSCOPE_DEVICE\n"
         "  --precision P     what CUDA computes in: f16 (default), bf16, or f32 (strict,\n"
         "                    for reference checks); the CPU computes in f32\n"
         "                    DIFFSCOPE_GPU_MEMORY=6G (K, M, G or bytes) caps the device\n"
         "                    memory CUDA allocates: past it, out of device memory\n"
         "request:\n"
         "  --image FILE      PNG or JPEG (render: a second one for a joint PCA pair view;\n"
         "                    score: repeatable)\n"
         "  --prompt TEXT     question or caption (the cond half)\n"
         "  --uncond TEXT     the uncond half's prompt (default \"\")\n"
         "  --t N             timestep 0..999 (default 50)\n"
         "  --meng            Meng et al.'s convention: the UNet runs at t-1\n"
         "  --seed N          noise seed (default 0)\n"
         "  --noise FILE[:T]  (features, render) use the noise tensor T (default \"noise\")\n"
         "                    of a .safetensors file, shape [1, 4, size/f, size/f] (f the\n"
         "                    VAE's factor: 8 for SD, 4 built-in; see probes), instead\n"
         "                    of the seed; NaN and infinities are refused\n"
         "  --size N          model input side, a multiple of 64 in 64..1024 (default: the\n"
         "                    model's native size, 512 for SD 2.1-base, 128 built-in; the\n"
         "                    cost grows with size^2)\n"
         "  --crop            keep the aspect: short side to size, centre crop\n"
         "                    (default: stretch to size x size, the paper's protocol)\n"
         "  --probe NAME      a probe, paper name (U-L1-R1-B0-Cross-Q) or long id; repeatable\n"
         "features:\n"
         "  --maps            also every cross-attention layer's head-mean map (cond half)\n"
         "  --out FILE        output .safetensors (FILE.json is written beside it)\n"
         "render:\n"
         "  --s S             guidance scale for X_s = X_u + s(X_c - X_u); repeatable (7.5)\n"
         "  --words           a cross-attention heatmap per word of the prompt\n"
         "  --heat-res N      the attention resolution averaged for heatmaps (the model's:\n"
         "                    16 for SD 2.1-base at 512 and for the built-in model at 128)\n"
         "  --timesteps LIST  (with --words) average the heatmaps over these timesteps,\n"
         "                    e.g. 189,389,589,789,989, and --trials N noise draws each\n"
         "  --daam            (with --words) DAAM's aggregation: every down/up layer,\n"
         "                    bicubic to the latent size, summed over timesteps\n"
         "  --cka             plot CKA(X_s, X_uncond) against s for each probe\n"
         "  --colormap NAME   viridis, inferno, jet, gray or greys (viridis)\n"
         "  --opacity A       heatmap overlay opacity 0..1 (0.6)\n"
         "  --out-dir DIR     where the PNGs go (created if missing)\n"
         "score (Discffusion: mean over timesteps x trials of the score layers' mean\n"
         "cross-attention logsumexp + |eps - eps_uncond| - |eps - eps_cond|):\n"
         "  --caption TEXT    a candidate caption; repeatable (with --image repeatable:\n"
         "                    every caption x image pair; 2 x 2 adds Winoground)\n"
         "  --timesteps LIST  comma-separated timesteps averaged over (189,389,589,789,989);\n"
         "                    Discffusion's own 30: 32,65,98,131,164,197,230,263,296,329,\n"
         "                    362,395,428,461,494,527,560,593,626,659,692,725,758,791,824,\n"
         "                    857,890,923,956,989\n"
         "  --trials N        noise draws per timestep, seeds --seed + 0..N-1 (1)\n"
         "  --json            print the scores as JSON instead of a table\n"
         "  --out FILE        also write the JSON to FILE\n"
         "  --pairs FILE      Winoground-style: a JSON list of {\"captions\": [c0, c1],\n"
         "                    \"images\": [i0, i1]} (caption k matches image k); prints\n"
         "                    each item's text/image/group result and the totals\n"
         "batch:\n"
         "  JOBS.json         an array of {\"name\", \"image\", \"prompt\", \"probes\": [...],\n"
         "                    \"uncond\", \"t\", \"s\", \"seed\", \"render\": bool} objects; image,\n"
         "                    prompt and probes are required, relative images are relative\n"
         "                    to JOBS.json, names default to job-<index> (from 0). Each job\n"
         "                    writes DIR/<name>.safetensors (+ .json) as features does and,\n"
         "                    with \"render\": true, the render PNGs in DIR/<name>/. Request\n"
         "                    options (--t, --seed, --uncond, --size, --s, --words...) are\n"
         "                    the defaults. Jobs whose files exist are skipped (resume).\n"
         "  --shard K/N       run only the jobs with index % N == K (0-based)\n",
         f);
}

int
main (int argc, char **argv)
{
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)
    {
      usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? 2 : 0;
    }
  static const struct {
    const char *name;
    int (*run) (const CliOptions *o);
  } commands[] = {
    { "info", cli_cmd_info },     { "probes", cli_cmd_probes }, { "features", cli_cmd_features },
    { "render", cli_cmd_render }, { "score", cli_cmd_score },   { "batch", cli_cmd_batch },
  };
  if (strcmp (argv[1], "ask") == 0)
    return cli_cmd_ask (argc, argv);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      {
        CliOptions o;
        for (int k = 2; k < argc; k++)
          if (strcmp (argv[k], "--help") == 0)
            {
              usage (stdout);
              return 0;
            }
        if (cli_parse_args (argc, argv, &o))
          return 2;
        return commands[i].run (&o);
      }
  fprintf (stderr, "diffscope-cli: unknown command \"%s\" (info, probes, features, render, score, "
                   "batch, ask)\n",
           argv[1]);
  return 2;
}
