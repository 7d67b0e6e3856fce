/* ds-token-strip.c: the prompt's tokens as a wrapping row of toggle buttons.
 *
 * One GtkToggleButton per item, laid out like text: left to right, wrapping
 * to a new line when the width is used up (DsTokenFlow below; a GtkFlowBox
 * would align them in columns and spread the narrow pad buttons out).
 * The strip is as tall as its lines need (height-for-width): 77 items take
 * three or four lines at 800 px. To cap its height, put it in a
 * GtkScrolledWindow without propagate-natural-height (GTK 4.8's scrolled
 * window asks its child for a height without a width, which for a
 * wrapping row is one line's). At most one button is
 * active: activating one deactivates the others, and deactivating the
 * active one leaves none selected. Tab moves from button to button and
 * Enter/space toggles the focused one.
 *
 * START, END and PAD items are shown only while "show-special" is TRUE.
 * WORD, START and END buttons show the item's label; a PAD button shows a
 * single "·" (an SD prompt has up to ~75 of them, so they stay one
 * character wide), with the pad's position in its tooltip and accessible
 * label. Buttons carry the CSS classes "token" and "token-word",
 * "token-start", "token-end" or "token-pad". */

#include "ds-token-strip.h"

/* DsTokenFlow: the private container of the buttons, a wrapping row. */
#define DS_TYPE_TOKEN_FLOW (ds_token_flow_get_type ())
G_DECLARE_FINAL_TYPE (DsTokenFlow, ds_token_flow, DS, TOKEN_FLOW, GtkWidget)

struct _DsTokenFlow
{
  GtkWidget parent_instance;
};

G_DEFINE_FINAL_TYPE (DsTokenFlow, ds_token_flow, GTK_TYPE_WIDGET)

#define FLOW_SPACING 4

/* Lays the shown children out in lines @width wide (allocating them when
 * @allocate) and returns the height that takes. */
static int
ds_token_flow_layout (DsTokenFlow *self,
                      int          width,
                      gboolean     allocate)
{
  gboolean rtl = gtk_widget_get_direction (GTK_WIDGET (self)) == GTK_TEXT_DIR_RTL;
  int x = 0, y = 0, line_height = 0;

  for (GtkWidget *child = gtk_widget_get_first_child (GTK_WIDGET (self));
       child; child = gtk_widget_get_next_sibling (child))
    {
      int min_w, nat_w, h;

      if (!gtk_widget_should_layout (child))
        continue;
      gtk_widget_measure (child, GTK_ORIENTATION_HORIZONTAL, -1, &min_w, &nat_w, NULL, NULL);
      nat_w = MAX (min_w, MIN (nat_w, width));
      gtk_widget_measure (child, GTK_ORIENTATION_VERTICAL, nat_w, NULL, &h, NULL, NULL);

      if (x > 0 && x + nat_w > width)
        {
          y += line_height + FLOW_SPACING;
          x = 0;
          line_height = 0;
        }
      if (allocate)
        gtk_widget_size_allocate (child,
                                  &(GtkAllocation) { rtl ? width - x - nat_w : x, y, nat_w, h },
                                  -1);
      x += nat_w + FLOW_SPACING;
      line_height = MAX (line_height, h);
    }
  return y + line_height;
}

static GtkSizeRequestMode
ds_token_flow_get_request_mode (GtkWidget *widget)
{
  return GTK_SIZE_REQUEST_HEIGHT_FOR_WIDTH;
}

static void
ds_token_flow_measure (GtkWidget      *widget,
                       GtkOrientation  orientation,
                       int             for_size,
                       int            *minimum,
                       int            *natural,
                       int            *minimum_baseline,
                       int            *natural_baseline)
{
  int min = 0, nat = 0, n = 0;

  if (orientation == GTK_ORIENTATION_HORIZONTAL)
    {
      /* at least the widest button; at best all on one line */
      for (GtkWidget *child = gtk_widget_get_first_child (widget);
           child; child = gtk_widget_get_next_sibling (child))
        {
          int child_min, child_nat;

          if (!gtk_widget_should_layout (child))
            continue;
          gtk_widget_measure (child, orientation, -1, &child_min, &child_nat, NULL, NULL);
          min = MAX (min, child_min);
          nat += child_nat;
          n++;
        }
      nat += MAX (n - 1, 0) * FLOW_SPACING;
    }
  else
    {
      int width = for_size;

      if (width < 0)
        ds_token_flow_measure (widget, GTK_ORIENTATION_HORIZONTAL, -1, NULL, &width, NULL, NULL);
      min = nat = ds_token_flow_layout (DS_TOKEN_FLOW (widget), width, FALSE);
    }
  if (minimum)
    *minimum = min;
  if (natural)
    *natural = nat;
}

