/* ds-worker.c: see ds-worker.h.
 *
 * One mutex guards the queue, the running job and the list of main-context
 * sources not yet dispatched (deliveries, progress, state changes); those
 * sources hold no reference to the worker: ds_worker_free destroys the ones
 * still attached, under the same lock the worker thread takes to add them.
 */
#include "ds-worker.h"

#include <string.h>

typedef struct {
  DsJob job;
  guint64 seq;
} Job;

struct _DsWorker {
  GMutex lock;
  GCond cond;
  GQueue queue;            /* Job*, oldest first */
  Job *running;
  atomic_int cancel;       /* of the running job */
  guint64 next_seq;
  guint64 latest[DS_WORKER_MAX_KINDS]; /* newest posted seq per kind (main thread) */
  gboolean stop;
  GThread *thread;
  GMainContext *context;
  DsWorkerNotify notify;
  gpointer notify_data;
  GList *sources;          /* GSource* attached and not yet dispatched */
  int undelivered;         /* results sent to the main context, not yet dispatched */
  /* progress, coalesced: one source at a time carries the newest values */
  gboolean progress_queued;
  char stage[32];
  int done, total;
  guint64 n_run, n_dropped, n_superseded;
};

typedef enum { MSG_DELIVER, MSG_PROGRESS, MSG_STATE, MSG_EMIT } MsgKind;

typedef struct {
  DsWorker *w;
  MsgKind kind;
  GSource *source;
  Job *job;          /* MSG_DELIVER */
  gpointer result;
  GError *error;
  DsWorkerEmitFn emit; /* MSG_EMIT: for the job of (kind, seq) */
  gpointer emit_data, emit_user;
  GDestroyNotify emit_destroy;
  int job_kind;
  guint64 seq;
} Msg;

static void
job_free (Job *j)
{
  if (j->job.data_free && j->job.data)
    j->job.data_free (j->job.data);
  g_free (j);
}

static void
msg_free (gpointer data)
{
  Msg *m = data;
  if (m->job)
    {
      if (m->result && m->job->job.result_free)
        m->job->job.result_free (m->result);
      job_free (m->job);
    }
  g_clear_error (&m->error);
  if (m->emit_destroy && m->emit_data)
    m->emit_destroy (m->emit_data);
  g_free (m);
}

static gboolean
msg_dispatch (gpointer data)
{
  Msg *m = data;
  DsWorker *w = m->w;
  g_mutex_lock (&w->lock);
  w->sources = g_list_remove (w->sources, m->source);
  char stage[32];
  int done = w->done, total = w->total;
  if (m->kind == MSG_PROGRESS)
    {
      memcpy (stage, w->stage, sizeof stage);
      w->progress_queued = FALSE;
    }
  g_mutex_unlock (&w->lock);
  if (m->kind == MSG_DELIVER)
    {
      /* counted as pending until its done callback has run */
      if (m->job->seq < w->latest[m->job->job.kind])
        w->n_superseded++; /* a newer job of this kind was posted while it ran */
      else if (m->job->job.done)
        m->job->job.done (m->result, m->error, m->job->job.user_data);
      g_mutex_lock (&w->lock);
      w->undelivered--;
      g_mutex_unlock (&w->lock);
      if (w->notify)
        w->notify (NULL, 0, 0, w->notify_data);
      return G_SOURCE_REMOVE;
    }

  switch (m->kind)
    {
    case MSG_DELIVER: /* above */
      break;
    case MSG_EMIT:
      if (m->seq >= w->latest[m->job_kind])
        m->emit (m->emit_data, m->emit_user);
      break;
    case MSG_PROGRESS:
      if (w->notify)
        w->notify (stage, done, total, w->notify_data);
      break;
    case MSG_STATE:
      if (w->notify)
        w->notify (NULL, 0, 0, w->notify_data);
      break;
    }
  return G_SOURCE_REMOVE;
}

/* Called with the lock held. */
static void
send_locked (DsWorker *w, Msg *m)
{
  m->w = w;
  m->source = g_idle_source_new ();
  g_source_set_priority (m->source, G_PRIORITY_DEFAULT);
  g_source_set_callback (m->source, msg_dispatch, m, msg_free);
  w->sources = g_list_prepend (w->sources, m->source);
  g_source_attach (m->source, w->context);
  g_source_unref (m->source); /* the context holds it until dispatched or destroyed */
}

static gpointer
worker_main (gpointer data)
{
  DsWorker *w = data;
  g_mutex_lock (&w->lock);
  for (;;)
    {
      while (!w->stop && g_queue_is_empty (&w->queue))
        g_cond_wait (&w->cond, &w->lock);
      if (w->stop)
        break;
      Job *j = g_queue_pop_head (&w->queue);
      w->running = j;
      atomic_store (&w->cancel, 0);
      g_mutex_unlock (&w->lock);

      GError *error = NULL;
      gpointer result = j->job.func (j->job.data, &w->cancel, w, &error);

      g_mutex_lock (&w->lock);
      w->running = NULL;
      w->n_run++;
      if (w->stop)
        {
          if (result && j->job.result_free)
            j->job.result_free (result);
          g_clear_error (&error);
          job_free (j);
          break;
        }
      Msg *m = g_new0 (Msg, 1);
      m->kind = MSG_DELIVER;
      m->job = j;
      m->result = result;
      m->error = error;
      w->undelivered++;
      send_locked (w, m);
    }
  g_mutex_unlock (&w->lock);
  return NULL;
}

