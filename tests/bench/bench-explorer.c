/* bench-explorer.c: how fast the explorer answers a person (BENCHMARKS.md).
 *
 *   bench-explorer [--runs N] [--size S]      the window on the demo model
 *   bench-explorer --real [--runs N]          the real SD 2.1-base configuration
 *                                             (seeded weights), worker side only
 *
 * The window part needs a display (run it under xvfb-run). It measures, from
 * the control's change to the end of the frame that shows the new pixels
 * (the window's frame clock "after-paint"):
 *   - a guidance-scale change (no network: the features are cached),
 *   - a word pick (no network),
 *   - a timestep change (one UNet forward up to the chosen block).
 * Targets: one frame (16 ms) for s and words, 100 ms for t.
 *
 * The --real part opens SD 2.1-base's configuration with seeded random
 * weights on the CPU and measures, through the same code the worker runs
 * (ds_explore_update): the time to the first maps of U-L1-R1-B0-Cross-Q
 * (VAE, text encoder, the UNet up to that block with the early exit, the
 * maps), a new timestep (UNet only), and how long a running forward takes to
 * stop once superseded (cancel set at a UNet block, measured to the return),
 * against the duration of the blocks around it (target: within one block).
 */
#include <glib/gstdio.h>
#include <gtk/gtk.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "ds-explore.h"
#include "ds-test-sd21.h"
#include "ds-token-strip.h"
#include "ds-window.h"

/* ---- the window -------------------------------------------------------------------- */

static DsWindow *win;
static gboolean painted;

static void
on_after_paint (GdkFrameClock *clock, gpointer data)
{
  painted = TRUE;
}

/* Runs `change`, then waits for a new view and the frame after it; ms. */
static double
time_change (void (*change) (int i), int i)
{
  guint n0 = ds_window_get_n_views (win);
  double t0 = bench_now_ms ();
  change (i);
  while (ds_window_get_n_views (win) == n0)
    g_main_context_iteration (NULL, TRUE);
  painted = FALSE;
  while (!painted)
    g_main_context_iteration (NULL, TRUE);
  return bench_now_ms () - t0;
}

static GtkWidget *
child (const char *name)
{
  return ds_window_get_child (win, name);
}

static void
change_s (int i)
{
  gtk_range_set_value (GTK_RANGE (child ("s_scale")), i % 2 ? 7.5 : 3.0); /* never the value it has */
}

static void
change_word (int i)
{
  ds_token_strip_select (DS_TOKEN_STRIP (child ("token_strip")), 1 + i % 3);
}

static void
change_t (int i)
{
  gtk_range_set_value (GTK_RANGE (child ("t_scale")), 200 + 10 * i);
}

static void
report (const char *what, double *t, int n, double target)
{
  bench_sort (t, n);
  printf ("%-34s median %8.1f ms  min %8.1f  max %8.1f  (", what, t[n / 2], t[0], t[n - 1]);
  if (!isnan (target))
    printf ("target %.0f ms, ", target);
  printf ("%d runs)\n", n);
}

