/* test-ui-explorer.c: the explorer window driven through its controls, on the
 * built-in demo model at a small input size (128, set in a temporary
 * preferences folder), under a display (Xvfb in scripts/test).
 *
 * What would break if the window or its worker were wrong:
 *   - maps arrive for an image and a prompt (textures in the grid, tokens);
 *   - an s change and a word pick deliver new pixels with no UNet forward;
 *   - 50 rapid timestep moves run only a few forwards and the last one wins;
 *   - a bad image or model folder shows an error and the window keeps working;
 *   - a mismatched prompt's maps and words stand beside the first's, a second
 *     image gives the joint PCA and correspondences, exports write files;
 *   - keyboard only: Tab reaches the main controls, each has an accessible
 *     name, and they can be operated without a pointer.
 */
#include <glib/gstdio.h>
#include <gtk/gtk.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>

#include "ds-answer-view.h"
#include "ds-block-picker.h"
#include "ds-llava.h"
#include "ds-prefs.h"
#include "ds-safetensors.h"
#include "ds-image-view.h"
#include "ds-map-grid.h"
#include "ds-token-strip.h"
#include "ds-window.h"

#ifndef DS_TEST_DATA_DIR
#define DS_TEST_DATA_DIR "tests/data"
#endif

static DsWindow *win;

static GtkWidget *
child (const char *name)
{
  GtkWidget *w = ds_window_get_child (win, name);
  g_assert_nonnull (w);
  return w;
}

static void
wait_idle (void)
{
  ds_window_wait_idle (win);
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
}

static void
open_image (const char *path, gboolean second)
{
  g_autoptr (GFile) f = g_file_new_for_path (path);
  ds_window_open_image (win, f, second);
  wait_idle ();
}

static void
test_maps_arrive (void)
{
  g_assert_true (ds_window_has_model (win));
  ds_window_set_prompt (win, "a red disc above a triangle");
  open_image (DS_TEST_DATA_DIR "/sd-input.png", FALSE);
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_nonnull (v);
  g_assert_null (ds_window_get_error (win));
  g_assert_cmpint (v->n_blocks, ==, 1);
  g_assert_cmpstr (v->blocks[0][0].name, ==, "U-L1-R1-B0-Cross-Q");
  g_assert_cmpuint (ds_window_get_forwards (win), >=, 1);
  DsMapGrid *grid = DS_MAP_GRID (child ("map_grid"));
  g_assert_cmpint (ds_map_grid_get_n_rows (grid), ==, 1);
  for (int c = 0; c < 4; c++)
    g_assert_nonnull (ds_map_grid_get_texture (grid, 0, c));
  /* the words of the prompt, with the special items first and last */
  DsTokenStrip *strip = DS_TOKEN_STRIP (child ("token_strip"));
  g_assert_cmpint (ds_token_strip_get_n_items (strip), ==, 77 - 6 - 2 + 6 + 2);
  g_assert_cmpstr (ds_token_strip_get_item (strip, 1)->label, ==, "a");
  g_assert_cmpstr (ds_token_strip_get_item (strip, 2)->label, ==, "red");
  g_assert_true (ds_image_view_get_image (DS_IMAGE_VIEW (child ("image_view"))) != NULL);
}

static void
test_s_change_runs_no_network (void)
{
  const guint n0 = ds_window_get_n_views (win);
  const guint64 f0 = ds_window_get_forwards (win);
  GdkTexture *before = ds_map_grid_get_texture (DS_MAP_GRID (child ("map_grid")), 0, 1);
  g_object_ref (before);
  gtk_range_set_value (GTK_RANGE (child ("s_scale")), 2.0);
  wait_idle ();
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_cmpuint (ds_window_get_n_views (win), ==, n0 + 1);
  g_assert_cmpuint (ds_window_get_forwards (win), ==, f0);
  g_assert_cmpint (v->unet_forwards, ==, 0);
  g_assert_cmpfloat (v->s, ==, 2.0);
  g_assert_nonnull (strstr (v->blocks[0][0].caption[1], "s = 2"));
  /* new pixels: X_s at s = 2 is another picture than at 7.5 */
  GdkTexture *after = ds_map_grid_get_texture (DS_MAP_GRID (child ("map_grid")), 0, 1);
  g_assert_true (after != before);
  g_object_unref (before);
}

