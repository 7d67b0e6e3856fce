/* test-ui-block-picker.c: DsBlockPicker: choosing blocks by name, the
 * chosen names in list order, ::changed only on real changes, set_blocks()
 * keeping what still exists, the filter hiding rows without touching the
 * choice, Clear, the summary, accessible labels and keyboard focus.
 * Exits 77 without a display. */

#include "ds-block-picker.h"
#include "ds-resources.h"
#include "ds-test-ui.h"

static const char *const blocks[] = {
  "D-L0-R0-Res-Out",
  "D-L0-R0-B0-Self-Q",
  "D-L0-R0-B0-Cross-Q",
  "M-L0-R0-B0-Self-K",
  "M-L0-R0-Res-Out",
  "U-L1-R0-B0-Cross-Q",
  "U-L1-R1-B0-Cross-Q",
  "U-L1-R1-B0-Cross-K",
  "U-L1-R1-B0-Self-Q",
  "U-L2-R2-Res-Out",
  NULL
};
#define N_BLOCKS ((int) G_N_ELEMENTS (blocks) - 1)

/* The summary: the label below the list that is not a check's or a row's. */
static const char *
summary_text (GtkWidget *picker)
{
  g_autoptr(GPtrArray) labels = ds_test_ui_find_all (picker, GTK_TYPE_LABEL);

  for (guint i = 0; i < labels->len; i++)
    {
      const char *text = gtk_label_get_text (g_ptr_array_index (labels, i));

      if (g_str_has_prefix (text, "No block chosen") || g_str_has_prefix (text, "Chosen: ") ||
          strstr (text, " chosen: "))
        return text;
    }
  return NULL;
}

/* A picker in its own window (ds-test-ui.h), counting its ::changed signals. */
static GtkWidget *
new_picker (int *changed)
{
  GtkWidget *picker = ds_block_picker_new ();

  g_signal_connect_swapped (picker, "changed", G_CALLBACK (g_atomic_int_inc), changed);
  return ds_test_ui_show (picker, -1, -1);
}

static void
assert_selected (GtkWidget         *picker,
                 const char *const *expected)
{
  g_auto(GStrv) got = ds_block_picker_get_selected (DS_BLOCK_PICKER (picker));

  g_assert_nonnull (got);
  g_assert_cmpstrv (got, expected);
}

static const char *const none[] = { NULL };

static void
test_set_and_get (void)
{
  int changed = 0;
  g_autoptr(DsTestUiWidget) picker = new_picker (&changed);
  g_autoptr(GPtrArray) checks = NULL;
  const char *const want[] = { "U-L2-R2-Res-Out", "D-L0-R0-Res-Out", "not-a-block", NULL };
  const char *const same[] = { "D-L0-R0-Res-Out", "U-L2-R2-Res-Out", NULL };
  const char *const in_order[] = { "D-L0-R0-Res-Out", "U-L2-R2-Res-Out", NULL };

  assert_selected (picker, none);
  g_assert_cmpstr (summary_text (picker), ==, "No block chosen");
  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), blocks, N_BLOCKS);
  g_assert_cmpint (changed, ==, 0);
  checks = ds_test_ui_find_all (picker, GTK_TYPE_CHECK_BUTTON);
  g_assert_cmpuint (checks->len, ==, N_BLOCKS);
  for (int i = 0; i < N_BLOCKS; i++)
    g_assert_cmpstr (gtk_check_button_get_label (g_ptr_array_index (checks, i)), ==, blocks[i]);

  /* unknown names are ignored; the result is in list order */
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), want);
  g_assert_cmpint (changed, ==, 1);
  assert_selected (picker, in_order);
  g_assert_true (gtk_check_button_get_active (g_ptr_array_index (checks, 0)));
  g_assert_true (gtk_check_button_get_active (g_ptr_array_index (checks, 9)));
  g_assert_cmpstr (summary_text (picker), ==, "Chosen: D-L0-R0-Res-Out, U-L2-R2-Res-Out");

  /* the same set again, in another order: no signal */
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), same);
  g_assert_cmpint (changed, ==, 1);

  /* NULL (or an empty list) chooses none */
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), NULL);
  g_assert_cmpint (changed, ==, 2);
  assert_selected (picker, none);
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), none);
  g_assert_cmpint (changed, ==, 2);

  /* toggling a check (space on it) emits and shows in get_selected */
  g_assert_true (ds_test_ui_press (g_ptr_array_index (checks, 6)));
  g_assert_cmpint (changed, ==, 3);
  {
    const char *const one[] = { "U-L1-R1-B0-Cross-Q", NULL };

    assert_selected (picker, one);
  }
  g_assert_true (ds_test_ui_press (g_ptr_array_index (checks, 6)));
  g_assert_cmpint (changed, ==, 4);
  assert_selected (picker, none);

  /* many: the summary counts and lists the first three */
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), blocks);
  g_assert_cmpint (changed, ==, 5);
  {
    g_auto(GStrv) got = ds_block_picker_get_selected (DS_BLOCK_PICKER (picker));

    g_assert_cmpuint (g_strv_length (got), ==, N_BLOCKS);
  }
  g_assert_cmpstr (summary_text (picker), ==,
                   "10 chosen: D-L0-R0-Res-Out, D-L0-R0-B0-Self-Q, D-L0-R0-B0-Cross-Q, …");
}