static int
bench_window (int runs, int size)
{
  g_autofree char *cfg = g_dir_make_tmp ("ds-bench-XXXXXX", NULL);
  g_setenv ("DIFFSCOPE_CONFIG_DIR", cfg, TRUE);
  g_autofree char *ini = g_build_filename (cfg, "settings.ini", NULL);
  g_autofree char *text = g_strdup_printf ("[explorer]\nsize=%d\ndevice=cpu\n", size);
  g_file_set_contents (ini, text, -1, NULL);
  if (!gtk_init_check ())
    {
      fprintf (stderr, "bench-explorer: no display (run under xvfb-run)\n");
      return 1;
    }
  win = ds_window_new (NULL);
  gtk_window_present (GTK_WINDOW (win));
  g_signal_connect (gtk_widget_get_frame_clock (GTK_WIDGET (win)), "after-paint",
                    G_CALLBACK (on_after_paint), NULL);
  ds_window_open_model (win, NULL);
  ds_window_set_prompt (win, "a red disc above a green triangle");
  g_autoptr (GFile) f = g_file_new_for_path (DS_TEST_DATA_DIR "/sd-input.png");
  ds_window_open_image (win, f, FALSE);
  ds_window_wait_idle (win);
  ds_window_wait_idle (win);
  if (!ds_window_get_view (win))
    {
      fprintf (stderr, "bench-explorer: no maps: %s\n", ds_window_get_error (win));
      return 1;
    }
  printf ("window, demo model at %d², CPU; %s\n", size, ds_window_get_view (win)->device);
  double *t = calloc ((size_t) runs, sizeof *t);
  guint64 f0 = ds_window_get_forwards (win);
  for (int i = 0; i < runs; i++)
    t[i] = time_change (change_s, i);
  report ("s change -> new pixels", t, runs, 16);
  for (int i = 0; i < runs; i++)
    t[i] = time_change (change_word, i);
  report ("word pick -> new pixels", t, runs, 16);
  printf ("  UNet forwards during those: %" G_GUINT64_FORMAT "\n",
          ds_window_get_forwards (win) - f0);
  for (int i = 0; i < runs; i++)
    t[i] = time_change (change_t, i);
  report ("t change -> new pixels", t, runs, 100);
  const DsExploreView *v = ds_window_get_view (win);
  printf ("  last t change: network %.1f ms, maps %.1f ms\n", v->ms_network, v->ms_analysis);
  free (t);
  gtk_window_destroy (GTK_WINDOW (win));
  g_unlink (ini);
  g_rmdir (cfg);
  return 0;
}

/* ---- the real configuration, worker side -------------------------------------------- */

typedef struct {
  double t[512];   /* when each UNet block was reported done */
  int n;
} Blocks;

static void
on_progress (void *user, DsSessionStage stage, int done, int total, int run, int runs)
{
  Blocks *b = user;
  if (stage == DS_SESSION_STAGE_UNET && b->n < 512)
    b->t[b->n++] = bench_now_ms ();
}

typedef struct {
  DsExplorer *x;
  const DsExploreParams *p;
  atomic_int *cancel;
  gboolean cancelled;
  double end;
} SupersedeRun;

static gpointer
supersede_thread (gpointer data)
{
  SupersedeRun *r = data;
  GError *error = NULL;
  DsExploreView *v = ds_explore_update (r->x, r->p, r->cancel, NULL, NULL, &error);
  r->end = bench_now_ms ();
  r->cancelled = !v && g_error_matches (error, DS_EXPLORE_ERROR, DS_ERR_CANCELLED);
  ds_explore_view_free (v);
  g_clear_error (&error);
  return NULL;
}