static void
test_word_pick_runs_no_network (void)
{
  const guint64 f0 = ds_window_get_forwards (win);
  DsImageView *view = DS_IMAGE_VIEW (child ("image_view"));
  g_assert_null (ds_image_view_get_overlay (view));
  ds_token_strip_select (DS_TOKEN_STRIP (child ("token_strip")), 2); /* "red" */
  wait_idle ();
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_cmpuint (ds_window_get_forwards (win), ==, f0);
  g_assert_cmpint (v->unet_forwards, ==, 0);
  g_assert_nonnull (ds_image_view_get_overlay (view));
  g_assert_nonnull (strstr (v->overlay_label[0], "red"));
  /* the hover grid is the word's map, normalised to max 1 */
  g_assert_nonnull (v->values[0]);
  float mx = 0;
  for (int i = 0; i < v->vw[0] * v->vh[0]; i++)
    mx = fmaxf (mx, v->values[0][i]);
  g_assert_cmpfloat_with_epsilon (mx, 1.0, 1e-6);
  /* another word: other pixels, still no forward */
  GdkTexture *red = g_object_ref (ds_image_view_get_overlay (view));
  ds_token_strip_select (DS_TOKEN_STRIP (child ("token_strip")), 4); /* "above" */
  wait_idle ();
  g_assert_true (ds_image_view_get_overlay (view) != red);
  g_assert_cmpuint (ds_window_get_forwards (win), ==, f0);
  g_object_unref (red);
}

static void
test_point_query_runs_no_network (void)
{
  const guint64 f0 = ds_window_get_forwards (win);
  g_signal_emit_by_name (child ("image_view"), "point-picked", 0.25, 0.25);
  wait_idle ();
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_cmpuint (ds_window_get_forwards (win), ==, f0);
  g_assert_nonnull (strstr (v->overlay_label[0], "cosine similarity"));
  /* the picked spot is most similar to itself: cosine 1 there */
  int gx = (int) (0.25 * v->vw[0]), gy = (int) (0.25 * v->vh[0]);
  g_assert_cmpfloat_with_epsilon (v->values[0][gy * v->vw[0] + gx], 1.0, 1e-5);
}

static void
test_rapid_timesteps_last_wins (void)
{
  const guint64 f0 = ds_window_get_forwards (win);
  GtkRange *t = GTK_RANGE (child ("t_scale"));
  int last = 0;
  for (int i = 0; i < 50; i++)
    {
      last = 300 + 7 * i;
      gtk_range_set_value (t, last);
      g_main_context_iteration (NULL, FALSE); /* a drag delivers events between moves */
    }
  wait_idle ();
  const DsExploreView *v = ds_window_get_view (win);
  const guint64 ran = ds_window_get_forwards (win) - f0;
  guint64 run = 0, dropped = 0, superseded = 0;
  ds_worker_counts (ds_window_get_worker (win), &run, &dropped, &superseded);
  g_test_message ("50 moves: %" G_GUINT64_FORMAT " UNet forwards, %" G_GUINT64_FORMAT
                  " jobs dropped unrun, %" G_GUINT64_FORMAT " superseded while running",
                  ran, dropped, superseded);
  g_assert_cmpint (v->t, ==, last);
  g_assert_cmpuint (ran, >=, 1);
  /* Each forward that completes either is the last one or was running when
   * the next move came; queued moves are dropped, so far fewer than 50 run. */
  g_assert_cmpuint (ran, <=, 10);
}

static void
test_bad_image_keeps_working (void)
{
  g_autofree char *dir = g_dir_make_tmp ("ds-ui-XXXXXX", NULL);
  g_autofree char *bad = g_build_filename (dir, "not-an-image.png", NULL);
  g_assert_true (g_file_set_contents (bad, "this is text, not a PNG", -1, NULL));
  open_image (bad, FALSE);
  g_assert_nonnull (ds_window_get_error (win));
  g_assert_nonnull (strstr (ds_window_get_error (win), "not-an-image.png"));
  /* the previous image and maps stay, and the window still works */
  const guint n0 = ds_window_get_n_views (win);
  gtk_range_set_value (GTK_RANGE (child ("s_scale")), 4.0);
  wait_idle ();
  g_assert_cmpuint (ds_window_get_n_views (win), ==, n0 + 1);
  open_image (DS_TEST_DATA_DIR "/sd-input.png", FALSE);
  g_assert_null (ds_window_get_error (win));
  g_unlink (bad);
  g_rmdir (dir);
}

static void
test_bad_model_keeps_working (void)
{
  g_autofree char *dir = g_dir_make_tmp ("ds-ui-model-XXXXXX", NULL);
  ds_window_open_model (win, dir); /* an empty folder: no model_index.json */
  wait_idle ();
  g_assert_nonnull (ds_window_get_error (win));
  g_assert_true (ds_window_has_model (win)); /* the demo stays */
  const guint n0 = ds_window_get_n_views (win);
  gtk_range_set_value (GTK_RANGE (child ("t_scale")), 120);
  wait_idle ();
  g_assert_cmpuint (ds_window_get_n_views (win), ==, n0 + 1);
  g_assert_null (ds_window_get_error (win));
  g_rmdir (dir);
}