DsWorker *
ds_worker_new (DsWorkerNotify notify, gpointer notify_data)
{
  DsWorker *w = g_new0 (DsWorker, 1);
  g_mutex_init (&w->lock);
  g_cond_init (&w->cond);
  g_queue_init (&w->queue);
  w->context = g_main_context_ref_thread_default ();
  w->notify = notify;
  w->notify_data = notify_data;
  w->next_seq = 1;
  w->thread = g_thread_new ("ds-worker", worker_main, w);
  return w;
}

void
ds_worker_free (DsWorker *w)
{
  if (!w)
    return;
  g_mutex_lock (&w->lock);
  w->stop = TRUE;
  atomic_store (&w->cancel, 1);
  g_cond_signal (&w->cond);
  g_mutex_unlock (&w->lock);
  g_thread_join (w->thread);

  Job *j;
  while ((j = g_queue_pop_head (&w->queue)))
    job_free (j);
  /* Undispatched sources: destroying one frees its Msg (msg_free). */
  GList *sources = w->sources;
  w->sources = NULL;
  for (GList *l = sources; l; l = l->next)
    g_source_destroy (l->data);
  g_list_free (sources);
  g_main_context_unref (w->context);
  g_mutex_clear (&w->lock);
  g_cond_clear (&w->cond);
  g_free (w);
}

guint64
ds_worker_post (DsWorker *w, const DsJob *job)
{
  g_return_val_if_fail (w && job && job->func, 0);
  g_return_val_if_fail (job->kind >= 0 && job->kind < DS_WORKER_MAX_KINDS, 0);
  Job *j = g_new0 (Job, 1);
  j->job = *job;
  g_mutex_lock (&w->lock);
  j->seq = w->next_seq++;
  w->latest[job->kind] = j->seq;
  /* Older queued jobs of this kind are dropped unrun. */
  for (GList *l = w->queue.head; l;)
    {
      GList *next = l->next;
      Job *q = l->data;
      if (q->job.kind == job->kind)
        {
          g_queue_delete_link (&w->queue, l);
          job_free (q);
          w->n_dropped++;
        }
      l = next;
    }
  /* A running one of this kind stops at its next check. */
  if (w->running && w->running->job.kind == job->kind)
    atomic_store (&w->cancel, 1);
  g_queue_push_tail (&w->queue, j);
  g_cond_signal (&w->cond);
  Msg *m = g_new0 (Msg, 1);
  m->kind = MSG_STATE;
  send_locked (w, m);
  g_mutex_unlock (&w->lock);
  return j->seq;
}

void
ds_worker_progress (DsWorker *w, const char *stage, int done, int total)
{
  g_mutex_lock (&w->lock);
  g_strlcpy (w->stage, stage ? stage : "", sizeof w->stage);
  w->done = done;
  w->total = total;
  if (!w->progress_queued && !w->stop)
    {
      w->progress_queued = TRUE;
      Msg *m = g_new0 (Msg, 1);
      m->kind = MSG_PROGRESS;
      send_locked (w, m);
    }
  g_mutex_unlock (&w->lock);
}

void
ds_worker_emit (DsWorker *w, DsWorkerEmitFn fn, gpointer data, GDestroyNotify destroy)
{
  g_mutex_lock (&w->lock);
  if (!w->running || w->stop)
    {
      g_mutex_unlock (&w->lock);
      if (destroy && data)
        destroy (data);
      return;
    }
  Msg *m = g_new0 (Msg, 1);
  m->kind = MSG_EMIT;
  m->emit = fn;
  m->emit_data = data;
  m->emit_destroy = destroy;
  m->emit_user = w->running->job.user_data;
  m->job_kind = w->running->job.kind;
  m->seq = w->running->seq;
  send_locked (w, m);
  g_mutex_unlock (&w->lock);
}

void
ds_worker_cancel (DsWorker *w, int kind)
{
  g_return_if_fail (kind >= 0 && kind < DS_WORKER_MAX_KINDS);
  g_mutex_lock (&w->lock);
  for (GList *l = w->queue.head; l;)
    {
      GList *next = l->next;
      Job *q = l->data;
      if (q->job.kind == kind)
        {
          g_queue_delete_link (&w->queue, l);
          job_free (q);
          w->n_dropped++;
        }
      l = next;
    }
  if (w->running && w->running->job.kind == kind)
    atomic_store (&w->cancel, 1);
  Msg *m = g_new0 (Msg, 1);
  m->kind = MSG_STATE;
  send_locked (w, m);
  g_mutex_unlock (&w->lock);
}

int
ds_worker_pending (DsWorker *w)
{
  g_mutex_lock (&w->lock);
  int n = (int) g_queue_get_length (&w->queue) + (w->running != NULL) + w->undelivered;
  g_mutex_unlock (&w->lock);
  return n;
}

gboolean
ds_worker_busy (DsWorker *w)
{
  return ds_worker_pending (w) > 0;
}

void
ds_worker_counts (DsWorker *w, guint64 *run, guint64 *dropped, guint64 *superseded)
{
  g_mutex_lock (&w->lock);
  if (run)
    *run = w->n_run;
  if (dropped)
    *dropped = w->n_dropped;
  g_mutex_unlock (&w->lock);
  if (superseded)
    *superseded = w->n_superseded; /* main thread only */
}

void
ds_worker_wait_idle (DsWorker *w)
{
  for (;;)
    {
      g_mutex_lock (&w->lock);
      gboolean idle = g_queue_is_empty (&w->queue) && !w->running && !w->sources;
      g_mutex_unlock (&w->lock);
      if (idle)
        return;
      g_main_context_iteration (w->context, TRUE);
    }
}
