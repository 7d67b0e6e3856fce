/* ds-answer-view.c: the answer pane.
 *
 * A title "Answer" with a Stop button, then the answer in a read-only,
 * word-wrapping GtkTextView. Column 0 is the only one shown until text is
 * appended to column 1; then both are shown side by side, captioned
 * "CLIP only" (0) and "fused" (1), or what ds_answer_view_set_captions()
 * gave (the window's prompt and mismatched prompt), until
 * ds_answer_view_clear(). While
 * there is no text and nothing is streaming, column 0 shows the
 * placeholder, greyed. Appending keeps the end in view unless the reader
 * has scrolled up (scrolling back to the end follows it again).
 *
 * The Stop button is sensitive only while streaming; clicking it emits
 * ::stop once and turns it insensitive (the window ends the stream with
 * set_streaming (FALSE)). The status line says "Answering…", "Stopping…",
 * "Stopped" or nothing. */

#include "ds-answer-view.h"

#define N_COLUMNS 2

struct _DsAnswerView
{
  GtkWidget    parent_instance;

  /* template */
  GtkWidget   *box;
  GtkLabel    *title;
  GtkWidget   *stop_button;
  GtkLabel    *caption0;
  GtkLabel    *caption1;
  GtkStack    *stack0;
  GtkLabel    *placeholder;
  GtkWidget   *scroller0;
  GtkTextView *view0;
  GtkWidget   *column1;
  GtkWidget   *scroller1;
  GtkTextView *view1;
  GtkLabel    *status;

  GString     *text[N_COLUMNS];
  gboolean     follow[N_COLUMNS];     /* keep the end in view on append */
  double       last_value[N_COLUMNS]; /* the vadjustment's previous value */
  gboolean     streaming;
  gboolean     stop_requested;
};

G_DEFINE_FINAL_TYPE (DsAnswerView, ds_answer_view, GTK_TYPE_WIDGET)

enum {
  STOP,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static GtkTextView *
column_view (DsAnswerView *self,
             int           column)
{
  return column == 0 ? self->view0 : self->view1;
}

static GtkWidget *
column_scroller (DsAnswerView *self,
                 int           column)
{
  return column == 0 ? self->scroller0 : self->scroller1;
}

static void
set_status (DsAnswerView *self,
            const char   *text)
{
  gtk_label_set_text (self->status, text);
  gtk_widget_set_visible (GTK_WIDGET (self->status), text[0] != '\0');
}

static void
update_layout (DsAnswerView *self)
{
  gboolean empty = self->text[0]->len == 0 && self->text[1]->len == 0;
  gboolean two = self->text[1]->len > 0;

  gtk_stack_set_visible_child_name (self->stack0,
                                    empty && !self->streaming ? "placeholder" : "text");
  gtk_widget_set_visible (self->column1, two);
  gtk_widget_set_visible (GTK_WIDGET (self->caption0), two);
  g_autofree char *label0 = g_strdup_printf ("Answer, %s", gtk_label_get_text (self->caption0));
  g_autofree char *label1 = g_strdup_printf ("Answer, %s", gtk_label_get_text (self->caption1));
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->view0),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, two ? label0 : "Answer",
                                  -1);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->view1),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, label1,
                                  -1);
}

static int
adjustment_column (DsAnswerView  *self,
                   GtkAdjustment *vadj)
{
  return vadj == gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (self->scroller0)) ? 0 : 1;
}

/* Scrolls @column to its end if it follows the end. */
static void
pin_to_end (DsAnswerView *self,
            int           column)
{
  GtkAdjustment *vadj =
    gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (column_scroller (self, column)));
  double end = gtk_adjustment_get_upper (vadj) - gtk_adjustment_get_page_size (vadj);

  if (self->follow[column] && gtk_adjustment_get_value (vadj) < end)
    gtk_adjustment_set_value (vadj, end);
}

/* The text view lays new text out lazily, growing the adjustment's upper
 * bound as it goes: keep a following column at its end. */