static void
ds_token_flow_size_allocate (GtkWidget *widget,
                             int        width,
                             int        height,
                             int        baseline)
{
  ds_token_flow_layout (DS_TOKEN_FLOW (widget), width, TRUE);
}

static void
ds_token_flow_dispose (GObject *object)
{
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (object))))
    gtk_widget_unparent (child);

  G_OBJECT_CLASS (ds_token_flow_parent_class)->dispose (object);
}

static void
ds_token_flow_class_init (DsTokenFlowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = ds_token_flow_dispose;
  widget_class->get_request_mode = ds_token_flow_get_request_mode;
  widget_class->measure = ds_token_flow_measure;
  widget_class->size_allocate = ds_token_flow_size_allocate;
  gtk_widget_class_set_css_name (widget_class, "tokenflow");
  /* the strip is the labelled group; this is only its layout */
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GENERIC);
}

static void
ds_token_flow_init (DsTokenFlow *self)
{
}

/* DsTokenStrip */

/* Narrow pad buttons, below the application's style.css (which may
 * override it) and above the theme. */
static const char token_css[] =
  "tokenstrip button.token-pad { min-width: 0; padding-left: 5px; padding-right: 5px; }\n";

static void
ensure_css (void)
{
  static GdkDisplay *done_for;
  GdkDisplay *display = gdk_display_get_default ();
  g_autoptr(GtkCssProvider) provider = NULL;

  if (display == NULL || display == done_for)
    return;
  done_for = display;
  provider = gtk_css_provider_new ();
  gtk_css_provider_load_from_data (provider, token_css, -1);
  gtk_style_context_add_provider_for_display (display, GTK_STYLE_PROVIDER (provider),
                                              GTK_STYLE_PROVIDER_PRIORITY_APPLICATION - 1);
}

struct _DsTokenStrip
{
  GtkWidget  parent_instance;

  /* template */
  GtkWidget *box;
  GtkLabel  *placeholder;
  GtkWidget *flow;       /* DsTokenFlow */

  GArray    *items;      /* DsTokenItem, labels owned */
  GPtrArray *buttons;    /* GtkToggleButton, children of flow */
  int        selected;   /* item index or -1 */
  gboolean   show_special;
  gboolean   syncing;    /* TRUE while we set the buttons' state ourselves */
};

G_DEFINE_FINAL_TYPE (DsTokenStrip, ds_token_strip, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_SHOW_SPECIAL,
  N_PROPS
};

enum {
  SELECTION_CHANGED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

#define INDEX_KEY "ds-token-index"

static void
clear_item (gpointer data)
{
  DsTokenItem *item = data;

  g_free ((char *) item->label);
  item->label = NULL;
}

static gboolean
item_is_shown (DsTokenStrip      *self,
               const DsTokenItem *item)
{
  return item->kind == DS_TOKEN_ITEM_WORD || self->show_special;
}

static void
sync_buttons (DsTokenStrip *self)
{
  self->syncing = TRUE;
  for (guint i = 0; i < self->buttons->len; i++)
    gtk_toggle_button_set_active (g_ptr_array_index (self->buttons, i),
                                  (int) i == self->selected);
  self->syncing = FALSE;
}

static void
set_selected_internal (DsTokenStrip *self,
                       int           index)
{
  gboolean changed = index != self->selected;

  self->selected = index;
  sync_buttons (self);
  if (changed)
    g_signal_emit (self, signals[SELECTION_CHANGED], 0, index);
}

/* Shows the placeholder when no button would be visible, and the special
 * items' buttons according to show-special. */
static void
update_visibility (DsTokenStrip *self)
{
  gboolean any_shown = FALSE;

  for (guint i = 0; i < self->buttons->len; i++)
    {
      const DsTokenItem *item = &g_array_index (self->items, DsTokenItem, i);
      gboolean shown = item_is_shown (self, item);

      gtk_widget_set_visible (g_ptr_array_index (self->buttons, i), shown);
      any_shown |= shown;
    }
  gtk_widget_set_visible (GTK_WIDGET (self->placeholder), !any_shown);
  gtk_widget_set_visible (self->flow, any_shown);
}

static void
on_button_toggled (GtkToggleButton *button,
                   DsTokenStrip    *self)
{
  int index = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), INDEX_KEY));

  if (self->syncing)
    return;
  if (gtk_toggle_button_get_active (button))
    set_selected_internal (self, index);
  else if (index == self->selected)
    set_selected_internal (self, -1);
}

