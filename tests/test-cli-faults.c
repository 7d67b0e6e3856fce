/* test-cli-faults.c: the disk filling up during an export (issue #14,
 * "Faults").
 *
 * A full disk is simulated without root or a small file system: the CLI runs
 * with RLIMIT_FSIZE at 16 KiB and SIGXFSZ ignored, so every write past 16 KiB
 * fails with EFBIG, as a write to a full disk fails with ENOSPC (the same
 * error path: write(2) returning an error). `features` then has to:
 * - exit 1 with a message naming the file and the reason;
 * - leave the previous export (FILE and FILE.json) byte for byte intact;
 * - leave no temporary file behind;
 * and with the limit lifted, the same command replaces both files. Also an
 * output folder that cannot be made: a clear error, nothing written. And
 * files the user may not read, a folder they may not write: the error names
 * the file and says "Permission denied" (run as nobody when the test runs as
 * root, who may read anything).
 * Usage: test-cli-faults PATH/TO/diffscope-cli
 */
#include "ds-test.h"

#include <dirent.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds-test-cli.h"

#define DATA DS_TEST_DATA_DIR

static char tmpdir[256];

static void
write_text (const char *path, const char *text)
{
  FILE *f = fopen (path, "w");
  fputs (text, f);
  fclose (f);
}

static char *
read_text (const char *path)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    return NULL;
  char *buf = calloc (1, 1 << 20);
  size_t n = fread (buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose (f);
  return buf;
}

/* Files in tmpdir other than the ones a run is expected to leave. */
static int
stray_files (void)
{
  DIR *d = opendir (tmpdir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir (d));)
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..") && strcmp (e->d_name, "log")
        && strcmp (e->d_name, "f.safetensors") && strcmp (e->d_name, "f.safetensors.json"))
      {
        fprintf (stderr, "stray file: %s\n", e->d_name);
        n++;
      }
  if (d)
    closedir (d);
  return n;
}

static void
test_disk_full (const char *cli)
{
  char out[1 << 14], args[2048], file[512], json[512];
  snprintf (file, sizeof file, "%s/f.safetensors", tmpdir);
  snprintf (json, sizeof json, "%s/f.safetensors.json", tmpdir);
  write_text (file, "the previous export\n");
  write_text (json, "{\"previous\": true}\n");
  /* D-L0-R0-Res-Out is [32, 32, 32] a half: 256 KiB of f32, past the limit */
  snprintf (args, sizeof args,
            "features --demo --device cpu --image %s/shapes/0000.png --prompt 'a red circle' "
            "--probe D-L0-R0-Res-Out --out '%s'",
            DATA, file);

  struct rlimit old, small;
  DS_CHECK (getrlimit (RLIMIT_FSIZE, &old) == 0, "getrlimit");
  small = old;
  small.rlim_cur = 16 * 1024;
  signal (SIGXFSZ, SIG_IGN); /* inherited: writes fail with EFBIG instead of killing */
  DS_CHECK (setrlimit (RLIMIT_FSIZE, &small) == 0, "setrlimit");
  int rc = ds_test_cli_run (cli, tmpdir, args, out, sizeof out);
  setrlimit (RLIMIT_FSIZE, &old);
  signal (SIGXFSZ, SIG_DFL);

  DS_CHECK (rc == 1, "a failed export exits 1, got %d:\n%s", rc, out);
  DS_CHECK (strstr (out, "f.safetensors") && strstr (out, "too large"),
            "the message names the file and the reason:\n%s", out);
  DS_CHECK (!strstr (out, "wrote"), "nothing is reported written:\n%s", out);
  char *a = read_text (file), *b = read_text (json);
  DS_CHECK (a && !strcmp (a, "the previous export\n"), "the previous FILE is intact");
  DS_CHECK (b && !strcmp (b, "{\"previous\": true}\n"), "the previous FILE.json is intact");
  free (a);
  free (b);
  DS_CHECK (stray_files () == 0, "no temporary file is left behind");

  /* room again: the same command replaces both */
  rc = ds_test_cli_run (cli, tmpdir, args, out, sizeof out);
  DS_CHECK (rc == 0 && strstr (out, "wrote"), "with room the export succeeds (%d):\n%s", rc, out);
  a = read_text (json);
  DS_CHECK (a && strstr (a, "D-L0-R0-Res-Out"), "FILE.json is the new export's");
  free (a);
  DS_CHECK (stray_files () == 0, "no temporary file is left behind");
}

/* An output folder that cannot be made (its parent is a regular file): render
 * exits 1 naming the folder and the reason, and writes nothing. */
static void
test_unwritable_folder (const char *cli)
{
  char out[1 << 14], args[2048], file[512];
  snprintf (file, sizeof file, "%s/f.safetensors", tmpdir);
  write_text (file, "a file, not a folder\n");
  snprintf (args, sizeof args,
            "render --demo --device cpu --image %s/shapes/0000.png --prompt 'a red circle' "
            "--probe UNet-Out --out-dir '%s/sub'",
            DATA, file);
  int rc = ds_test_cli_run (cli, tmpdir, args, out, sizeof out);
  DS_CHECK (rc == 1, "render into an impossible folder exits 1, got %d:\n%s", rc, out);
  DS_CHECK (strstr (out, "f.safetensors/sub") && strstr (out, "Not a directory"),
            "the message names the folder and the reason:\n%s", out);
  char *a = read_text (file);
  DS_CHECK (a && !strcmp (a, "a file, not a folder\n"), "the file in the way is untouched");
  free (a);
  DS_CHECK (stray_files () == 0, "nothing else is written");
}

