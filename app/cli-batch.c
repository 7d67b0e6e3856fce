/* cli-batch.c: diffscope-cli batch — many `features` (and `render`) jobs from
 * one JSON file, on one loaded model, resumable and shardable.
 *
 * JOBS.json is an array of objects:
 *   name    string, file-safe (no '/', not "." or ".."); default "job-<index>"
 *   image   path; a relative one is relative to the JOBS.json directory
 *   prompt  string
 *   probes  [probe names], at least one
 *   uncond, t, seed   as --uncond, --t, --seed (whose values are the defaults)
 *   s       number or [numbers], the render's guidance scales (default 7.5)
 *   render  bool (default false)
 * The other request options of the command line (--size, --crop, --meng,
 * --maps, --words, --cka, --colormap, ...) apply to every job.
 *
 * The whole file, probe names included, is checked before anything runs or is
 * written. Job i writes DIR/<name>.safetensors and its .json exactly as
 * `features` does and, with "render": true, first the PNGs of `render` into
 * DIR/<name>/. Every file is written atomically and the .json last, so a job
 * whose two files exist is complete and is skipped: a rerun resumes. With
 * --shard K/N only the jobs with index % N == K run. A failing job is reported
 * and the others go on; the exit status is 1 when any failed.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ds-atomic.h"
#ifdef DS_HAVE_CAIRO
#include "ds-sheet.h"
#endif

typedef struct {
  char *name, *image;          /* owned; image resolved against the jobs file's folder */
  const char *prompt, *uncond; /* in the JSON document */
  json_t *probes, *s;          /* borrowed: array of strings; number, array or NULL */
  int t;
  unsigned long long seed;
  bool render;
} Job;

typedef struct {
  const char *path; /* the jobs file */
  json_t *doc;
  Job *jobs;
  int n;
} JobList;

static void
job_list_free (JobList *l)
{
  for (int i = 0; l->jobs && i < l->n; i++)
    {
      free (l->jobs[i].name);
      free (l->jobs[i].image);
    }
  free (l->jobs);
  json_decref (l->doc);
}

/* "K/N" with 0 <= K < N. */
static int
parse_shard (const char *spec, int *k, int *n)
{
  char *end;
  long a = strtol (spec, &end, 10), b = -1;
  if (end != spec && *end == '/' && end[1] >= '0' && end[1] <= '9')
    b = strtol (end + 1, &end, 10);
  if (b < 1 || *end || a < 0 || a >= b || b > 1000000 || spec[0] < '0' || spec[0] > '9')
    {
      fprintf (stderr, "diffscope-cli: --shard must be K/N with 0 <= K < N (e.g. 0/4 ... 3/4), "
                       "got \"%s\"\n", spec);
      return -1;
    }
  *k = (int) a;
  *n = (int) b;
  return 0;
}

static char *
path_join (const char *dir, const char *file, const char *suffix)
{
  size_t n = strlen (dir) + strlen (file) + strlen (suffix) + 2;
  char *s = malloc (n);
  if (s)
    snprintf (s, n, "%s%s%s%s", dir, *dir ? "/" : "", file, suffix);
  return s;
}

static const char *
json_kind (const json_t *v)
{
  static const char *const names[] = { "an object", "an array", "a string", "an integer",
                                       "a real", "true", "false", "null" };
  return names[json_typeof (v)];
}

/* What a field holds, for messages: its kind, or the number itself. */
static const char *
json_describe (const json_t *v, char *buf, size_t size)
{
  if (!v)
    return "nothing";
  if (json_is_number (v))
    snprintf (buf, size, "%g", json_number_value (v));
  else if (json_is_array (v) && json_array_size (v) == 0)
    return "an empty array";
  else
    return json_kind (v);
  return buf;
}

/* Whether s holds a control character (a newline, a tab, ESC ...), which
 * would end up in file names and garble the progress lines. */
