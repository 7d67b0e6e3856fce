/* ds-block-picker.c: choose several UNet blocks by the paper's names.
 *
 * A search entry filters a GtkListBox of check buttons, one per block name
 * (case-insensitive; every space-separated word of the filter must occur in
 * the name, so "u-l1 cross" finds U-L1-R*-B*-Cross-*). Filtering never
 * changes what is chosen. Below the list a summary says what is chosen, and
 * a Clear button unchooses everything. The list scrolls beyond 400 px, so
 * the picker fits in a GtkMenuButton's popover or in a sidebar. Typing
 * anywhere in the picker goes to the search entry; Escape clears it.
 *
 * The rows are not focusable: Tab and the arrow keys (Up/Down, Home/End,
 * Page Up/Down) move from check button to check button, skipping filtered
 * rows, and space toggles the focused one. */

#include "ds-block-picker.h"

#include <string.h>

struct _DsBlockPicker
{
  GtkWidget       parent_instance;

  /* template */
  GtkWidget      *box;
  GtkSearchEntry *search;
  GtkListBox     *list;
  GtkLabel       *summary;
  GtkWidget      *clear_button;

  GPtrArray      *names;    /* char *, owned */
  GPtrArray      *checks;   /* GtkCheckButton, owned by the list */
  char          **filter;   /* casefolded words of the search text */
  gboolean        syncing;  /* TRUE while we set the checks ourselves */
};

G_DEFINE_FINAL_TYPE (DsBlockPicker, ds_block_picker, GTK_TYPE_WIDGET)

enum {
  CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

#define INDEX_KEY "ds-block-index"
#define SUMMARY_MAX_NAMES 3

static guint
count_chosen (DsBlockPicker *self)
{
  guint n = 0;

  for (guint i = 0; i < self->checks->len; i++)
    n += gtk_check_button_get_active (g_ptr_array_index (self->checks, i));
  return n;
}

static void
update_summary (DsBlockPicker *self)
{
  g_autoptr(GString) text = g_string_new (NULL);
  guint n = count_chosen (self);
  guint listed = 0;

  if (n == 0)
    g_string_append (text, "No block chosen");
  else if (n <= SUMMARY_MAX_NAMES)
    g_string_append (text, "Chosen: ");
  else
    g_string_append_printf (text, "%u chosen: ", n);

  for (guint i = 0; i < self->checks->len && listed < SUMMARY_MAX_NAMES; i++)
    {
      if (!gtk_check_button_get_active (g_ptr_array_index (self->checks, i)))
        continue;
      if (listed++ > 0)
        g_string_append (text, ", ");
      g_string_append (text, g_ptr_array_index (self->names, i));
    }
  if (n > SUMMARY_MAX_NAMES)
    g_string_append (text, ", …");

  gtk_label_set_text (self->summary, text->str);
  gtk_widget_set_sensitive (self->clear_button, n > 0);
}

static void
emit_changed (DsBlockPicker *self)
{
  update_summary (self);
  g_signal_emit (self, signals[CHANGED], 0);
}

/* Sets every check to whether its name is in @chosen (NULL: none);
 * returns whether any check changed. */
static gboolean
apply_chosen (DsBlockPicker *self,
              GHashTable    *chosen)
{
  gboolean changed = FALSE;

  self->syncing = TRUE;
  for (guint i = 0; i < self->checks->len; i++)
    {
      GtkCheckButton *check = g_ptr_array_index (self->checks, i);
      gboolean want = chosen && g_hash_table_contains (chosen, g_ptr_array_index (self->names, i));

      if (gtk_check_button_get_active (check) != want)
        {
          gtk_check_button_set_active (check, want);
          changed = TRUE;
        }
    }
  self->syncing = FALSE;
  return changed;
}

static void
on_check_toggled (GtkCheckButton *check,
                  DsBlockPicker  *self)
{
  if (self->syncing)
    return;
  emit_changed (self);
}

static gboolean
filter_row (GtkListBoxRow *row,
            gpointer       user_data)
{
  DsBlockPicker *self = user_data;
  int index = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (row), INDEX_KEY));
  g_autofree char *folded = NULL;

  if (self->filter == NULL || self->filter[0] == NULL)
    return TRUE;
  if (index < 0 || index >= (int) self->names->len)
    return TRUE;

  folded = g_utf8_casefold (g_ptr_array_index (self->names, index), -1);
  for (char **word = self->filter; *word; word++)
    if (strstr (folded, *word) == NULL)
      return FALSE;
  return TRUE;
}

