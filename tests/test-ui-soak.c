/* test-ui-soak.c: a long session on the explorer does not degrade (issue
 * #14, "Long sessions").
 *
 * The window on the built-in model (CPU, native size 128) is driven with a
 * seeded random sequence of what a person does: drag the timestep and the
 * guidance sliders, change the noise seed, type another prompt, pick a word,
 * open another picture, with 0-30 ms of main loop between actions (so jobs
 * are superseded while queued and cancelled while running). Every 40 actions
 * it settles and checks:
 *
 * - no deadlock: the worker goes idle within 60 s;
 * - no stale frame: the view shown belongs to the latest inputs (its t, s
 *   and seed are the controls', its first word the prompt's);
 * - no error was shown;
 * - resident memory stays flat: the session's result cache is bounded
 *   (DIFFSCOPE_CACHE_MB, 16 MiB here; 256 MiB by default, which a 600 s run
 *   fills: 230 MiB of growth that is the cache, not a leak). After the first
 *   quarter of the run (the cache full: at 128 px a result is 0.05-0.2 MiB
 *   and a quarter of a run makes hundreds), RSS grows by at most
 *   RSS_BOUND_MIB over the rest. What is left to grow is allocator
 *   fragmentation and GTK's texture caches, a few MiB; 48 MiB leaves room for
 *   both and still catches a leak of one small map per action (0.02 MiB x
 *   thousands of actions in a long run).
 *
 * DIFFSCOPE_SOAK_SECONDS sets the length (default 20 s for CI); the numbers
 * in the README come from a 600 s run.
 */
#include <glib/gstdio.h>
#include <malloc.h>
#include <gtk/gtk.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ds-explore.h"
#include "ds-test-ui.h"
#include "ds-token-strip.h"
#include "ds-window.h"
#include "ds-worker.h"

#ifndef DS_TEST_DATA_DIR
#define DS_TEST_DATA_DIR "tests/data"
#endif

#define RSS_BOUND_MIB 48.0

static DsWindow *win;

static GtkWidget *
child (const char *name)
{
  GtkWidget *w = ds_window_get_child (win, name);
  g_assert_nonnull (w);
  return w;
}

/* Bytes the C heap has handed out and not had back (glibc), in MiB: apart
 * from RSS, it tells a leak (this grows) from fragmentation (it does not). */
static double
heap_mib (void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  return (double) mallinfo2 ().uordblks / (1024.0 * 1024.0);
#else
  return 0;
#endif
}

