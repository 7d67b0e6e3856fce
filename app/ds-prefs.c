/* ds-prefs.c: see ds-prefs.h. */
#include "ds-prefs.h"

#include <errno.h>
#include <glib/gstdio.h>

#define GROUP "explorer"
#define DEFAULT_BLOCK "U-L1-R1-B0-Cross-Q"

char *
ds_prefs_path (void)
{
  const char *dir = g_getenv ("DIFFSCOPE_CONFIG_DIR");
  if (dir && *dir)
    return g_build_filename (dir, "settings.ini", NULL);
  return g_build_filename (g_get_user_config_dir (), "diffscope", "settings.ini", NULL);
}

DsPrefs *
ds_prefs_load (void)
{
  DsPrefs *p = g_new0 (DsPrefs, 1);
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autofree char *path = ds_prefs_path ();
  gboolean ok = g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, NULL);
  p->device = ok ? g_key_file_get_string (kf, GROUP, "device", NULL) : NULL;
  if (!p->device || (g_strcmp0 (p->device, "auto") && g_strcmp0 (p->device, "cpu")
                     && g_strcmp0 (p->device, "cuda")))
    {
      g_free (p->device);
      p->device = g_strdup ("auto");
    }
  p->size = ok ? g_key_file_get_integer (kf, GROUP, "size", NULL) : 0;
  if (p->size < 0 || p->size % 64 || p->size > 2048)
    p->size = 0;
  p->blocks = ok ? g_key_file_get_string_list (kf, GROUP, "blocks", NULL, NULL) : NULL;
  if (!p->blocks || !p->blocks[0])
    {
      g_strfreev (p->blocks);
      p->blocks = g_strsplit (DEFAULT_BLOCK, ",", -1);
    }
  p->last_model = ok ? g_key_file_get_string (kf, GROUP, "last-model", NULL) : NULL;
  if (p->last_model && !*p->last_model)
    g_clear_pointer (&p->last_model, g_free);
  p->llava = ok ? g_key_file_get_string (kf, GROUP, "llava", NULL) : NULL;
  if (p->llava && !*p->llava)
    g_clear_pointer (&p->llava, g_free);
  p->fusion = ok ? g_key_file_get_string (kf, GROUP, "fusion", NULL) : NULL;
  if (p->fusion && !*p->fusion)
    g_clear_pointer (&p->fusion, g_free);
  p->colormap = ok ? g_key_file_get_string (kf, GROUP, "colormap", NULL) : NULL;
  if (!p->colormap)
    p->colormap = g_strdup ("inferno");
  GError *e = NULL;
  p->opacity = ok ? g_key_file_get_double (kf, GROUP, "opacity", &e) : 0.6;
  if (e || !(p->opacity >= 0 && p->opacity <= 1))
    p->opacity = 0.6;
  g_clear_error (&e);
  return p;
}

gboolean
ds_prefs_save (const DsPrefs *p, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_key_file_set_string (kf, GROUP, "device", p->device ? p->device : "auto");
  g_key_file_set_integer (kf, GROUP, "size", p->size);
  if (p->blocks)
    g_key_file_set_string_list (kf, GROUP, "blocks", (const char *const *) p->blocks,
                                g_strv_length (p->blocks));
  g_key_file_set_string (kf, GROUP, "last-model", p->last_model ? p->last_model : "");
  g_key_file_set_string (kf, GROUP, "llava", p->llava ? p->llava : "");
  g_key_file_set_string (kf, GROUP, "fusion", p->fusion ? p->fusion : "");
  g_key_file_set_string (kf, GROUP, "colormap", p->colormap ? p->colormap : "inferno");
  g_key_file_set_double (kf, GROUP, "opacity", p->opacity);
  g_autofree char *path = ds_prefs_path ();
  g_autofree char *dir = g_path_get_dirname (path);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      int e = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e),
                   "cannot create %s: %s", dir, g_strerror (e));
      return FALSE;
    }
  return g_key_file_save_to_file (kf, path, error); /* g_file_set_contents: atomic */
}

void
ds_prefs_free (DsPrefs *p)
{
  if (!p)
    return;
  g_free (p->device);
  g_strfreev (p->blocks);
  g_free (p->last_model);
  g_free (p->llava);
  g_free (p->fusion);
  g_free (p->colormap);
  g_free (p);
}