static void
test_set_blocks_keeps (void)
{
  int changed = 0;
  g_autoptr(DsTestUiWidget) picker = new_picker (&changed);
  const char *const chosen[] = { "M-L0-R0-Res-Out", "U-L1-R1-B0-Cross-K", NULL };
  const char *const fewer[] = { "U-L1-R1-B0-Cross-K", "U-L2-R2-Res-Out", "M-L0-R0-Res-Out" };
  const char *const other[] = { "U-L2-R2-Res-Out", "U-L1-R1-B0-Cross-K", "X-new" };
  const char *const kept_a[] = { "U-L1-R1-B0-Cross-K", "M-L0-R0-Res-Out", NULL };
  const char *const kept_b[] = { "U-L1-R1-B0-Cross-K", NULL };

  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), blocks, N_BLOCKS);
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), chosen);
  g_assert_cmpint (changed, ==, 1);

  /* every chosen name still there (reordered): kept, no signal, new order */
  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), fewer, G_N_ELEMENTS (fewer));
  g_assert_cmpint (changed, ==, 1);
  assert_selected (picker, kept_a);

  /* one gone: the rest kept, one signal */
  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), other, G_N_ELEMENTS (other));
  g_assert_cmpint (changed, ==, 2);
  assert_selected (picker, kept_b);
  {
    g_autoptr(GPtrArray) checks = ds_test_ui_find_all (picker, GTK_TYPE_CHECK_BUTTON);

    g_assert_cmpuint (checks->len, ==, 3);
    g_assert_true (gtk_check_button_get_active (g_ptr_array_index (checks, 1)));
    g_assert_false (gtk_check_button_get_active (g_ptr_array_index (checks, 0)));
  }

  /* emptied */
  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), NULL, 0);
  g_assert_cmpint (changed, ==, 3);
  assert_selected (picker, none);
}

static gboolean
row_shown (GtkWidget *check)
{
  GtkWidget *row = gtk_widget_get_ancestor (check, GTK_TYPE_LIST_BOX_ROW);

  return gtk_widget_get_child_visible (row) && gtk_widget_get_mapped (check);
}

static void
filter_with (GtkWidget  *picker,
             const char *text)
{
  GtkWidget *entry = ds_test_ui_find_one (picker, GTK_TYPE_SEARCH_ENTRY);

  gtk_editable_set_text (GTK_EDITABLE (entry), text);
  ds_test_ui_wait_ms (400);  /* GtkSearchEntry's search-changed comes after a delay */
  ds_test_ui_drain ();
}

