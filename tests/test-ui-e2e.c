/* test-ui-e2e.c: the explorer from the outside. Starts `diffscope --demo` on
 * an image with a prompt, twice: once picking a word (its heat map over the
 * image) and once without; each run saves a screenshot when the maps are on
 * screen (--screenshot) with the regions of the picture and the map grid in
 * FILE.json. Checks that the picture and map regions hold content (many
 * colours, not a flat fill) and that the word's heat map changed the picture
 * region. argv[1]: the diffscope binary. Exits 77 without a display.
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>

#include "ds-image.h"

#ifndef DS_TEST_DATA_DIR
#define DS_TEST_DATA_DIR "tests/data"
#endif

static int failures;

#define CHECK(cond, ...)                                                                           \
  do                                                                                               \
    {                                                                                              \
      if (!(cond))                                                                                 \
        {                                                                                          \
          failures++;                                                                              \
          printf ("FAIL %s:%d: ", __FILE__, __LINE__);                                             \
          printf (__VA_ARGS__);                                                                    \
          printf ("\n");                                                                           \
        }                                                                                          \
    }                                                                                              \
  while (0)

typedef struct {
  int x, y, w, h;
} Rect;

static gboolean
json_rect (const char *json, const char *key, Rect *r)
{
  g_autofree char *pat = g_strdup_printf ("\"%s\": [", key);
  const char *p = strstr (json, pat);
  return p && sscanf (p + strlen (pat), "%d, %d, %d, %d", &r->x, &r->y, &r->w, &r->h) == 4;
}

/* Distinct colours (quantised to 5 bits a channel) and the standard deviation
 * of the grey level inside r. */
static void
region_stats (const DsImage *im, Rect r, int *distinct, double *sd)
{
  static guint8 seen[1 << 15];
  memset (seen, 0, sizeof seen);
  *distinct = 0;
  double s = 0, s2 = 0;
  long n = 0;
  for (int y = MAX (r.y, 0); y < MIN (r.y + r.h, im->height); y++)
    for (int x = MAX (r.x, 0); x < MIN (r.x + r.w, im->width); x++)
      {
        const guint8 *p = im->rgb + 3 * ((size_t) y * im->width + x);
        int key = (p[0] >> 3) << 10 | (p[1] >> 3) << 5 | p[2] >> 3;
        *distinct += !seen[key];
        seen[key] = 1;
        double g = (p[0] + p[1] + p[2]) / 3.0;
        s += g;
        s2 += g * g;
        n++;
      }
  *sd = n ? sqrt (fmax (s2 / n - (s / n) * (s / n), 0)) : 0;
}