static bool
has_control (const char *s)
{
  for (; *s; s++)
    if ((unsigned char) *s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

/* name for messages, control characters as \n, \t or \xNN. */
static void
shown_name (const char *name, char *out, size_t size)
{
  size_t j = 0;
  for (; *name && j + 5 < size; name++)
    {
      unsigned char c = (unsigned char) *name;
      if (c == '\n')
        j += (size_t) snprintf (out + j, size - j, "\\n");
      else if (c == '\t')
        j += (size_t) snprintf (out + j, size - j, "\\t");
      else if (c < 0x20 || c == 0x7f)
        j += (size_t) snprintf (out + j, size - j, "\\x%02x", c);
      else
        out[j++] = (char) c;
    }
  out[j] = '\0';
}

/* The fields of job `index` (j) -> *job, with defaults from o. Fails with
 * DS_ERR_INVALID naming the job and field. */
static DsStatus
job_parse (const json_t *j, int index, const char *dir, const CliOptions *o, Job *job,
           DsError *err)
{
  char label[160];
  const json_t *name = json_object_get (j, "name");
  if (json_is_string (name))
    {
      char shown[96];
      shown_name (json_string_value (name), shown, sizeof shown);
      snprintf (label, sizeof label, "job %d (\"%s\")", index, shown);
    }
  else
    snprintf (label, sizeof label, "job %d", index);
  if (!json_is_object (j))
    return ds_error_set (err, DS_ERR_INVALID, "%s: expected an object, got %s", label,
                         json_kind (j));
  static const char *const known[] = { "name", "image", "prompt", "uncond", "probes",
                                       "t", "s", "seed", "render" };
  const char *key;
  json_t *v;
  json_object_foreach ((json_t *) j, key, v)
    {
      size_t k = 0;
      while (k < sizeof known / sizeof *known && strcmp (key, known[k]) != 0)
        k++;
      if (k == sizeof known / sizeof *known)
        return ds_error_set (err, DS_ERR_INVALID,
                             "%s: unknown field \"%s\" (known: name, image, prompt, uncond, "
                             "probes, t, s, seed, render)", label, key);
    }
  char got[64];
#define BAD(field, want)                                                                       \
  ds_error_set (err, DS_ERR_INVALID, "%s: \"%s\" must be %s, got %s", label, field, want,      \
                json_describe (json_object_get (j, field), got, sizeof got))
  const json_t *image = json_object_get (j, "image"), *prompt = json_object_get (j, "prompt"),
               *uncond = json_object_get (j, "uncond"), *t = json_object_get (j, "t"),
               *seed = json_object_get (j, "seed"), *render = json_object_get (j, "render");
  json_t *probes = json_object_get (j, "probes"), *s = json_object_get (j, "s");
  if (name && (!json_is_string (name) || !*json_string_value (name)
               || strchr (json_string_value (name), '/')
               || has_control (json_string_value (name))
               || !strcmp (json_string_value (name), ".")
               || !strcmp (json_string_value (name), "..")))
    return BAD ("name", "a file name (a non-empty string without '/' or control characters, "
                        "not \".\" or \"..\")");
  if (!json_is_string (image) || !*json_string_value (image))
    return BAD ("image", "a non-empty string (the image's path)");
  if (!json_is_string (prompt))
    return BAD ("prompt", "a string");
  if (uncond && !json_is_string (uncond))
    return BAD ("uncond", "a string");
  if (!json_is_array (probes) || json_array_size (probes) < 1
      || json_array_size (probes) > CLI_MAX_LIST)
    return BAD ("probes", "an array of 1 to 512 probe names");
  for (size_t i = 0; i < json_array_size (probes); i++)
    if (!json_is_string (json_array_get (probes, i)))
      return BAD ("probes", "an array of probe names (strings)");
  if (t && (!json_is_integer (t) || json_integer_value (t) < 0 || json_integer_value (t) > 999))
    return BAD ("t", "an integer in 0..999");
  if (seed && (!json_is_integer (seed) || json_integer_value (seed) < 0))
    return BAD ("seed", "a non-negative integer");
  if (render && !json_is_boolean (render))
    return BAD ("render", "true or false");
  bool s_ok = !s || (json_is_number (s) && fabs (json_number_value (s)) <= 100)
              || (json_is_array (s) && json_array_size (s) >= 1
                  && json_array_size (s) <= CLI_MAX_LIST);
  for (size_t i = 0; s_ok && json_is_array (s) && i < json_array_size (s); i++)
    s_ok = json_is_number (json_array_get (s, i))
           && fabs (json_number_value (json_array_get (s, i))) <= 100;
  if (!s_ok)
    return BAD ("s", "a number in -100..100 or an array of 1 to 512 of them");
#undef BAD

  char defname[32];
  snprintf (defname, sizeof defname, "job-%d", index);
  const char *img = json_string_value (image);
  *job = (Job){
    .name = strdup (name ? json_string_value (name) : defname),
    .image = img[0] == '/' ? strdup (img) : path_join (dir, img, ""),
    .prompt = json_string_value (prompt),
    .uncond = uncond ? json_string_value (uncond) : o->uncond,
    .probes = probes, .s = s,
    .t = t ? (int) json_integer_value (t) : o->t,
    .seed = seed ? (unsigned long long) json_integer_value (seed) : o->seed,
    .render = render && json_is_true (render),
  };
  if (!job->name || !job->image)
    return ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  return DS_OK;
}

/* Reads and checks the jobs file. DS_ERR_IO (or DS_ERR_NOMEM) when it cannot
 * be read, else an error naming the file and what is wrong with its contents. */
static DsStatus
job_list_load (const char *path, const CliOptions *o, JobList *l, DsError *err)
{
  *l = (JobList){ .path = path };
  struct stat sb;
  if (stat (path, &sb) == 0 && !S_ISREG (sb.st_mode))
    return ds_error_set (err, DS_ERR_IO, "%s: is %s, not a jobs file (a JSON array)", path,
                         ds_file_kind (sb.st_mode));
  FILE *f = fopen (path, "r");
  if (!f)
    return ds_error_set (err, DS_ERR_IO, "%s: cannot open the jobs file: %s", path,
                         strerror (errno));
  json_error_t jerr;
  l->doc = json_loadf (f, JSON_REJECT_DUPLICATES, &jerr);
  fclose (f);
  if (!l->doc)
    return ds_error_set (err, DS_ERR_FORMAT, "%s: not valid JSON: line %d, column %d: %s", path,
                         jerr.line, jerr.column, jerr.text);
  if (!json_is_array (l->doc))
    return ds_error_set (err, DS_ERR_FORMAT, "%s: expected a JSON array of job objects, got %s",
                         path, json_kind (l->doc));
  char dir[4096]; /* the jobs file's folder, "" for the current one */
  const char *slash = strrchr (path, '/');
  snprintf (dir, sizeof dir, "%.*s", slash ? (int) (slash - path) + (slash == path) : 0, path);
  l->n = (int) json_array_size (l->doc);
  l->jobs = calloc ((size_t) l->n + 1, sizeof *l->jobs);
  json_t *seen = json_object (); /* name -> job index */
  DsStatus st = l->jobs && seen ? DS_OK : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
  for (int i = 0; !st && i < l->n; i++)
    {
      st = job_parse (json_array_get (l->doc, i), i, dir, o, &l->jobs[i], err);
      json_t *other = st ? NULL : json_object_get (seen, l->jobs[i].name);
      if (other)
        st = ds_error_set (err, DS_ERR_INVALID, "job %d: \"name\": \"%s\" is also job %d's name",
                           i, l->jobs[i].name, (int) json_integer_value (other));
      else if (!st)
        json_object_set_new (seen, l->jobs[i].name, json_integer (i));
    }
  json_decref (seen);
  if (st)
    ds_error_prefix (err, st, "%s", path);
  return st;
}

DsStatus
cli_batch_check_jobs (const char *path, const CliOptions *o, int *n_jobs, DsError *err)
{
  JobList l;
  DsStatus st = job_list_load (path, o, &l, err);
  *n_jobs = st ? 0 : l.n;
  job_list_free (&l);
  return st;
}

/* Every probe name is known (and a feature map where the job renders). */
static int
job_list_check_probes (const JobList *l, DsSession *s, int size)
{
  const DsProbeList *list;
  DsError err = { 0 };
  if (ds_pipeline_probes (ds_session_pipeline (s), size, &list, &err))
    return cli_fail (&err);
  for (int i = 0; i < l->n; i++)
    {
      const char *names[CLI_MAX_LIST];
      int n = (int) json_array_size (l->jobs[i].probes);
      for (int k = 0; k < n; k++)
        names[k] = json_string_value (json_array_get (l->jobs[i].probes, k));
      bool *want = NULL;
      DsStatus st = cli_want_probes (list, names, n, &want, &err);
      for (int k = 0; !st && l->jobs[i].render && k < list->n; k++)
        if (want[k] && (list->probes[k].kind == DS_PROBE_SELF_MAP
                        || list->probes[k].kind == DS_PROBE_CROSS_MAP))
          st = ds_error_set (&err, DS_ERR_INVALID,
                             "%s is an attention map; \"render\": true needs feature maps",
                             list->probes[k].name);
      free (want);
      if (st)
        {
          fprintf (stderr, "diffscope-cli: %s: job %d (\"%s\"): \"probes\": %s\n", l->path, i,
                   l->jobs[i].name, err.message);
          return 2;
        }
    }
  return 0;
}

/* The command's options with the job's request; o->out and o->out_dir are
 * allocated (the caller frees them). */
static DsStatus
job_options (const Job *job, const CliOptions *base, CliOptions *o, DsError *err)
{
  *o = *base;
  o->images[0] = job->image;
  o->n_images = 1;
  o->prompt = job->prompt;
  o->uncond = job->uncond;
  o->t = job->t;
  o->seed = job->seed;
  o->n_probes = (int) json_array_size (job->probes);
  for (int k = 0; k < o->n_probes; k++)
    o->probes[k] = json_string_value (json_array_get (job->probes, k));
  if (json_is_number (job->s))
    o->s_values[0] = json_number_value (job->s);
  o->n_s = json_is_number (job->s) ? 1 : json_is_array (job->s) ? (int) json_array_size (job->s)
                                                                 : base->n_s;
  for (int k = 0; json_is_array (job->s) && k < o->n_s; k++)
    o->s_values[k] = json_number_value (json_array_get (job->s, k));
  o->out = path_join (base->out_dir, job->name, ".safetensors");
  o->out_dir = path_join (base->out_dir, job->name, "");
  return o->out && o->out_dir ? DS_OK : ds_error_set (err, DS_ERR_NOMEM, "out of memory");
}

static bool
exists (const char *path)
{
  struct stat sb;
  return stat (path, &sb) == 0 && S_ISREG (sb.st_mode);
}

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

int
cli_cmd_batch (const CliOptions *o)
{
  int shard_k = 0, shard_n = 1;
  if (!o->positional || !o->out_dir || o->n_images || o->prompt || o->n_probes || o->out
      || o->noise || o->n_captions)
    {
      fprintf (stderr, "diffscope-cli: batch needs JOBS.json and --out-dir DIR; the image, prompt "
                       "and probes of each job come from JOBS.json (no --image, --prompt, "
                       "--probe, --out, --noise or --caption)\n");
      return 2;
    }
  if (o->shard && parse_shard (o->shard, &shard_k, &shard_n))
    return 2;
  JobList l;
  DsError err = { 0 };
  DsStatus loaded = job_list_load (o->positional, o, &l, &err);
  if (loaded)
    {
      job_list_free (&l);
      cli_fail (&err);
      return loaded == DS_ERR_IO || loaded == DS_ERR_NOMEM ? 1 : 2;
    }
  int rc = 0;
  DsBackend *be = NULL;
  DsSession *s = NULL;
  if (cli_open_session (o, &be, &s, &err))
    rc = cli_fail (&err);
  else if (!(rc = job_list_check_probes (&l, s, o->size)) && cli_ensure_dir (o->out_dir, NULL, &err))
    rc = cli_fail (&err);
  int done = 0, skipped = 0, failed = 0, width = snprintf (NULL, 0, "%d", l.n);
  CliOptions *jo = malloc (sizeof *jo);
  if (!rc && !jo)
    rc = cli_fail (&(DsError){ DS_ERR_NOMEM, "out of memory" });
  for (int i = 0; !rc && i < l.n; i++)
    {
      if (i % shard_n != shard_k)
        continue;
      double t0 = now_s ();
      char *json_path = NULL;
      ds_error_clear (&err);
      DsStatus st = job_options (&l.jobs[i], o, jo, &err);
      if (!st && !(json_path = path_join ("", jo->out, ".json")))
        st = ds_error_set (&err, DS_ERR_NOMEM, "out of memory");
      bool skip = !st && exists (jo->out) && exists (json_path);
      /* the render first: the features' .json, written last, marks the job complete */
      if (!st && !skip && l.jobs[i].render)
        st = cli_render_write (jo, be, s, NULL, &err);
      if (!st && !skip)
        st = cli_features_write (jo, be, s, NULL, &err);
      fprintf (stderr, "[%*d/%d] %s: ", width, i + 1, l.n, l.jobs[i].name);
      if (st)
        fprintf (stderr, "FAILED: %s\n", err.message);
      else if (skip)
        fprintf (stderr, "skip (exists)\n");
      else
        fprintf (stderr, "done in %.1f s\n", now_s () - t0);
      failed += st != DS_OK;
      skipped += skip;
      done += !st && !skip;
      free (json_path);
      free ((char *) jo->out);
      free ((char *) jo->out_dir);
    }
  if (!rc)
    {
      fprintf (stderr, "%d done, %d skipped, %d failed\n", done, skipped, failed);
      rc = failed ? 1 : 0;
    }
  free (jo);
  job_list_free (&l);
  cli_close_session (be, s);
#ifdef DS_HAVE_CAIRO
  ds_sheet_cleanup ();
#endif
  return rc;
}