static void
on_search_changed (DsBlockPicker  *self,
                   GtkSearchEntry *entry)
{
  g_autofree char *folded = g_utf8_casefold (gtk_editable_get_text (GTK_EDITABLE (entry)), -1);

  g_clear_pointer (&self->filter, g_strfreev);
  self->filter = g_strsplit_set (g_strstrip (folded), " \t", -1);
  /* drop the empty words that repeated spaces leave */
  {
    char **src = self->filter, **dst = self->filter;

    for (; *src; src++)
      {
        if (**src)
          *dst++ = *src;
        else
          g_free (*src);
      }
    *dst = NULL;
  }
  gtk_list_box_invalidate_filter (self->list);
}

static void
on_stop_search (DsBlockPicker  *self,
                GtkSearchEntry *entry)
{
  gtk_editable_set_text (GTK_EDITABLE (entry), "");
}

static void
on_clear_clicked (DsBlockPicker *self,
                  GtkButton     *button)
{
  if (apply_chosen (self, NULL))
    emit_changed (self);
}

static gboolean
row_is_shown (GtkWidget *row)
{
  return gtk_widget_get_visible (row) && gtk_widget_get_child_visible (row);
}

/* The list box's cursor keys (Up/Down, Home/End, Page Up/Down) move its
 * cursor row, which cannot take the focus here; move the focus between the
 * shown check buttons instead. */
static void
on_list_move_cursor (GtkListBox      *list,
                     GtkMovementStep  step,
                     int              count,
                     gboolean         extend,
                     gboolean         modify,
                     DsBlockPicker   *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkWidget *focus = root ? gtk_root_get_focus (root) : NULL;
  int n = (int) self->checks->len;
  int from = -1, target = -1, dir, moves;

  for (int i = 0; i < n && focus; i++)
    {
      GtkWidget *check = g_ptr_array_index (self->checks, i);

      if (focus == check || gtk_widget_is_ancestor (focus, check))
        from = i;
    }
  if (from < 0 || count == 0)
    return;

  dir = count > 0 ? 1 : -1;
  switch (step)
    {
    case GTK_MOVEMENT_BUFFER_ENDS:
      from = dir > 0 ? n : -1;   /* search back from the far end */
      dir = -dir;
      moves = 1;
      break;
    case GTK_MOVEMENT_PAGES:
      moves = 10 * ABS (count);
      break;
    case GTK_MOVEMENT_DISPLAY_LINES:
    default:
      moves = ABS (count);
      break;
    }

  for (int i = from + dir; i >= 0 && i < n && moves > 0; i += dir)
    if (row_is_shown (gtk_widget_get_parent (g_ptr_array_index (self->checks, i))))
      {
        target = i;
        moves--;
      }
  if (target >= 0)
    gtk_widget_grab_focus (g_ptr_array_index (self->checks, target));
  g_signal_stop_emission_by_name (list, "move-cursor");
}

static void
remove_rows (DsBlockPicker *self)
{
  GtkWidget *child;

  g_ptr_array_set_size (self->checks, 0);
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->list))))
    {
      if (GTK_IS_LIST_BOX_ROW (child))
        gtk_list_box_remove (self->list, child);
      else
        break;  /* only the placeholder is left */
    }
}

static void
ds_block_picker_dispose (GObject *object)
{
  DsBlockPicker *self = DS_BLOCK_PICKER (object);

  if (self->checks)
    g_ptr_array_set_size (self->checks, 0);
  gtk_widget_dispose_template (GTK_WIDGET (self), DS_TYPE_BLOCK_PICKER);

  G_OBJECT_CLASS (ds_block_picker_parent_class)->dispose (object);
}

static void
ds_block_picker_finalize (GObject *object)
{
  DsBlockPicker *self = DS_BLOCK_PICKER (object);

  g_clear_pointer (&self->names, g_ptr_array_unref);
  g_clear_pointer (&self->checks, g_ptr_array_unref);
  g_clear_pointer (&self->filter, g_strfreev);

  G_OBJECT_CLASS (ds_block_picker_parent_class)->finalize (object);
}

static void
ds_block_picker_class_init (DsBlockPickerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = ds_block_picker_dispose;
  object_class->finalize = ds_block_picker_finalize;

  /**
   * DsBlockPicker::changed:
   * @self: the picker
   *
   * Emitted once whenever the set of chosen blocks changes: a check button
   * toggled, Clear, set_selected() with a different set, or set_blocks()
   * dropping chosen names. Never emitted when nothing changed.
   */
  signals[CHANGED] =
    g_signal_new ("changed", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/diffscope/Diffscope/ds-block-picker.ui");
  gtk_widget_class_bind_template_child (widget_class, DsBlockPicker, box);
  gtk_widget_class_bind_template_child (widget_class, DsBlockPicker, search);
  gtk_widget_class_bind_template_child (widget_class, DsBlockPicker, list);
  gtk_widget_class_bind_template_child (widget_class, DsBlockPicker, summary);
  gtk_widget_class_bind_template_child (widget_class, DsBlockPicker, clear_button);
  gtk_widget_class_bind_template_callback (widget_class, on_search_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_stop_search);
  gtk_widget_class_bind_template_callback (widget_class, on_clear_clicked);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "blockpicker");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
}