static void
test_filter (void)
{
  int changed = 0;
  g_autoptr(DsTestUiWidget) picker = new_picker (&changed);
  g_autoptr(GPtrArray) checks = NULL;
  const char *const chosen[] = { "D-L0-R0-Res-Out", "U-L1-R1-B0-Cross-Q", NULL };
  int n_shown;

  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), blocks, N_BLOCKS);
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), chosen);
  checks = ds_test_ui_find_all (picker, GTK_TYPE_CHECK_BUTTON);
  ds_test_ui_drain ();
  for (int i = 0; i < N_BLOCKS; i++)
    g_assert_true (row_shown (g_ptr_array_index (checks, i)));

  /* case-insensitive, every word must occur */
  filter_with (picker, "u-l1  cross");
  n_shown = 0;
  for (int i = 0; i < N_BLOCKS; i++)
    {
      gboolean want = g_str_has_prefix (blocks[i], "U-L1") && strstr (blocks[i], "Cross");

      g_assert_cmpint (row_shown (g_ptr_array_index (checks, i)), ==, want);
      n_shown += want;
    }
  g_assert_cmpint (n_shown, ==, 3);
  /* filtering leaves the choice alone, even for hidden rows */
  g_assert_cmpint (changed, ==, 1);
  assert_selected (picker, chosen);

  /* nothing matches: the placeholder */
  filter_with (picker, "zzz");
  for (int i = 0; i < N_BLOCKS; i++)
    g_assert_false (row_shown (g_ptr_array_index (checks, i)));
  {
    g_autoptr(GPtrArray) labels = ds_test_ui_find_all (picker, GTK_TYPE_LABEL);
    gboolean placeholder_mapped = FALSE;

    for (guint i = 0; i < labels->len; i++)
      if (g_strcmp0 (gtk_label_get_text (g_ptr_array_index (labels, i)), "No block matches") == 0)
        placeholder_mapped = gtk_widget_get_mapped (g_ptr_array_index (labels, i));
    g_assert_true (placeholder_mapped);
  }

  /* new blocks while filtered: the filter applies to them too */
  filter_with (picker, "res-out");
  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), blocks, N_BLOCKS);
  g_clear_pointer (&checks, g_ptr_array_unref);
  checks = ds_test_ui_find_all (picker, GTK_TYPE_CHECK_BUTTON);
  ds_test_ui_drain ();
  for (int i = 0; i < N_BLOCKS; i++)
    g_assert_cmpint (row_shown (g_ptr_array_index (checks, i)), ==,
                     strstr (blocks[i], "Res-Out") != NULL);
  assert_selected (picker, chosen);

  /* cleared: all back */
  filter_with (picker, "");
  for (int i = 0; i < N_BLOCKS; i++)
    g_assert_true (row_shown (g_ptr_array_index (checks, i)));
  g_assert_cmpint (changed, ==, 1);
}

static void
test_clear_button (void)
{
  int changed = 0;
  g_autoptr(DsTestUiWidget) picker = new_picker (&changed);
  GtkWidget *clear = ds_test_ui_find_button (picker, "C_lear");
  const char *const chosen[] = { "D-L0-R0-Res-Out", "M-L0-R0-B0-Self-K", NULL };

  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), blocks, N_BLOCKS);
  g_assert_false (gtk_widget_get_sensitive (clear));
  ds_block_picker_set_selected (DS_BLOCK_PICKER (picker), chosen);
  g_assert_true (gtk_widget_get_sensitive (clear));
  g_assert_cmpint (changed, ==, 1);

  g_assert_true (ds_test_ui_press (clear));
  g_assert_cmpint (changed, ==, 2);  /* once, not once per name */
  assert_selected (picker, none);
  g_assert_false (gtk_widget_get_sensitive (clear));
  g_assert_cmpstr (summary_text (picker), ==, "No block chosen");
}