static void
on_vadjustment_changed (GtkAdjustment *vadj,
                        DsAnswerView  *self)
{
  pin_to_end (self, adjustment_column (self, vadj));
}

/* Scrolling up stops following the end; reaching the end again resumes.
 * (pin_to_end only ever moves down.) */
static void
on_vadjustment_value_changed (GtkAdjustment *vadj,
                              DsAnswerView  *self)
{
  int column = adjustment_column (self, vadj);
  double value = gtk_adjustment_get_value (vadj);

  if (value < self->last_value[column] - 1.0)
    self->follow[column] = FALSE;
  if (value + gtk_adjustment_get_page_size (vadj) >= gtk_adjustment_get_upper (vadj) - 1.0)
    self->follow[column] = TRUE;
  self->last_value[column] = value;
}

static void
on_stop_clicked (DsAnswerView *self,
                 GtkButton    *button)
{
  if (!self->streaming || self->stop_requested)
    return;
  self->stop_requested = TRUE;
  gtk_widget_set_sensitive (self->stop_button, FALSE);
  set_status (self, "Stopping…");
  g_signal_emit (self, signals[STOP], 0);
}

static void
ds_answer_view_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), DS_TYPE_ANSWER_VIEW);

  G_OBJECT_CLASS (ds_answer_view_parent_class)->dispose (object);
}

static void
ds_answer_view_finalize (GObject *object)
{
  DsAnswerView *self = DS_ANSWER_VIEW (object);

  for (int i = 0; i < N_COLUMNS; i++)
    g_string_free (self->text[i], TRUE);

  G_OBJECT_CLASS (ds_answer_view_parent_class)->finalize (object);
}

static void
ds_answer_view_class_init (DsAnswerViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = ds_answer_view_dispose;
  object_class->finalize = ds_answer_view_finalize;

  /**
   * DsAnswerView::stop:
   * @self: the view
   *
   * Emitted when the reader asks to stop the streaming answer (once per
   * stream).
   */
  signals[STOP] =
    g_signal_new ("stop", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/diffscope/Diffscope/ds-answer-view.ui");
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, box);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, title);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, stop_button);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, caption0);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, caption1);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, stack0);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, placeholder);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, scroller0);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, view0);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, column1);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, scroller1);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, view1);
  gtk_widget_class_bind_template_child (widget_class, DsAnswerView, status);
  gtk_widget_class_bind_template_callback (widget_class, on_stop_clicked);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "answerview");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
}

static void
ds_answer_view_init (DsAnswerView *self)
{
  for (int i = 0; i < N_COLUMNS; i++)
    self->text[i] = g_string_new (NULL);

  gtk_widget_init_template (GTK_WIDGET (self));
  for (int i = 0; i < N_COLUMNS; i++)
    {
      GtkAdjustment *vadj =
        gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (column_scroller (self, i)));

      self->follow[i] = TRUE;
      g_signal_connect_object (vadj, "changed", G_CALLBACK (on_vadjustment_changed), self, 0);
      g_signal_connect_object (vadj, "value-changed",
                               G_CALLBACK (on_vadjustment_value_changed), self, 0);
    }
  gtk_accessible_update_property (GTK_ACCESSIBLE (self),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, "Answer",
                                  -1);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->stop_button),
                                  GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                  "Stop generating the answer",
                                  -1);
  set_status (self, "");
  update_layout (self);
}

/**
 * ds_answer_view_new:
 *
 * Returns: (transfer floating): a new, empty answer view
 */
GtkWidget *
ds_answer_view_new (void)
{
  return g_object_new (DS_TYPE_ANSWER_VIEW, NULL);
}

/**
 * ds_answer_view_set_placeholder:
 * @self: the view
 * @text: (nullable): what to show, greyed, while there is no answer
 */
void
ds_answer_view_set_placeholder (DsAnswerView *self,
                                const char   *text)
{
  g_return_if_fail (DS_IS_ANSWER_VIEW (self));

  gtk_label_set_text (self->placeholder, text ? text : "");
}

/**
 * ds_answer_view_get_placeholder:
 *
 * Returns: (transfer none): the text shown while there is no answer.
 */