static GtkWidget *
create_button (DsTokenStrip      *self,
               const DsTokenItem *item,
               int                index)
{
  g_autofree char *a11y_label = NULL;
  g_autofree char *tooltip = NULL;
  const char *text = item->label ? item->label : "";
  const char *kind_class = "token-word";
  GtkWidget *button;
  GtkWidget *label;

  switch (item->kind)
    {
    case DS_TOKEN_ITEM_START:
      a11y_label = g_strdup ("Start token");
      kind_class = "token-start";
      break;
    case DS_TOKEN_ITEM_END:
      a11y_label = g_strdup ("End token");
      kind_class = "token-end";
      break;
    case DS_TOKEN_ITEM_PAD:
      a11y_label = g_strdup_printf ("Padding token %d", item->first);
      kind_class = "token-pad";
      text = "·";
      break;
    case DS_TOKEN_ITEM_WORD:
    default:
      a11y_label = g_strdup_printf ("Word: %s", text);
      break;
    }

  if (item->count > 1)
    tooltip = g_strdup_printf ("%s (tokens %d–%d)", a11y_label,
                               item->first, item->first + item->count - 1);
  else
    tooltip = g_strdup_printf ("%s (token %d)", a11y_label, item->first);

  label = gtk_label_new (text);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
  gtk_label_set_max_width_chars (GTK_LABEL (label), 24);

  button = gtk_toggle_button_new ();
  gtk_button_set_child (GTK_BUTTON (button), label);
  gtk_widget_set_tooltip_text (button, tooltip);
  gtk_widget_add_css_class (button, "token");
  gtk_widget_add_css_class (button, kind_class);
  if (item->kind != DS_TOKEN_ITEM_WORD)
    gtk_widget_add_css_class (button, "flat");
  gtk_accessible_update_property (GTK_ACCESSIBLE (button),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, a11y_label,
                                  -1);
  /* GtkToggleButton reports "pressed" only once toggled; say "not pressed"
   * from the start so a screen reader announces a toggle */
  gtk_accessible_update_state (GTK_ACCESSIBLE (button),
                               GTK_ACCESSIBLE_STATE_PRESSED, GTK_ACCESSIBLE_TRISTATE_FALSE,
                               -1);
  g_object_set_data (G_OBJECT (button), INDEX_KEY, GINT_TO_POINTER (index));
  g_signal_connect_object (button, "toggled", G_CALLBACK (on_button_toggled), self, 0);
  return button;
}

static void
remove_buttons (DsTokenStrip *self)
{
  GtkWidget *child;

  g_ptr_array_set_size (self->buttons, 0);
  while ((child = gtk_widget_get_first_child (self->flow)))
    gtk_widget_unparent (child);
}

