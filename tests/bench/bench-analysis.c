/* bench-analysis: the work a guidance-scale slider move costs, with no network:
 * X_s = X_u + s·(X_c − X_u), PCA → RGB of X_s, and the picture (nearest upscale
 * to 512²), for the paper's default probe U-L1-R1-B0-Cross-Q at 512² input
 * ([1280, 16×16]) and a 64×64 one ([320, 64×64]); plus |Δcond| heat and one
 * word heatmap (5 layers × 20 heads at 16×16). Medians over many runs.
 *
 *   build/tests/bench/bench-analysis [--runs N]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-util.h"

#include "ds-analysis.h"
#include "ds-heatmap.h"
#include "ds-pca.h"
#include "ds-render.h"
#include "ds-schedule.h"


static void
report (const char *name, double *t, int runs)
{
  bench_sort (t, runs);
  printf ("%-52s median %8.2f ms   min %8.2f ms   runs %d\n", name, t[runs / 2], t[0], runs);
}

/* amplify + PCA + picture for a [c, side²] map */
static void
bench_slider (int64_t c, int side, int runs)
{
  int64_t n = (int64_t) side * side;
  float *xu = malloc ((size_t) (c * n) * sizeof *xu), *xc = malloc ((size_t) (c * n) * sizeof *xc);
  float *xs = malloc ((size_t) (c * n) * sizeof *xs), *rgb01 = malloc ((size_t) n * 3 * sizeof (float));
  uint8_t *small = malloc ((size_t) n * 3), *big = malloc ((size_t) 512 * 512 * 3);
  ds_noise_normal (1, xu, c * n);
  ds_noise_normal (2, xc, c * n);
  double *t = malloc ((size_t) runs * sizeof *t);
  DsError err;
  for (int r = 0; r < runs; r++)
    {
      double t0 = bench_now_ms ();
      ds_guidance_amplify (xu, xc, 1.0f + 0.01f * r, xs, c * n);
      if (ds_pca_rgb (xs, c, n, rgb01, NULL, &err))
        {
          fprintf (stderr, "%s\n", err.message);
          exit (1);
        }
      ds_render_rgb01 (rgb01, (size_t) n, small);
      ds_render_resize_nearest (small, side, side, 3, 512, 512, big, &err);
      t[r] = bench_now_ms () - t0;
    }
  char name[128];
  snprintf (name, sizeof name, "s slider: amplify + PCA + picture [%lld, %dx%d]", (long long) c,
            side, side);
  report (name, t, runs);
  free (xu), free (xc), free (xs), free (rgb01), free (small), free (big), free (t);
}

static void
bench_heat (int runs)
{
  /* five 16x16 layers of 20 heads, 77 keys; one word of two pieces */
  enum { L = 5, H = 20, N = 256, K = 77 };
  float *maps = malloc ((size_t) L * H * N * K * sizeof *maps), *m = malloc (N * K * sizeof *m);
  float word[N];
  uint8_t *rgba = malloc ((size_t) 512 * 512 * 4);
  ds_noise_normal (3, maps, (int64_t) L * H * N * K);
  for (int64_t i = 0; i < (int64_t) L * H * N * K; i++)
    maps[i] = fabsf (maps[i]);
  DsAttnMaps layers[L];
  for (int l = 0; l < L; l++)
    layers[l] = (DsAttnMaps){ maps + (size_t) l * H * N * K, H, 16, 16, K };
  DsTokenWord w = { "cat", 2, 2 };
  double *t = malloc ((size_t) runs * sizeof *t);
  DsError err;
  for (int r = 0; r < runs; r++)
    {
      double t0 = bench_now_ms ();
      ds_heatmap_mean (layers, L, m, &err);
      ds_heatmap_word (m, N, K, &w, word, &err);
      ds_heatmap_normalize (word, N, DS_HEATMAP_NORM_MINMAX);
      ds_render_heatmap (word, 16, 16, 512, 512, DS_COLORMAP_VIRIDIS, NAN, NAN, rgba, &err);
      t[r] = bench_now_ms () - t0;
    }
  report ("token click: word heatmap, 5 layers x 20 heads, to 512²", t, runs);
  free (maps), free (m), free (rgba), free (t);
}

int
main (int argc, char **argv)
{
  int runs = 51;
  if (argc == 3 && !strcmp (argv[1], "--runs"))
    runs = atoi (argv[2]);
  if (runs < 1 || runs > 10000)
    runs = 51;
  printf ("# CPU, single thread for the analysis code (OpenBLAS threads for LAPACK)\n");
  bench_slider (1280, 16, runs);
  bench_slider (640, 32, runs);
  bench_slider (320, 64, runs);
  bench_heat (runs);
  return 0;
}