static void
test_mismatched_prompt (void)
{
  const guint64 f0 = ds_window_get_forwards (win);
  gtk_editable_set_text (GTK_EDITABLE (child ("prompt2_entry")), "a blue square below a disc");
  wait_idle (); /* flushes the typing pause */
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_cmpint (v->n_prompts, ==, 2);
  /* one more UNet run, for the second prompt (same image, t and seed) */
  g_assert_cmpuint (ds_window_get_forwards (win), ==, f0 + 1);
  g_assert_true (gtk_widget_get_visible (child ("map_grid2")));
  g_assert_true (gtk_widget_get_visible (child ("token_strip2")));
  g_assert_true (gtk_widget_get_visible (child ("image2_scroll")));
  DsMapGrid *g2 = DS_MAP_GRID (child ("map_grid2"));
  g_assert_cmpint (ds_map_grid_get_n_rows (g2), ==, 1);
  /* X_uncond is the same picture for both prompts (same image, t, seed);
   * X_s is not: the text moved the features */
  const DsExploreBlock *a = &v->blocks[0][0], *b = &v->blocks[1][0];
  g_assert_cmpmem (a->tile[0].rgba, a->tile[0].w * a->tile[0].h * 4, b->tile[0].rgba,
                   b->tile[0].w * b->tile[0].h * 4);
  g_assert_true (memcmp (a->tile[1].rgba, b->tile[1].rgba, (size_t) a->tile[1].w * a->tile[1].h * 4)
                 != 0);
  /* a word of the second prompt shows over the right-hand picture */
  DsTokenStrip *s2 = DS_TOKEN_STRIP (child ("token_strip2"));
  g_assert_cmpstr (ds_token_strip_get_item (s2, 2)->label, ==, "blue");
  ds_token_strip_select (s2, 2);
  wait_idle ();
  v = ds_window_get_view (win);
  g_assert_nonnull (ds_image_view_get_overlay (DS_IMAGE_VIEW (child ("image_view2"))));
  g_assert_nonnull (strstr (v->overlay_label[1], "blue"));
  g_assert_cmpuint (ds_window_get_forwards (win), ==, f0 + 1);
  gtk_editable_set_text (GTK_EDITABLE (child ("prompt2_entry")), "");
  wait_idle ();
  g_assert_cmpint (ds_window_get_view (win)->n_prompts, ==, 1);
  g_assert_false (gtk_widget_get_visible (child ("map_grid2")));
}

static void
test_pair_view (void)
{
  open_image (DS_TEST_DATA_DIR "/images/jpeg444.jpg", TRUE);
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_null (ds_window_get_error (win));
  g_assert_true (v->pair);
  g_assert_true (gtk_widget_get_visible (child ("pair_box")));
  g_assert_nonnull (v->pair_tile[0].rgba);
  g_assert_nonnull (strstr (v->pair_caption, "joint PCA"));
  /* the point query reaches into the second image: correspondences */
  g_signal_emit_by_name (child ("image_view"), "point-picked", 0.5, 0.5);
  wait_idle ();
  v = ds_window_get_view (win);
  g_assert_nonnull (strstr (v->overlay_label[1], "second image"));
  g_assert_nonnull (ds_image_view_get_overlay (DS_IMAGE_VIEW (child ("image_view2"))));
  for (int i = 0; i < v->vw[1] * v->vh[1]; i++)
    g_assert_true (v->values[1][i] >= -1.0001f && v->values[1][i] <= 1.0001f);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.close-second", NULL));
  wait_idle ();
  g_assert_false (ds_window_get_view (win)->pair);
}