static int
bench_real (int runs)
{
  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  DsModelDir dir;
  memset (&dir, 0, sizeof dir);
  ds_test_sd21_configs (&dir);
  DsPipeline *p = NULL;
  if (!be || ds_pipeline_open_random (&dir, 1, DS_RESOURCES_DIR, be, &p, &err))
    {
      fprintf (stderr, "bench-explorer: %s\n", err.message);
      return 1;
    }
  g_autoptr (GError) error = NULL;
  DsExplorer *x = ds_explorer_new (be, p, NULL, &error);
  if (!x)
    {
      fprintf (stderr, "bench-explorer: %s\n", error->message);
      return 1;
    }
  DsSharedImage *im = ds_shared_image_load (DS_TEST_DATA_DIR "/sd-input.png", &error);
  if (!im)
    {
      fprintf (stderr, "bench-explorer: %s\n", error->message);
      return 1;
    }
  char *blocks[] = { "U-L1-R1-B0-Cross-Q", NULL };
  DsExploreParams prm = { .image = im, .prompt = "a red disc above a green triangle",
                          .t = 100, .s = 7.5, .blocks = blocks, .word = { -1, -1 },
                          .cmap = DS_COLORMAP_INFERNO, .tile_px = 160 };
  printf ("real SD 2.1-base configuration (seeded weights), 512², CPU: %s\n",
          ds_explorer_device (x));
  atomic_int cancel = 0;
  Blocks b = { 0 };
  double t0 = bench_now_ms ();
  DsExploreView *v = ds_explore_update (x, &prm, &cancel, on_progress, &b, &error);
  double first = bench_now_ms () - t0;
  if (!v)
    {
      fprintf (stderr, "bench-explorer: %s\n", error->message);
      return 1;
    }
  printf ("first maps (VAE + text + UNet to the block + maps): %.0f ms  (network %.0f, maps "
          "%.0f; %d UNet blocks run)\n", first, v->ms_network, v->ms_analysis, b.n);
  ds_explore_view_free (v);
  double *tt = calloc ((size_t) runs, sizeof *tt);
  for (int i = 0; i < runs; i++)
    {
      prm.t = 150 + 50 * i;
      b.n = 0;
      t0 = bench_now_ms ();
      v = ds_explore_update (x, &prm, &cancel, on_progress, &b, &error);
      tt[i] = bench_now_ms () - t0;
      ds_explore_view_free (v);
    }
  report ("new t -> maps (UNet to the block)", tt, runs, NAN);
  /* Block durations of a full run to the block, then the stop latency: the
   * forward runs on a thread (as on the explorer's worker) and the cancel
   * flag is set from here at a moment unrelated to the blocks, as a newer
   * job's post does. */
  double *stop = calloc ((size_t) runs, sizeof *stop), worst_block = 0;
  for (int i = 1; i < b.n; i++)
    worst_block = fmax (worst_block, b.t[i] - b.t[i - 1]);
  int n_blocks = b.n;
  double t_full = b.n ? b.t[b.n - 1] - b.t[0] : 0;
  for (int i = 0; i < runs; i++)
    {
      atomic_store (&cancel, 0);
      prm.t = 700 + 10 * i;
      SupersedeRun sr = { .x = x, .p = &prm, .cancel = &cancel };
      GThread *th = g_thread_new ("forward", supersede_thread, &sr);
      /* somewhere in the UNet: after the (cached) inputs, spread over the run */
      g_usleep ((gulong) (1000 * (0.15 + 0.7 * (i + 0.5) / runs) * t_full));
      double set = bench_now_ms ();
      atomic_store (&cancel, 1);
      g_thread_join (th);
      if (!sr.cancelled)
        {
          fprintf (stderr, "bench-explorer: the superseded run did not stop (it finished)\n");
          return 1;
        }
      stop[i] = sr.end - set;
    }
  atomic_store (&cancel, 0);
  bench_sort (stop, runs);
  printf ("superseded forward -> stopped: median %.0f ms, max %.0f ms; UNet blocks to the "
          "probe: %d, the longest %.0f ms (target: within one block)\n", stop[runs / 2],
          stop[runs - 1], n_blocks, worst_block);
  free (tt);
  free (stop);
  ds_shared_image_unref (im);
  ds_explorer_free (x);
  return 0;
}

int
main (int argc, char **argv)
{
  int runs = 10, size = 512;
  gboolean real = FALSE;
  for (int i = 1; i < argc; i++)
    if (!strcmp (argv[i], "--runs") && i + 1 < argc)
      {
        runs = atoi (argv[++i]); /* not inside MAX: it would read argv twice */
        runs = MAX (runs, 1);
      }
    else if (!strcmp (argv[i], "--size") && i + 1 < argc)
      size = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--real"))
      real = TRUE;
    else
      {
        fprintf (stderr, "usage: bench-explorer [--real] [--runs N] [--size S]\n");
        return 2;
      }
  return real ? bench_real (runs) : bench_window (runs, size);
}