static void
test_accessible_and_keyboard (void)
{
  int changed = 0;
  g_autoptr(DsTestUiWidget) picker = new_picker (&changed);
  GtkWidget *window = GTK_WIDGET (gtk_widget_get_root (picker));
  GtkWidget *entry = ds_test_ui_find_one (picker, GTK_TYPE_SEARCH_ENTRY);
  g_autoptr(GPtrArray) checks = NULL;

  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker), blocks, N_BLOCKS);
  checks = ds_test_ui_find_all (picker, GTK_TYPE_CHECK_BUTTON);
  ds_test_ui_wait_ms (200);  /* Tab order follows the layout: let the new rows be allocated */

  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (entry),
                                       GTK_ACCESSIBLE_PROPERTY_LABEL, "Filter blocks");
  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX)),
                                       GTK_ACCESSIBLE_PROPERTY_LABEL, "UNet blocks");
  g_assert_true (gtk_test_accessible_has_role (GTK_ACCESSIBLE (g_ptr_array_index (checks, 0)),
                                               GTK_ACCESSIBLE_ROLE_CHECKBOX));

  /* the checks are the Tab stops, not their rows */
  for (int i = 0; i < N_BLOCKS; i++)
    {
      GtkWidget *check = g_ptr_array_index (checks, i);

      g_assert_true (gtk_widget_get_focusable (check));
      g_assert_false (gtk_widget_get_focusable (gtk_widget_get_parent (check)));
    }
  if (!ds_test_ui_ensure_active (window))
    {
      g_test_skip ("the test window never became active: no keyboard focus to move");
      return;
    }
  g_assert_true (gtk_widget_grab_focus (entry));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 0));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 1));
  /* Down arrow: the list box's cursor key binding */
  g_signal_emit_by_name (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX), "move-cursor",
                         GTK_MOVEMENT_DISPLAY_LINES, 1, FALSE, FALSE);
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 2));

  /* End, Page Up, Home */
  g_signal_emit_by_name (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX), "move-cursor",
                         GTK_MOVEMENT_BUFFER_ENDS, 1, FALSE, FALSE);
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, N_BLOCKS - 1));
  g_signal_emit_by_name (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX), "move-cursor",
                         GTK_MOVEMENT_DISPLAY_LINES, -1, FALSE, FALSE);
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, N_BLOCKS - 2));
  g_signal_emit_by_name (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX), "move-cursor",
                         GTK_MOVEMENT_BUFFER_ENDS, -1, FALSE, FALSE);
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 0));
  g_signal_emit_by_name (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX), "move-cursor",
                         GTK_MOVEMENT_DISPLAY_LINES, -1, FALSE, FALSE);  /* at the top: stays */
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 0));
  g_signal_emit_by_name (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX), "move-cursor",
                         GTK_MOVEMENT_DISPLAY_LINES, 2, FALSE, FALSE);
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 2));

  /* space/Enter on the focused check toggles it */
  g_assert_true (ds_test_ui_press (gtk_window_get_focus (GTK_WINDOW (window))));
  g_assert_cmpint (changed, ==, 1);
  {
    const char *const one[] = { "D-L0-R0-B0-Cross-Q", NULL };

    assert_selected (picker, one);
  }

  /* while filtered, Tab skips the hidden rows */
  filter_with (picker, "self");
  if (!ds_test_ui_ensure_active (window))
    {
      g_test_skip ("the test window lost the keyboard focus");
      return;
    }
  g_assert_true (gtk_widget_grab_focus (entry));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 1));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 3));
  /* and so does Down: Self rows are 1, 3 and 8 */
  g_signal_emit_by_name (ds_test_ui_find_one (picker, GTK_TYPE_LIST_BOX), "move-cursor",
                         GTK_MOVEMENT_DISPLAY_LINES, 1, FALSE, FALSE);
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (checks, 8));
}

static void
test_many_blocks_scroll (void)
{
  int changed = 0;
  g_autoptr(DsTestUiWidget) picker = new_picker (&changed);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  int min_h, nat_h;

  for (int i = 0; i < 200; i++)
    g_ptr_array_add (names, g_strdup_printf ("U-L%d-R%d-B0-Cross-Q%d", i % 4, i % 3, i));
  ds_block_picker_set_blocks (DS_BLOCK_PICKER (picker),
                              (const char *const *) names->pdata, (int) names->len);
  gtk_widget_measure (picker, GTK_ORIENTATION_VERTICAL, -1, &min_h, &nat_h, NULL, NULL);
  /* the list scrolls: the picker stays about 400 px plus entry and summary */
  g_assert_cmpint (nat_h, <=, 400 + 150);
  g_assert_cmpint (nat_h, >=, 200);
}

int
main (int    argc,
      char **argv)
{
  ds_test_ui_init_a11y_or_skip (&argc, &argv);  /* GTK_A11Y=test: the labels can be checked */
  g_assert_nonnull (ds_get_resource ());  /* links the bundle in, registering it */

  g_test_add_func ("/ui/block-picker/set-and-get", test_set_and_get);
  g_test_add_func ("/ui/block-picker/set-blocks-keeps", test_set_blocks_keeps);
  g_test_add_func ("/ui/block-picker/filter", test_filter);
  g_test_add_func ("/ui/block-picker/clear-button", test_clear_button);
  g_test_add_func ("/ui/block-picker/accessible-and-keyboard", test_accessible_and_keyboard);
  g_test_add_func ("/ui/block-picker/many-blocks-scroll", test_many_blocks_scroll);
  return g_test_run ();
}