static void
test_exports (void)
{
  g_autofree char *dir = g_dir_make_tmp ("ds-ui-export-XXXXXX", NULL);
  g_autofree char *png = g_build_filename (dir, "view.png", NULL);
  g_autofree char *st = g_build_filename (dir, "features.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (ds_window_export_png (win, png, &error));
  DsImage im = { 0 };
  DsError err = { 0 };
  g_assert_cmpint (ds_image_load (png, &im, &err), ==, DS_OK);
  g_assert_cmpint (im.width, ==, 128); /* the image's own size */
  g_assert_cmpint (im.height, ==, 128);
  ds_image_free (&im);
  ds_window_export_features (win, st);
  wait_idle ();
  g_assert_null (ds_window_get_error (win));
  DsSafetensors *sf = NULL;
  g_assert_cmpint (ds_safetensors_open (st, &sf, &err), ==, DS_OK);
  const DsSafetensorsEntry *u = ds_safetensors_find (sf, "uncond.U-L1-R1-B0-Cross-Q");
  const DsSafetensorsEntry *c = ds_safetensors_find (sf, "cond.U-L1-R1-B0-Cross-Q");
  g_assert_nonnull (u);
  g_assert_nonnull (c);
  g_assert_cmpstr (ds_safetensors_metadata (sf, "prompt"), ==, "a red disc above a triangle");
  ds_safetensors_close (sf);
  /* A full disk: writes past 1 KiB fail as on a full disk (RLIMIT_FSIZE, with
   * SIGXFSZ ignored they return EFBIG). Both exports report it, in the window
   * and as a GError, and the files already there stay byte for byte, with no
   * temporary file left beside them. */
  {
    g_autofree char *png_before = NULL, *st_before = NULL;
    gsize png_len = 0, st_len = 0;
    g_assert_true (g_file_get_contents (png, &png_before, &png_len, NULL));
    g_assert_true (g_file_get_contents (st, &st_before, &st_len, NULL));
    g_assert_cmpuint (png_len, >, 1024);
    g_assert_cmpuint (st_len, >, 1024);
    struct rlimit old_lim, small;
    g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old_lim), ==, 0);
    small = old_lim;
    small.rlim_cur = 1024;
    void (*old_xfsz) (int) = signal (SIGXFSZ, SIG_IGN);
    g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &small), ==, 0);
    g_autoptr (GError) full = NULL;
    gboolean png_ok = ds_window_export_png (win, png, &full);
    ds_window_export_features (win, st);
    wait_idle ();
    g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &old_lim), ==, 0);
    signal (SIGXFSZ, old_xfsz);
    g_assert_false (png_ok);
    g_assert_nonnull (full);
    g_assert_nonnull (strstr (full->message, "view.png"));
    const char *shown = ds_window_get_error (win);
    g_assert_nonnull (shown);
    g_assert_nonnull (strstr (shown, "features.safetensors"));
    g_autofree char *png_after = NULL, *st_after = NULL;
    gsize png_len2 = 0, st_len2 = 0;
    g_assert_true (g_file_get_contents (png, &png_after, &png_len2, NULL));
    g_assert_true (g_file_get_contents (st, &st_after, &st_len2, NULL));
    g_assert_true (png_len2 == png_len && memcmp (png_after, png_before, png_len) == 0);
    g_assert_true (st_len2 == st_len && memcmp (st_after, st_before, st_len) == 0);
    GDir *d = g_dir_open (dir, 0, NULL);
    int n_files = 0;
    while (g_dir_read_name (d))
      n_files++;
    g_dir_close (d);
    g_assert_cmpint (n_files, ==, 2);
  }
  /* a folder that does not exist: an error in the window, nothing crashes */
  g_autofree char *bad = g_build_filename (dir, "missing", "f.safetensors", NULL);
  ds_window_export_features (win, bad);
  wait_idle ();
  g_assert_nonnull (ds_window_get_error (win));
  g_assert_false (ds_window_export_png (win, bad, &error) && error == NULL);
  g_unlink (png);
  g_unlink (st);
  g_rmdir (dir);
}

static void
test_prefs_round_trip (void)
{
  g_autoptr (DsPrefs) p = ds_prefs_load ();
  g_assert_cmpint (p->size, ==, 128);
  g_assert_cmpstr (p->device, ==, "cpu");
  g_assert_cmpstr (p->blocks[0], ==, "U-L1-R1-B0-Cross-Q"); /* the default */
  g_strfreev (p->blocks);
  p->blocks = g_strsplit ("U-L1-R1-B0-Cross-Q,D-L2-R1-Res-Out", ",", -1);
  p->opacity = 0.25;
  g_autoptr (GError) error = NULL;
  g_assert_true (ds_prefs_save (p, &error));
  g_autoptr (DsPrefs) q = ds_prefs_load ();
  g_assert_cmpint (g_strv_length (q->blocks), ==, 2);
  g_assert_cmpstr (q->blocks[1], ==, "D-L2-R1-Res-Out");
  g_assert_cmpfloat (q->opacity, ==, 0.25);
  g_assert_cmpint (q->size, ==, 128);
  /* values a hand-edited file may hold fall back to the defaults */
  g_autofree char *path = ds_prefs_path ();
  g_assert_true (g_file_set_contents (path, "[explorer]\nsize=100\ndevice=tpu\nopacity=7\n", -1,
                                      NULL));
  g_autoptr (DsPrefs) r = ds_prefs_load ();
  g_assert_cmpint (r->size, ==, 0);
  g_assert_cmpstr (r->device, ==, "auto");
  g_assert_cmpfloat (r->opacity, ==, 0.6);
  g_assert_true (ds_prefs_save (p, &error)); /* back to the test's settings */
}

static GtkDropTarget *
window_drop_target (void)
{
  g_autoptr (GListModel) ctrls = gtk_widget_observe_controllers (GTK_WIDGET (win));
  for (guint i = 0; i < g_list_model_get_n_items (ctrls); i++)
    {
      g_autoptr (GObject) c = g_list_model_get_item (ctrls, i);
      if (GTK_IS_DROP_TARGET (c))
        return GTK_DROP_TARGET (c);
    }
  return NULL;
}

/* A file dropped on the window opens like one chosen in the dialog; a second
 * file in the same drop becomes the pair view's image. */
