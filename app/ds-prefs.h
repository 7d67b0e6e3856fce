/* ds-prefs.h: the explorer's preferences, kept across runs in
 * $XDG_CONFIG_HOME/diffscope/settings.ini (a GKeyFile; no schema to install).
 * DIFFSCOPE_CONFIG_DIR overrides the folder (tests use a temporary one). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *device;        /* "auto", "cpu" or "cuda" */
  int size;            /* model input side; 0 = the model's native size */
  char **blocks;       /* default blocks (paper names), NULL-terminated */
  char *last_model;    /* the last model folder opened, or NULL */
  char *llava;         /* a LLaVA-1.5 folder (llava-hf layout) for answers, or NULL */
  char *fusion;        /* a fusion checkpoint folder (docs/models.md §7.9), or NULL */
  char *colormap;      /* "inferno", "viridis", "jet", "grey", "greys" */
  double opacity;      /* overlay opacity 0..1 */
} DsPrefs;

/* Loads the file (missing or unreadable: the defaults). transfer full. */
DsPrefs *ds_prefs_load (void);
/* Writes atomically; FALSE with error set when the folder cannot be written. */
gboolean ds_prefs_save (const DsPrefs *p, GError **error);
void ds_prefs_free (DsPrefs *p);
char *ds_prefs_path (void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (DsPrefs, ds_prefs_free)

G_END_DECLS