static gboolean
run_app (const char *bin, const char *cfg, const char *shot, int word, char **json)
{
  g_autofree char *word_arg = g_strdup_printf ("--word=%d", word);
  const char *argv[] = { bin, "--demo", "--prompt", "a red disc above a triangle", word_arg,
                         "--screenshot", shot, DS_TEST_DATA_DIR "/sd-input.png", NULL };
  g_auto (GStrv) env = g_get_environ ();
  env = g_environ_setenv (env, "DIFFSCOPE_CONFIG_DIR", cfg, TRUE);
  g_autofree char *out = NULL, *err = NULL;
  int status = 0;
  g_autoptr (GError) error = NULL;
  if (!g_spawn_sync (NULL, (char **) argv, env, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status,
                     &error))
    {
      printf ("FAIL: cannot start %s: %s\n", bin, error->message);
      return FALSE;
    }
  if (!g_spawn_check_wait_status (status, &error))
    {
      printf ("FAIL: %s exited badly: %s\n%s%s", bin, error->message, out, err);
      return FALSE;
    }
  g_autofree char *json_path = g_strconcat (shot, ".json", NULL);
  if (!g_file_get_contents (json_path, json, NULL, &error))
    {
      printf ("FAIL: no %s: %s\n%s", json_path, error->message, err);
      return FALSE;
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      printf ("usage: test-ui-e2e PATH/TO/diffscope\n");
      return 2;
    }
  if (!g_getenv ("DISPLAY") && !g_getenv ("WAYLAND_DISPLAY"))
    {
      printf ("no display: skipped\n");
      return 77;
    }
  g_autofree char *dir = g_dir_make_tmp ("ds-e2e-XXXXXX", NULL);
  g_autofree char *ini = g_build_filename (dir, "settings.ini", NULL);
  /* 256: a quarter of the model's own 512, for speed; the maps look alike */
  g_file_set_contents (ini, "[explorer]\nsize=256\ndevice=cpu\n", -1, NULL);
  g_autofree char *with = g_build_filename (dir, "with-word.png", NULL);
  g_autofree char *without = g_build_filename (dir, "without.png", NULL);
  g_autofree char *json_with = NULL, *json_without = NULL;
  if (!run_app (argv[1], dir, with, 2, &json_with)
      || !run_app (argv[1], dir, without, -1, &json_without))
    return 1;

  DsImage a = { 0 }, b = { 0 };
  DsError err = { 0 };
  CHECK (!ds_image_load (with, &a, &err), "%s", err.message);
  CHECK (!ds_image_load (without, &b, &err), "%s", err.message);
  Rect pic, maps, pic2;
  CHECK (json_rect (json_with, "picture", &pic) && json_rect (json_with, "maps", &maps)
             && json_rect (json_without, "picture", &pic2),
         "regions in %s", json_with);
  CHECK (strstr (json_with, "\"overlay\": true") && strstr (json_without, "\"overlay\": false"),
         "overlay shown with --word only: %s / %s", json_with, json_without);
  CHECK (strstr (json_with, "\"blocks\": 1"), "one block of maps: %s", json_with);
  if (failures || !a.rgb || !b.rgb)
    return 1;
  CHECK (pic.w >= 100 && pic.h >= 100, "picture region %dx%d", pic.w, pic.h);
  CHECK (maps.w >= 400 && maps.h >= 100, "map region %dx%d", maps.w, maps.h);
  int distinct;
  double sd;
  region_stats (&b, pic2, &distinct, &sd);
  printf ("picture without overlay: %d colours, grey sd %.1f\n", distinct, sd);
  CHECK (distinct >= 200 && sd >= 10, "the picture region holds the image");
  region_stats (&a, maps, &distinct, &sd);
  printf ("maps: %d colours, grey sd %.1f\n", distinct, sd);
  /* Captions and the background are greys (R = G = B): at most 32 of the
   * 5-bit colours. Three PCA maps of 8×8 cells and a heat map give hundreds. */
  CHECK (distinct >= 200 && sd >= 10, "the map region holds PCA maps");
  /* The heat map over the picture: the same region differs from the plain
   * image (same size and place in both runs). */
  CHECK (pic.x == pic2.x && pic.y == pic2.y && pic.w == pic2.w && pic.h == pic2.h,
         "picture at the same place in both runs");
  double diff = 0;
  long n = 0;
  for (int y = pic.y; y < pic.y + pic.h && y < a.height; y++)
    for (int x = pic.x; x < pic.x + pic.w && x < a.width; x++)
      for (int c = 0; c < 3; c++, n++)
        diff += fabs ((double) a.rgb[3 * ((size_t) y * a.width + x) + c]
                      - b.rgb[3 * ((size_t) y * b.width + x) + c]);
  diff /= MAX (n, 1);
  printf ("heat overlay: mean |difference| %.1f grey levels in the picture\n", diff);
  CHECK (diff >= 10, "the word's heat map shows over the picture");
  ds_image_free (&a);
  ds_image_free (&b);
  if (failures)
    {
      printf ("with the word: %s\nwithout: %s\nscreenshots kept in %s\n", json_with,
              json_without, dir);
      return 1;
    }
  g_unlink (with);
  g_unlink (without);
  g_autofree char *j1 = g_strconcat (with, ".json", NULL), *j2 = g_strconcat (without, ".json", NULL);
  g_unlink (j1);
  g_unlink (j2);
  g_unlink (ini);
  g_rmdir (dir);
  printf ("%s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
