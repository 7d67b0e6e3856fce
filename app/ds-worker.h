/* ds-worker.h: the explorer's worker thread.
 *
 * One thread runs jobs one at a time (it owns the session, and so the GPU).
 * The UI posts jobs from the main thread; each job has a kind, and:
 *
 *   - a newer job of a kind replaces older queued ones of that kind (they are
 *     dropped unrun: dragging a slider never queues stale work);
 *   - a running job of that kind is told to stop: its cancel flag is set, and
 *     the engine polls it between network blocks;
 *   - results come back on the main context (the thread that created the
 *     worker), and only the newest job of a kind delivers one: a result of a
 *     job superseded while it ran is dropped, so what is shown always belongs
 *     to the latest inputs.
 *
 * GTK is never touched on the worker thread: a job's func runs there, its
 * done callback on the main context.
 */
#pragma once

#include <glib.h>
#include <stdatomic.h>

G_BEGIN_DECLS

typedef struct _DsWorker DsWorker;

/* Runs on the worker thread. Returns the result (transfer full, freed with
 * the job's result_free when it is not delivered) or NULL with *error set.
 * `cancel` reads non-zero once a newer job of the same kind was posted (or
 * the worker is shutting down). */
typedef gpointer (*DsJobFunc) (gpointer data, const atomic_int *cancel, DsWorker *worker,
                               GError **error);
/* Runs on the main context with the result (transfer none: freed after the
 * call) or the error. Not called for dropped or superseded jobs. */
typedef void (*DsJobDone) (gpointer result, const GError *error, gpointer user_data);
/* Main context: the worker's progress ("unet", 3, 12) or state changes
 * (stage NULL when the busy state or queue changed). */
typedef void (*DsWorkerNotify) (const char *stage, int done, int total, gpointer user_data);

typedef struct {
  int kind;                  /* 0 .. DS_WORKER_MAX_KINDS-1 */
  DsJobFunc func;
  gpointer data;             /* transfer full */
  GDestroyNotify data_free;
  DsJobDone done;
  gpointer user_data;        /* for done; must outlive the worker or the job */
  GDestroyNotify result_free;
} DsJob;

#define DS_WORKER_MAX_KINDS 8

DsWorker *ds_worker_new (DsWorkerNotify notify, gpointer notify_data);
/* Cancels what runs, drops what is queued, joins the thread. Results not yet
 * delivered are dropped. */
void ds_worker_free (DsWorker *w);
/* Posts a job (copied; job->data is taken). Returns its sequence number. */
guint64 ds_worker_post (DsWorker *w, const DsJob *job);
/* From a job's func: progress, forwarded to the main context (coalesced). */
void ds_worker_progress (DsWorker *w, const char *stage, int done, int total);
/* From a job's func: fn (data, the job's user_data) runs on the main context,
 * in order with the job's other messages, unless a newer job of its kind was
 * posted meanwhile (streamed text of a superseded answer never shows).
 * data is freed with destroy either way. */
typedef void (*DsWorkerEmitFn) (gpointer data, gpointer user_data);
void ds_worker_emit (DsWorker *w, DsWorkerEmitFn fn, gpointer data, GDestroyNotify destroy);
/* Main context: stops the running job of `kind` (its cancel flag; its done
 * callback still runs, with the job's DS_ERR_CANCELLED or whatever it
 * returns) and drops queued ones of that kind unrun. */
void ds_worker_cancel (DsWorker *w, int kind);
/* Main context: jobs queued, running, or finished with their result not yet
 * handed to the done callback. */
int ds_worker_pending (DsWorker *w);
gboolean ds_worker_busy (DsWorker *w);
/* Main context: jobs run to the end / dropped unrun / superseded while running. */
void ds_worker_counts (DsWorker *w, guint64 *run, guint64 *dropped, guint64 *superseded);
/* Blocks the calling (main) thread until the queue is empty and nothing runs,
 * then dispatches pending deliveries; for tests and shutdown. */
void ds_worker_wait_idle (DsWorker *w);

G_END_DECLS