static double
rss_mib (void)
{
  long pages = 0, resident = 0;
  FILE *f = fopen ("/proc/self/statm", "r");
  if (f)
    {
      if (fscanf (f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
      fclose (f);
    }
  return (double) resident * (double) sysconf (_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* Settles (60 s at most: longer is a deadlock) and checks the view shown is
 * the latest inputs'. */
static void
settle_and_check (const char *prompt)
{
  gint64 end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (ds_worker_busy (ds_window_get_worker (win)) && g_get_monotonic_time () < end)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
  g_assert_false (ds_worker_busy (ds_window_get_worker (win)));
  ds_window_wait_idle (win);
  ds_test_ui_drain ();
  g_assert_null (ds_window_get_error (win));
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_nonnull (v);
  g_assert_cmpint (v->t, ==, (int) gtk_range_get_value (GTK_RANGE (child ("t_scale"))));
  g_assert_cmpfloat_with_epsilon (v->s, gtk_range_get_value (GTK_RANGE (child ("s_scale"))),
                                  1e-9);
  g_assert_cmpuint (v->seed, ==,
                    (guint64) gtk_spin_button_get_value (GTK_SPIN_BUTTON (child ("seed_spin"))));
  g_assert_cmpint (v->tokens[0].n_words, >, 0);
  char first[64];
  sscanf (prompt, "%63s", first);
  g_assert_cmpstr (v->tokens[0].words[0].text, ==, first);
}

static void
test_soak (void)
{
  static const char *const prompts[] = {
    "a red circle and a green triangle", "a blue square above a yellow circle",
    "there is a green triangle", "two objects: a yellow square and a red triangle",
    "a red circle left of a blue square",
  };
  static const char *const images[] = {
    DS_TEST_DATA_DIR "/shapes/0000.png", DS_TEST_DATA_DIR "/shapes/0001.png",
    DS_TEST_DATA_DIR "/shapes/0002.png",
  };
  const char *env = g_getenv ("DIFFSCOPE_SOAK_SECONDS");
  const double seconds = env ? g_ascii_strtod (env, NULL) : 20.0;
  GRand *rng = g_rand_new_with_seed (1);
  const char *prompt = prompts[0];
  ds_window_set_prompt (win, prompt);
  g_autoptr (GFile) f0 = g_file_new_for_path (images[0]);
  ds_window_open_image (win, f0, FALSE);
  settle_and_check (prompt);
  const gint64 start = g_get_monotonic_time ();
  const gint64 end = start + (gint64) (seconds * G_USEC_PER_SEC);
  const gint64 warm = start + (gint64) (seconds / 4 * G_USEC_PER_SEC);
  double rss0 = -1, rss_max = 0, heap0 = 0;
  int actions = 0, checks = 0;
  while (g_get_monotonic_time () < end)
    {
      switch (g_rand_int_range (rng, 0, 6))
        {
        case 0:
          gtk_range_set_value (GTK_RANGE (child ("t_scale")), g_rand_int_range (rng, 10, 900));
          break;
        case 1:
          gtk_range_set_value (GTK_RANGE (child ("s_scale")), g_rand_int_range (rng, 0, 21) / 2.0);
          break;
        case 2:
          gtk_spin_button_set_value (GTK_SPIN_BUTTON (child ("seed_spin")),
                                     g_rand_int_range (rng, 0, 4));
          break;
        case 3:
          prompt = prompts[g_rand_int_range (rng, 0, G_N_ELEMENTS (prompts))];
          ds_window_set_prompt (win, prompt);
          break;
        case 4:
          {
            DsTokenStrip *strip = DS_TOKEN_STRIP (child ("token_strip"));
            int n = ds_token_strip_get_n_items (strip);
            if (n > 2)
              ds_token_strip_select (strip, g_rand_int_range (rng, 1, n - 1));
            break;
          }
        default:
          {
            g_autoptr (GFile) f
              = g_file_new_for_path (images[g_rand_int_range (rng, 0, G_N_ELEMENTS (images))]);
            ds_window_open_image (win, f, FALSE);
          }
        }
      actions++;
      ds_test_ui_wait_ms (g_rand_int_range (rng, 0, 31));
      if (actions % 40 == 0)
        {
          settle_and_check (prompt);
          checks++;
          double r = rss_mib ();
          if (rss0 < 0 && g_get_monotonic_time () >= warm)
            {
              rss0 = rss_max = r; /* the baseline, once the cache is full */
              heap0 = heap_mib ();
            }
          rss_max = r > rss_max ? r : rss_max;
        }
    }
  settle_and_check (prompt);
  const double rss1 = rss_mib ();
  if (rss0 < 0) /* too short a run for a settled check after the warm-up */
    {
      rss0 = rss_max = rss1;
      heap0 = heap_mib ();
    }
  rss_max = rss1 > rss_max ? rss1 : rss_max;
  g_print ("soak: %.0f s, %d actions, %d settled checks, %u views, %" G_GUINT64_FORMAT
           " UNet forwards; RSS %.1f MiB after the first quarter, %.1f at the end, %.1f at most; "
           "malloc'd and not freed %.1f MiB then, %.1f at the end\n",
           seconds, actions, checks + 2, ds_window_get_n_views (win), ds_window_get_forwards (win),
           rss0, rss1, rss_max, heap0, heap_mib ());
#if defined(__SANITIZE_ADDRESS__)
  /* ASan holds freed memory in its quarantine (256 MiB by default), so RSS
   * says nothing about leaks here; LeakSanitizer checks those at exit. */
  g_print ("soak: AddressSanitizer build: the RSS bound is not checked\n");
#else
  g_assert_cmpfloat (rss_max - rss0, <=, RSS_BOUND_MIB);
#endif
  g_rand_free (rng);
}

int
main (int argc, char **argv)
{
  g_autofree char *cfg = g_dir_make_tmp ("ds-ui-soak-XXXXXX", NULL);
  g_setenv ("DIFFSCOPE_CONFIG_DIR", cfg, TRUE);
  g_autofree char *ini = g_build_filename (cfg, "settings.ini", NULL);
  g_file_set_contents (ini, "[explorer]\ndevice=cpu\n", -1, NULL);
  g_setenv ("GTK_A11Y", "test", TRUE); /* an accessibility context without a bus */
  g_setenv ("DIFFSCOPE_CACHE_MB", "16", TRUE);
  gtk_test_init (&argc, &argv, NULL);
  if (!gdk_display_get_default ())
    {
      g_print ("no display: skipped\n");
      return 77;
    }
  win = ds_window_new (NULL);
  gtk_window_present (GTK_WINDOW (win));
  ds_window_open_model (win, NULL); /* the built-in model */
  ds_window_wait_idle (win);
  ds_test_ui_drain ();
  g_test_add_func ("/explorer/soak", test_soak);
  int rc = g_test_run ();
  gtk_window_destroy (GTK_WINDOW (win));
  ds_test_ui_drain ();
  g_unlink (ini);
  g_rmdir (cfg);
  return rc;
}