static void
test_drop_files (void)
{
  GtkDropTarget *drop = window_drop_target ();
  g_assert_nonnull (drop);
  GSList *files = g_slist_append (NULL, g_file_new_for_path (DS_TEST_DATA_DIR "/images/jpeg420.jpg"));
  files = g_slist_append (files, g_file_new_for_path (DS_TEST_DATA_DIR "/sd-input.png"));
  GValue value = G_VALUE_INIT;
  g_value_init (&value, GDK_TYPE_FILE_LIST);
  g_value_set_boxed (&value, files);
  gboolean handled = FALSE;
  g_signal_emit_by_name (drop, "drop", &value, 10.0, 10.0, &handled);
  g_value_unset (&value);
  g_slist_free_full (files, g_object_unref);
  g_assert_true (handled);
  wait_idle ();
  wait_idle ();
  const DsExploreView *v = ds_window_get_view (win);
  g_assert_null (ds_window_get_error (win));
  g_assert_true (v->pair);
  GdkTexture *img = ds_image_view_get_image (DS_IMAGE_VIEW (child ("image_view")));
  g_assert_nonnull (img);
  g_assert_cmpint (gdk_texture_get_width (img), !=, 128); /* the JPEG, not sd-input.png */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.close-second", NULL));
  open_image (DS_TEST_DATA_DIR "/sd-input.png", FALSE);
  g_assert_cmpint (gdk_texture_get_width (ds_image_view_get_image (DS_IMAGE_VIEW (child ("image_view")))), ==, 128);
}

/* A picture on the clipboard pastes as the image (through PNG bytes, the
 * same decoder as files). */
static void
test_paste_image (void)
{
  guint8 px[16 * 8 * 4];
  for (int i = 0; i < 16 * 8; i++)
    {
      px[4 * i] = (guint8) (i * 2);
      px[4 * i + 1] = 200;
      px[4 * i + 2] = 30;
      px[4 * i + 3] = 255;
    }
  g_autoptr (GBytes) bytes = g_bytes_new (px, sizeof px);
  g_autoptr (GdkTexture) tex = gdk_memory_texture_new (16, 8, GDK_MEMORY_R8G8B8A8, bytes, 16 * 4);
  gdk_clipboard_set_texture (gtk_widget_get_clipboard (GTK_WIDGET (win)), tex);
  const guint n0 = ds_window_get_n_views (win);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.paste", NULL));
  gint64 until = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (ds_window_get_n_views (win) == n0 && !ds_window_get_error (win)
         && g_get_monotonic_time () < until)
    g_main_context_iteration (NULL, TRUE);
  wait_idle ();
  g_assert_null (ds_window_get_error (win));
  GdkTexture *img = ds_image_view_get_image (DS_IMAGE_VIEW (child ("image_view")));
  g_assert_cmpint (gdk_texture_get_width (img), ==, 16);
  g_assert_cmpint (gdk_texture_get_height (img), ==, 8);
  g_assert_cmpstr (gtk_window_get_title (GTK_WINDOW (win)), ==, "pasted image — Diffscope");
  open_image (DS_TEST_DATA_DIR "/sd-input.png", FALSE);
}

/* Without a LLaVA folder the pane says how to get answers; with the tiny
 * LLaVA fixture, Enter in the prompt streams exactly the engine's answer into
 * the pane (with a mismatched prompt, its answer beside it), and Stop ends a
 * running answer. */
static void
test_answer_pane (void)
{
  DsAnswerView *av = DS_ANSWER_VIEW (child ("answer_view"));
  ds_window_set_llava (win, NULL);
  ds_window_ask (win);
  wait_idle ();
  g_assert_cmpuint (ds_window_get_n_answers (win), ==, 0);
  const char *question = "What is shown in this picture?";
  ds_window_set_prompt (win, question);
  ds_window_set_llava (win, DS_TEST_DATA_DIR "/llava-tiny");
  g_signal_emit_by_name (child ("prompt_entry"), "activate");
  wait_idle ();
  g_assert_null (ds_window_get_error (win));
  g_assert_cmpuint (ds_window_get_n_answers (win), ==, 1);
  g_assert_false (ds_answer_view_get_streaming (av));
  /* the same question through the engine directly */
  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  DsLlava *lv = NULL;
  g_assert_cmpint (ds_llava_open (DS_TEST_DATA_DIR "/llava-tiny", be, &lv, &err), ==, DS_OK);
  DsImage img = { 0 };
  g_assert_cmpint (ds_image_load (DS_TEST_DATA_DIR "/sd-input.png", &img, &err), ==, DS_OK);
  DsLlavaParams p;
  ds_llava_params_default (&p);
  DsLlavaAnswer ans = { 0 };
  g_assert_cmpint (ds_llava_ask (lv, &img, question, &p, &ans, &err), ==, DS_OK);
  g_assert_cmpuint (ans.n_ids, >, 0);
  g_assert_cmpstr (ds_answer_view_get_text (av, 0), ==, ans.text);
  g_assert_cmpstr (ds_answer_view_get_text (av, 1), ==, "");
  g_autofree char *full = g_strdup (ans.text);
  ds_llava_answer_clear (&ans);
  /* With a mismatched prompt both answers stand side by side: the prompt's in
   * column 0, the mismatched prompt's in column 1, each the engine's own. */
  const char *question2 = "Is there a dog on the sofa?";
  gtk_editable_set_text (GTK_EDITABLE (child ("prompt2_entry")), question2);
  g_signal_emit_by_name (child ("prompt_entry"), "activate");
  wait_idle ();
  g_assert_null (ds_window_get_error (win));
  g_assert_cmpuint (ds_window_get_n_answers (win), ==, 2);
  g_assert_cmpstr (ds_answer_view_get_text (av, 0), ==, full);
  g_assert_cmpint (ds_llava_ask (lv, &img, question2, &p, &ans, &err), ==, DS_OK);
  g_assert_cmpuint (ans.n_ids, >, 0);
  g_assert_cmpstr (ds_answer_view_get_text (av, 1), ==, ans.text);
  ds_llava_answer_clear (&ans);
  gtk_editable_set_text (GTK_EDITABLE (child ("prompt2_entry")), "");
  wait_idle ();
  ds_image_free (&img);
  ds_llava_free (lv);
  ds_backend_free (be);
  /* Stop right after asking: the job is dropped before it runs or stopped
   * between tokens; either way the pane stops streaming, shows at most a
   * prefix of the answer, and a stop is not an error. */
  ds_window_ask (win);
  g_assert_true (ds_answer_view_get_streaming (av));
  g_signal_emit_by_name (av, "stop");
  wait_idle ();
  g_assert_false (ds_answer_view_get_streaming (av));
  g_assert_cmpuint (ds_window_get_n_answers (win), <=, 3);
  g_assert_true (g_str_has_prefix (full, ds_answer_view_get_text (av, 0)));
  g_assert_null (ds_window_get_error (win));
  ds_window_set_llava (win, NULL);
}