const char *
ds_answer_view_get_placeholder (DsAnswerView *self)
{
  g_return_val_if_fail (DS_IS_ANSWER_VIEW (self), NULL);
  return gtk_label_get_text (self->placeholder);
}

/**
 * ds_answer_view_clear:
 * @self: the view
 *
 * Empties both columns (hiding the second) and the status line. Does not
 * change whether it is streaming.
 */
void
ds_answer_view_clear (DsAnswerView *self)
{
  g_return_if_fail (DS_IS_ANSWER_VIEW (self));

  for (int i = 0; i < N_COLUMNS; i++)
    {
      g_string_truncate (self->text[i], 0);
      self->follow[i] = TRUE;
      gtk_text_buffer_set_text (gtk_text_view_get_buffer (column_view (self, i)), "", -1);
    }
  if (!self->streaming)
    set_status (self, "");
  update_layout (self);
}

/**
 * ds_answer_view_append:
 * @self: the view
 * @column: 0 (the answer, or "CLIP only") or 1 ("fused")
 * @text: UTF-8 text to add at the end of @column
 */
void
ds_answer_view_append (DsAnswerView *self,
                       int           column,
                       const char   *text)
{
  GtkTextBuffer *buffer;
  GtkTextIter end;

  g_return_if_fail (DS_IS_ANSWER_VIEW (self));
  g_return_if_fail (column == 0 || column == 1);
  g_return_if_fail (text != NULL);

  if (text[0] == '\0')
    return;

  g_string_append (self->text[column], text);
  buffer = gtk_text_view_get_buffer (column_view (self, column));
  gtk_text_buffer_get_end_iter (buffer, &end);
  gtk_text_buffer_insert (buffer, &end, text, -1);
  update_layout (self);

  pin_to_end (self, column);
}

/**
 * ds_answer_view_set_streaming:
 * @self: the view
 * @streaming: whether an answer is being generated
 *
 * Makes Stop sensitive while @streaming and sets the status line.
 */
void
ds_answer_view_set_streaming (DsAnswerView *self,
                              gboolean      streaming)
{
  g_return_if_fail (DS_IS_ANSWER_VIEW (self));

  streaming = !!streaming;
  if (self->streaming == streaming)
    return;
  self->streaming = streaming;

  if (streaming)
    {
      self->stop_requested = FALSE;
      set_status (self, "Answering…");
    }
  else
    set_status (self, self->stop_requested ? "Stopped" : "");
  gtk_widget_set_sensitive (self->stop_button, streaming);
  gtk_accessible_update_state (GTK_ACCESSIBLE (self->view0),
                               GTK_ACCESSIBLE_STATE_BUSY, streaming, -1);
  update_layout (self);
}

gboolean
ds_answer_view_get_streaming (DsAnswerView *self)
{
  g_return_val_if_fail (DS_IS_ANSWER_VIEW (self), FALSE);

  return self->streaming;
}

/**
 * ds_answer_view_get_text:
 * @self: the view
 * @column: 0 or 1
 *
 * Returns: (transfer none): the text of @column (never NULL), valid until
 *   the next append() or clear()
 */
const char *
ds_answer_view_get_text (DsAnswerView *self,
                         int           column)
{
  g_return_val_if_fail (DS_IS_ANSWER_VIEW (self), NULL);
  g_return_val_if_fail (column == 0 || column == 1, NULL);

  return self->text[column]->str;
}

/**
 * ds_answer_view_set_captions:
 * @c0: the caption of column 0 (default "CLIP only")
 * @c1: the caption of column 1 (default "fused")
 *
 * What the two columns are called when both are shown (and in their
 * accessible labels), e.g. the prompt and the mismatched prompt.
 */
void
ds_answer_view_set_captions (DsAnswerView *self,
                             const char   *c0,
                             const char   *c1)
{
  g_return_if_fail (DS_IS_ANSWER_VIEW (self));
  gtk_label_set_text (self->caption0, c0);
  gtk_label_set_text (self->caption1, c1);
  update_layout (self);
}