static void
ds_block_picker_init (DsBlockPicker *self)
{
  self->names = g_ptr_array_new_with_free_func (g_free);
  self->checks = g_ptr_array_new ();

  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_list_box_set_filter_func (self->list, filter_row, self, NULL);
  g_signal_connect_object (self->list, "move-cursor", G_CALLBACK (on_list_move_cursor), self, 0);
  gtk_search_entry_set_key_capture_widget (self->search, GTK_WIDGET (self));
  gtk_accessible_update_property (GTK_ACCESSIBLE (self),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, "UNet blocks",
                                  -1);
}

/**
 * ds_block_picker_new:
 *
 * Returns: (transfer floating): a new picker with no blocks
 */
GtkWidget *
ds_block_picker_new (void)
{
  return g_object_new (DS_TYPE_BLOCK_PICKER, NULL);
}

/**
 * ds_block_picker_set_blocks:
 * @self: the picker
 * @names: (array length=n): the block names, in list order; copied
 * @n: how many
 *
 * Replaces the list. Chosen names that are in the new list stay chosen;
 * ::changed is emitted when some chosen name is gone.
 */
void
ds_block_picker_set_blocks (DsBlockPicker     *self,
                            const char *const *names,
                            int                n)
{
  g_autoptr(GHashTable) chosen = NULL;
  g_auto(GStrv) before = NULL;
  guint n_before;

  g_return_if_fail (DS_IS_BLOCK_PICKER (self));
  g_return_if_fail (n >= 0);
  g_return_if_fail (names != NULL || n == 0);

  before = ds_block_picker_get_selected (self);
  n_before = g_strv_length (before);
  chosen = g_hash_table_new (g_str_hash, g_str_equal);
  for (char **name = before; *name; name++)
    g_hash_table_add (chosen, *name);

  remove_rows (self);
  g_ptr_array_set_size (self->names, 0);

  for (int i = 0; i < n; i++)
    {
      const char *name = names[i] ? names[i] : "";
      GtkWidget *row = gtk_list_box_row_new ();
      GtkWidget *check = gtk_check_button_new_with_label (name);

      g_ptr_array_add (self->names, g_strdup (name));
      gtk_widget_set_focusable (row, FALSE);
      gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), FALSE);
      g_object_set_data (G_OBJECT (row), INDEX_KEY, GINT_TO_POINTER (i));
      gtk_check_button_set_active (GTK_CHECK_BUTTON (check),
                                   g_hash_table_contains (chosen, name));
      g_signal_connect_object (check, "toggled", G_CALLBACK (on_check_toggled), self, 0);
      gtk_list_box_row_set_child (GTK_LIST_BOX_ROW (row), check);
      gtk_list_box_append (self->list, row);
      g_ptr_array_add (self->checks, check);
    }

  if (count_chosen (self) != n_before)
    emit_changed (self);
  else
    update_summary (self);
}

/**
 * ds_block_picker_set_selected:
 * @self: the picker
 * @names: (array zero-terminated=1) (nullable): the names to choose; names
 *   not in the list are ignored; NULL chooses none
 *
 * Chooses exactly @names; emits ::changed once if that changes the choice.
 */
void
ds_block_picker_set_selected (DsBlockPicker     *self,
                              const char *const *names)
{
  g_autoptr(GHashTable) chosen = NULL;

  g_return_if_fail (DS_IS_BLOCK_PICKER (self));

  chosen = g_hash_table_new (g_str_hash, g_str_equal);
  for (const char *const *name = names; name && *name; name++)
    g_hash_table_add (chosen, (gpointer) *name);

  if (apply_chosen (self, chosen))
    emit_changed (self);
}

/**
 * ds_block_picker_get_selected:
 * @self: the picker
 *
 * Returns: (transfer full) (array zero-terminated=1): the chosen names in
 *   list order; free with g_strfreev()
 */
char **
ds_block_picker_get_selected (DsBlockPicker *self)
{
  g_autoptr(GStrvBuilder) builder = NULL;

  g_return_val_if_fail (DS_IS_BLOCK_PICKER (self), NULL);

  builder = g_strv_builder_new ();
  for (guint i = 0; i < self->checks->len; i++)
    if (gtk_check_button_get_active (g_ptr_array_index (self->checks, i)))
      g_strv_builder_add (builder, g_ptr_array_index (self->names, i));
  return g_strv_builder_end (builder);
}