static void
ds_token_strip_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  DsTokenStrip *self = DS_TOKEN_STRIP (object);

  switch (prop_id)
    {
    case PROP_SHOW_SPECIAL:
      g_value_set_boolean (value, self->show_special);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ds_token_strip_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  DsTokenStrip *self = DS_TOKEN_STRIP (object);

  switch (prop_id)
    {
    case PROP_SHOW_SPECIAL:
      ds_token_strip_set_show_special (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ds_token_strip_dispose (GObject *object)
{
  DsTokenStrip *self = DS_TOKEN_STRIP (object);

  if (self->buttons)
    g_ptr_array_set_size (self->buttons, 0);
  gtk_widget_dispose_template (GTK_WIDGET (self), DS_TYPE_TOKEN_STRIP);

  G_OBJECT_CLASS (ds_token_strip_parent_class)->dispose (object);
}

static void
ds_token_strip_finalize (GObject *object)
{
  DsTokenStrip *self = DS_TOKEN_STRIP (object);

  g_clear_pointer (&self->items, g_array_unref);
  g_clear_pointer (&self->buttons, g_ptr_array_unref);

  G_OBJECT_CLASS (ds_token_strip_parent_class)->finalize (object);
}

static void
ds_token_strip_class_init (DsTokenStripClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->get_property = ds_token_strip_get_property;
  object_class->set_property = ds_token_strip_set_property;
  object_class->dispose = ds_token_strip_dispose;
  object_class->finalize = ds_token_strip_finalize;

  /**
   * DsTokenStrip:show-special:
   *
   * Whether the START, END and PAD items are shown (WORD items always are).
   */
  properties[PROP_SHOW_SPECIAL] =
    g_param_spec_boolean ("show-special", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * DsTokenStrip::selection-changed:
   * @self: the strip
   * @index: the selected item's index, or -1 for none
   *
   * Emitted whenever the selected item changes: by a click or a key, by
   * ds_token_strip_select(), or when set_items() or hiding the special
   * items drops the selection.
   */
  signals[SELECTION_CHANGED] =
    g_signal_new ("selection-changed", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_INT);

  g_type_ensure (DS_TYPE_TOKEN_FLOW);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/diffscope/Diffscope/ds-token-strip.ui");
  gtk_widget_class_bind_template_child (widget_class, DsTokenStrip, box);
  gtk_widget_class_bind_template_child (widget_class, DsTokenStrip, placeholder);
  gtk_widget_class_bind_template_child (widget_class, DsTokenStrip, flow);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "tokenstrip");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
}

static void
ds_token_strip_init (DsTokenStrip *self)
{
  self->items = g_array_new (FALSE, TRUE, sizeof (DsTokenItem));
  g_array_set_clear_func (self->items, clear_item);
  self->buttons = g_ptr_array_new ();
  self->selected = -1;

  ensure_css ();
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_accessible_update_property (GTK_ACCESSIBLE (self),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, "Prompt tokens",
                                  -1);
}

/**
 * ds_token_strip_new:
 *
 * Returns: (transfer floating): a new, empty token strip
 */
GtkWidget *
ds_token_strip_new (void)
{
  return g_object_new (DS_TYPE_TOKEN_STRIP, NULL);
}

/**
 * ds_token_strip_set_items:
 * @self: the strip
 * @items: (array length=n): the items, copied
 * @n: how many
 *
 * Replaces the items. The selection is kept when the new items have an item
 * with the same label at the selected index; otherwise there is none
 * afterwards (and ::selection-changed is emitted with -1).
 */
void
ds_token_strip_set_items (DsTokenStrip      *self,
                          const DsTokenItem *items,
                          int                n)
{
  g_autofree char *old_label = NULL;
  int keep = -1;

  g_return_if_fail (DS_IS_TOKEN_STRIP (self));
  g_return_if_fail (n >= 0);
  g_return_if_fail (items != NULL || n == 0);

  if (self->selected >= 0)
    {
      const DsTokenItem *old = &g_array_index (self->items, DsTokenItem, self->selected);

      if (self->selected < n &&
          g_strcmp0 (old->label, items[self->selected].label) == 0)
        keep = self->selected;
    }

  remove_buttons (self);
  g_array_set_size (self->items, 0);

  for (int i = 0; i < n; i++)
    {
      DsTokenItem copy = items[i];

      copy.label = g_strdup (items[i].label ? items[i].label : "");
      g_array_append_val (self->items, copy);
    }
  for (int i = 0; i < n; i++)
    {
      GtkWidget *button = create_button (self, &g_array_index (self->items, DsTokenItem, i), i);

      gtk_widget_set_parent (button, self->flow);
      g_ptr_array_add (self->buttons, button);
    }

  update_visibility (self);
  set_selected_internal (self, keep);
}

/**
 * ds_token_strip_set_show_special:
 * @self: the strip
 * @show: whether START, END and PAD items are shown
 *
 * Hiding them while one is selected drops the selection.
 */
void
ds_token_strip_set_show_special (DsTokenStrip *self,
                                 gboolean      show)
{
  g_return_if_fail (DS_IS_TOKEN_STRIP (self));

  show = !!show;
  if (self->show_special == show)
    return;
  self->show_special = show;
  update_visibility (self);
  if (!show && self->selected >= 0 &&
      !item_is_shown (self, &g_array_index (self->items, DsTokenItem, self->selected)))
    set_selected_internal (self, -1);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SHOW_SPECIAL]);
}

gboolean
ds_token_strip_get_show_special (DsTokenStrip *self)
{
  g_return_val_if_fail (DS_IS_TOKEN_STRIP (self), FALSE);

  return self->show_special;
}

/**
 * ds_token_strip_get_selected:
 * @self: the strip
 *
 * Returns: the selected item's index, or -1 when none is
 */
int
ds_token_strip_get_selected (DsTokenStrip *self)
{
  g_return_val_if_fail (DS_IS_TOKEN_STRIP (self), -1);

  return self->selected;
}

/**
 * ds_token_strip_select:
 * @self: the strip
 * @index: an item index, or -1 for none
 *
 * Selects @index; emits ::selection-changed when that changes the selection.
 */
void
ds_token_strip_select (DsTokenStrip *self,
                       int           index)
{
  g_return_if_fail (DS_IS_TOKEN_STRIP (self));
  g_return_if_fail (index >= -1 && index < (int) self->items->len);

  set_selected_internal (self, index);
}

/**
 * ds_token_strip_get_item:
 * @self: the strip
 * @index: an item index
 *
 * Returns: (transfer none): the item, valid until the next set_items()
 */
const DsTokenItem *
ds_token_strip_get_item (DsTokenStrip *self,
                         int           index)
{
  g_return_val_if_fail (DS_IS_TOKEN_STRIP (self), NULL);
  g_return_val_if_fail (index >= 0 && index < (int) self->items->len, NULL);

  return &g_array_index (self->items, DsTokenItem, index);
}

int
ds_token_strip_get_n_items (DsTokenStrip *self)
{
  g_return_val_if_fail (DS_IS_TOKEN_STRIP (self), 0);

  return (int) self->items->len;
}