/* With a fusion checkpoint (the test fixture of tests/data/fusion, which says
 * "trained": true) and the SD model it fits (tests/data/sd2-tiny) open, Enter
 * streams the CLIP-only answer into column 0 and the fused one into column 1,
 * each exactly the engine's (ds_llava_ask, ds_llava_ask_fused on a session of
 * the same model). A checkpoint that says "trained": false gets the CLIP-only
 * answer alone and the pane says why; one without a config.json is an error
 * in the window, and the window goes on. */
static void
test_fused_answer (void)
{
  DsAnswerView *av = DS_ANSWER_VIEW (child ("answer_view"));
  const char *question = "What is shown in this picture?";
  ds_window_open_model (win, DS_TEST_DATA_DIR "/sd2-tiny");
  wait_idle ();
  g_assert_null (ds_window_get_error (win));
  ds_window_set_prompt (win, question);
  ds_window_set_llava (win, DS_TEST_DATA_DIR "/llava-tiny");
  ds_window_set_fusion (win, DS_TEST_DATA_DIR "/fusion/concat");
  g_assert_null (ds_window_get_error (win));
  const guint n0 = ds_window_get_n_answers (win);
  g_signal_emit_by_name (child ("prompt_entry"), "activate");
  wait_idle ();
  g_assert_null (ds_window_get_error (win));
  g_assert_cmpuint (ds_window_get_n_answers (win), ==, n0 + 1);

  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  DsLlava *lv = NULL;
  DsFusion *f = NULL;
  DsPipeline *pipe = NULL;
  DsSession *s = NULL;
  g_assert_cmpint (ds_llava_open (DS_TEST_DATA_DIR "/llava-tiny", be, &lv, &err), ==, DS_OK);
  g_assert_cmpint (ds_fusion_open (DS_TEST_DATA_DIR "/fusion/concat", be, &f, &err), ==, DS_OK);
  g_assert_cmpint (ds_pipeline_open (DS_TEST_DATA_DIR "/sd2-tiny", be, &pipe, &err), ==, DS_OK);
  g_assert_cmpint (ds_session_new (pipe, NULL, &s, &err), ==, DS_OK);
  DsImage img = { 0 };
  g_assert_cmpint (ds_image_load (DS_TEST_DATA_DIR "/sd-input.png", &img, &err), ==, DS_OK);
  DsLlavaParams p;
  ds_llava_params_default (&p);
  DsLlavaAnswer clip = { 0 }, fused = { 0 };
  g_assert_cmpint (ds_llava_ask (lv, &img, question, &p, &clip, &err), ==, DS_OK);
  g_assert_cmpint (ds_llava_ask_fused (lv, s, f, &img, question, &p, &fused, &err), ==, DS_OK);
  g_assert_cmpuint (fused.n_ids, >, 0);
  g_assert_cmpstr (ds_answer_view_get_text (av, 0), ==, clip.text);
  g_assert_cmpstr (ds_answer_view_get_text (av, 1), ==, fused.text);

  /* "trained": false: the CLIP-only answer alone, and the pane says why */
  g_autofree char *dir = g_dir_make_tmp ("ds-ui-fusion-XXXXXX", NULL);
  g_autofree char *cfg = NULL, *weights = NULL;
  g_assert_true (g_file_get_contents (DS_TEST_DATA_DIR "/fusion/concat/config.json", &cfg,
                                      NULL, NULL));
  GString *untrained = g_string_new (cfg);
  g_assert_cmpuint (g_string_replace (untrained, "\"trained\": true", "\"trained\": false", 1),
                    ==, 1);
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *w_path = g_build_filename (dir, "fusion.safetensors", NULL);
  gsize n = 0;
  g_assert_true (g_file_get_contents (DS_TEST_DATA_DIR "/fusion/concat/fusion.safetensors",
                                      &weights, &n, NULL));
  g_assert_true (g_file_set_contents (cfg_path, untrained->str, -1, NULL));
  g_assert_true (g_file_set_contents (w_path, weights, (gssize) n, NULL));
  g_string_free (untrained, TRUE);
  ds_window_set_fusion (win, dir);
  g_assert_null (ds_window_get_error (win));
  g_signal_emit_by_name (child ("prompt_entry"), "activate");
  wait_idle ();
  g_assert_null (ds_window_get_error (win));
  g_assert_cmpstr (ds_answer_view_get_text (av, 0), ==, clip.text);
  g_assert_cmpstr (ds_answer_view_get_text (av, 1), ==, "");
  ds_answer_view_clear (av);
  g_assert_nonnull (strstr (ds_answer_view_get_placeholder (av), "\"trained\": false"));

  /* no config.json: an error, no checkpoint, and the window goes on */
  g_unlink (cfg_path);
  ds_window_set_fusion (win, dir);
  g_assert_nonnull (ds_window_get_error (win));
  g_assert_nonnull (strstr (ds_window_get_error (win), "config.json"));
  ds_window_set_fusion (win, NULL);
  ds_window_set_llava (win, NULL);
  ds_window_open_model (win, NULL);
  wait_idle ();
  g_assert_null (ds_window_get_error (win));

  g_unlink (w_path);
  g_rmdir (dir);
  ds_llava_answer_clear (&clip);
  ds_llava_answer_clear (&fused);
  ds_image_free (&img);
  ds_session_free (s);
  ds_fusion_free (f);
  ds_llava_free (lv);
  ds_backend_free (be);
}