/* ds_test_cli_run as a user without root's right to read anything: as
 * nobody (65534) when we are root, in a child; dir must be theirs to write
 * (the log goes there). */
static int
run_unprivileged (const char *cli, const char *dir, const char *args, char *out, size_t size)
{
  if (geteuid () != 0)
    return ds_test_cli_run (cli, dir, args, out, size);
  fflush (NULL);
  pid_t pid = fork ();
  if (pid == 0)
    {
      if (setgroups (0, NULL) || setgid (65534) || setuid (65534))
        _exit (99);
      _exit (ds_test_cli_run (cli, dir, args, out, size) & 0xff);
    }
  int status = 0;
  waitpid (pid, &status, 0);
  char log[600];
  snprintf (log, sizeof log, "%s/log", dir);
  char *text = read_text (log);
  snprintf (out, size, "%s", text ? text : "");
  free (text);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* An image, a model's config and its weights that the user may not read, and
 * an output folder they may not write: exit 1, the path and "Permission
 * denied" in the message, nothing written. */
static void
test_permissions (const char *cli)
{
  char dir[300], model[400], cmd[4096], out[1 << 14], args[2400];
  snprintf (dir, sizeof dir, "%s/perm", tmpdir);
  snprintf (model, sizeof model, "%s/model", dir);
  /* the built-in model as links, but unet/config.json and the VAE's weights
   * as copies that only root may read; an image likewise; a read-only folder */
  snprintf (cmd, sizeof cmd,
            "set -e; mkdir -p '%s/ro'; cp -rs '%s/models/shapes' '%s'; cd '%s';"
            "rm unet/config.json vae/diffusion_pytorch_model.fp16.safetensors;"
            "cp '%s/models/shapes/unet/config.json' unet/;"
            "cp '%s/models/shapes/vae/diffusion_pytorch_model.fp16.safetensors' vae/;"
            "cp '%s/shapes/0000.png' '%s/secret.png'; cp '%s/shapes/0000.png' '%s/open.png';"
            "chmod 0777 '%s'; chmod 0000 unet/config.json '%s/secret.png';"
            "chmod 0555 '%s/ro'",
            dir, DS_RESOURCES_DIR, model, model, DS_RESOURCES_DIR, DS_RESOURCES_DIR, DATA, dir,
            DATA, dir, dir, dir, dir);
  DS_CHECK (system (cmd) == 0, "setting up %s", dir);
  chmod (tmpdir, 0755); /* nobody passes through */

  snprintf (args, sizeof args,
            "features --demo --device cpu --image '%s/secret.png' --prompt x --probe UNet-Out "
            "--out '%s/f.safetensors'",
            dir, dir);
  int rc = run_unprivileged (cli, dir, args, out, sizeof out);
  printf ("unreadable image: %s", out);
  DS_CHECK (rc == 1 && strstr (out, "secret.png") && strstr (out, "Permission denied"),
            "an unreadable image is named (exit %d):\n%s", rc, out);

  snprintf (args, sizeof args,
            "features --model '%s' --device cpu --image '%s/open.png' --prompt x "
            "--probe UNet-Out --out '%s/f.safetensors'",
            model, dir, dir);
  rc = run_unprivileged (cli, dir, args, out, sizeof out);
  printf ("unreadable config: %s", out);
  DS_CHECK (rc == 1 && strstr (out, "unet/config.json") && strstr (out, "Permission denied"),
            "an unreadable config is named (exit %d):\n%s", rc, out);
  snprintf (cmd, sizeof cmd, "chmod 0644 '%s/unet/config.json'; chmod 0000 '%s/vae/"
            "diffusion_pytorch_model.fp16.safetensors'", model, model);
  DS_CHECK (system (cmd) == 0, "chmod");
  rc = run_unprivileged (cli, dir, args, out, sizeof out);
  printf ("unreadable weights: %s", out);
  DS_CHECK (rc == 1 && strstr (out, "vae/diffusion_pytorch_model.fp16.safetensors")
              && strstr (out, "Permission denied"),
            "unreadable weights are named (exit %d):\n%s", rc, out);

  snprintf (args, sizeof args,
            "features --demo --device cpu --image '%s/open.png' --prompt x --probe UNet-Out "
            "--out '%s/ro/f.safetensors'",
            dir, dir);
  rc = run_unprivileged (cli, dir, args, out, sizeof out);
  printf ("read-only folder: %s", out);
  DS_CHECK (rc == 1 && strstr (out, "ro/f.safetensors") && strstr (out, "Permission denied"),
            "a folder that may not be written is named (exit %d):\n%s", rc, out);
  snprintf (cmd, sizeof cmd, "ls -A '%s/ro'", dir);
  FILE *ls = popen (cmd, "r");
  char line[256] = "";
  DS_CHECK (ls && !fgets (line, sizeof line, ls), "nothing is written there: %s", line);
  if (ls)
    pclose (ls);
  snprintf (cmd, sizeof cmd, "chmod -R u+rwX '%s'; rm -rf '%s'", dir, dir);
  DS_CHECK (system (cmd) == 0, "cleaning up");
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      fprintf (stderr, "usage: %s PATH/TO/diffscope-cli\n", argv[0]);
      return 2;
    }
  snprintf (tmpdir, sizeof tmpdir, "/tmp/ds-test-faults-XXXXXX");
  if (!mkdtemp (tmpdir))
    return 1;
  test_disk_full (argv[1]);
  test_unwritable_folder (argv[1]);
  test_permissions (argv[1]);
  char cmd[512];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", tmpdir);
  return ds_test_finish ();
}