/* The accessible name a screen reader would read for w, or NULL. */
static gboolean
has_accessible_name (GtkWidget *w)
{
  for (int up = 0; w && up < 4; up++, w = gtk_widget_get_parent (w))
    {
      if (gtk_test_accessible_has_property (GTK_ACCESSIBLE (w), GTK_ACCESSIBLE_PROPERTY_LABEL)
          || gtk_test_accessible_has_relation (GTK_ACCESSIBLE (w),
                                               GTK_ACCESSIBLE_RELATION_LABELLED_BY))
        return TRUE;
      if (GTK_IS_BUTTON (w) && gtk_button_get_label (GTK_BUTTON (w)))
        return TRUE;
      if (GTK_IS_CHECK_BUTTON (w) && gtk_check_button_get_label (GTK_CHECK_BUTTON (w)))
        return TRUE;
      if (GTK_IS_MENU_BUTTON (w) && gtk_menu_button_get_label (GTK_MENU_BUTTON (w)))
        return TRUE;
      if (gtk_widget_get_tooltip_text (w))
        return TRUE;
    }
  return FALSE;
}

static gboolean
is_inside (GtkWidget *w, GtkWidget *ancestor)
{
  return w == ancestor || gtk_widget_is_ancestor (w, ancestor);
}

static void
test_keyboard_only (void)
{
  GtkWidget *targets[] = { child ("prompt_entry"), child ("prompt2_entry"), child ("t_scale"),
                           child ("s_scale"), child ("seed_spin"), child ("ensemble_check"),
                           child ("token_strip"), child ("image_view"), child ("opacity_scale"),
                           child ("cmap_dropdown"), child ("map_grid") };
  gboolean reached[G_N_ELEMENTS (targets)] = { 0 };
  GtkWidget *first = NULL;
  int unnamed = 0;
  gtk_widget_grab_focus (child ("prompt_entry"));
  for (int step = 0; step < 400; step++)
    {
      GtkWidget *f = gtk_root_get_focus (GTK_ROOT (win));
      if (!f)
        break;
      if (step > 0 && f == first)
        break; /* went round */
      if (!first)
        first = f;
      for (guint i = 0; i < G_N_ELEMENTS (targets); i++)
        reached[i] |= is_inside (f, targets[i]);
      if (!has_accessible_name (f))
        {
          unnamed++;
          g_test_message ("no accessible name: %s", G_OBJECT_TYPE_NAME (f));
        }
      gtk_widget_child_focus (GTK_WIDGET (win), GTK_DIR_TAB_FORWARD);
    }
  for (guint i = 0; i < G_N_ELEMENTS (targets); i++)
    {
      if (!reached[i])
        g_test_message ("Tab never reached %s", gtk_widget_get_name (targets[i]));
      g_assert_true (reached[i]);
    }
  g_assert_cmpint (unnamed, ==, 0);

  /* Operate with the keys' own bindings: arrows move a scale, Enter on the
   * image picks its centre. */
  const guint n0 = ds_window_get_n_views (win);
  GtkWidget *s = child ("s_scale");
  double s0 = gtk_range_get_value (GTK_RANGE (s));
  gtk_widget_grab_focus (s);
  g_signal_emit_by_name (s, "move-slider", GTK_SCROLL_STEP_RIGHT);
  g_assert_cmpfloat (gtk_range_get_value (GTK_RANGE (s)), >, s0);
  wait_idle ();
  g_assert_cmpuint (ds_window_get_n_views (win), >, n0);
  GtkWidget *t = child ("t_scale");
  double t0 = gtk_range_get_value (GTK_RANGE (t));
  g_signal_emit_by_name (t, "move-slider", GTK_SCROLL_PAGE_LEFT);
  g_assert_cmpfloat (gtk_range_get_value (GTK_RANGE (t)), <, t0);
  wait_idle ();
  g_assert_cmpint (ds_window_get_view (win)->t, ==, (int) gtk_range_get_value (GTK_RANGE (t)));
  /* a word by keyboard: the strip's buttons are reachable and activatable */
  DsTokenStrip *strip = DS_TOKEN_STRIP (child ("token_strip"));
  ds_token_strip_select (strip, -1);
  wait_idle ();
  gboolean activated = FALSE;
  for (GtkWidget *w = gtk_widget_get_first_child (GTK_WIDGET (strip)); w && !activated;)
    {
      if (GTK_IS_TOGGLE_BUTTON (w) && gtk_widget_is_visible (w)
          && gtk_widget_get_focusable (w))
        activated = gtk_widget_activate (w);
      /* depth-first walk */
      GtkWidget *next = gtk_widget_get_first_child (w);
      while (!next && w && w != GTK_WIDGET (strip))
        {
          next = gtk_widget_get_next_sibling (w);
          if (!next)
            w = gtk_widget_get_parent (w);
        }
      w = next;
    }
  g_assert_true (activated);
  /* GtkButton's activation (Enter, space) shows the press for a moment,
   * then clicks: give it its time. */
  gint64 until = g_get_monotonic_time () + 2 * G_USEC_PER_SEC;
  while (ds_token_strip_get_selected (strip) < 0 && g_get_monotonic_time () < until)
    g_main_context_iteration (NULL, FALSE);
  wait_idle ();
  g_assert_cmpint (ds_token_strip_get_selected (strip), >=, 0);
}

int
main (int argc, char **argv)
{
  g_autofree char *cfg = g_dir_make_tmp ("ds-ui-cfg-XXXXXX", NULL);
  g_setenv ("DIFFSCOPE_CONFIG_DIR", cfg, TRUE);
  g_autofree char *ini = g_build_filename (cfg, "settings.ini", NULL);
  g_file_set_contents (ini, "[explorer]\nsize=128\ndevice=cpu\n", -1, NULL);
  /* GTK's test accessibility context keeps the properties a screen reader
   * would read, without a D-Bus session. */
  g_setenv ("GTK_A11Y", "test", TRUE);
  gtk_test_init (&argc, &argv, NULL);
  if (!gdk_display_get_default ())
    {
      g_print ("no display: skipped\n");
      return 77;
    }
  win = ds_window_new (NULL);
  gtk_window_present (GTK_WINDOW (win));
  ds_window_open_model (win, NULL);
  wait_idle ();
  g_test_add_func ("/explorer/maps-arrive", test_maps_arrive);
  g_test_add_func ("/explorer/s-change-runs-no-network", test_s_change_runs_no_network);
  g_test_add_func ("/explorer/word-pick-runs-no-network", test_word_pick_runs_no_network);
  g_test_add_func ("/explorer/point-query-runs-no-network", test_point_query_runs_no_network);
  g_test_add_func ("/explorer/rapid-timesteps-last-wins", test_rapid_timesteps_last_wins);
  g_test_add_func ("/explorer/bad-image-keeps-working", test_bad_image_keeps_working);
  g_test_add_func ("/explorer/bad-model-keeps-working", test_bad_model_keeps_working);
  g_test_add_func ("/explorer/mismatched-prompt", test_mismatched_prompt);
  g_test_add_func ("/explorer/pair-view", test_pair_view);
  g_test_add_func ("/explorer/exports", test_exports);
  g_test_add_func ("/explorer/drop-files", test_drop_files);
  g_test_add_func ("/explorer/paste-image", test_paste_image);
  g_test_add_func ("/explorer/answer-pane", test_answer_pane);
  g_test_add_func ("/explorer/fused-answer", test_fused_answer);
  g_test_add_func ("/explorer/prefs-round-trip", test_prefs_round_trip);
  g_test_add_func ("/explorer/keyboard-only", test_keyboard_only);
  int rc = g_test_run ();
  gtk_window_destroy (GTK_WINDOW (win));
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
  g_unlink (ini);
  g_rmdir (cfg);
  return rc;
}
