#!/bin/sh
# tests/test-install.sh: `meson install --destdir` puts the desktop files in
# place (the data suite; tests/meson.build passes the arguments).
#   test-install.sh MESON BUILDDIR SOURCEDIR DATADIR BINDIR
# DATADIR and BINDIR are absolute (prefix included). The installed launcher,
# metainfo and icons must be the source files; diffscope-cli must be
# installed, and so must the explorer (the launcher's Exec) once it is built.
set -eu
meson=$1 build=$2 src=$3 datadir=$4 bindir=$5
app_id=org.diffscope.Diffscope

dest=$(mktemp -d "${TMPDIR:-/tmp}/ds-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT INT TERM

# --no-rebuild: meson test has built everything already
"$meson" install -C "$build" --no-rebuild --quiet --destdir "$dest" >"$dest.log" 2>&1 || {
  cat "$dest.log"; rm -f "$dest.log"; echo "FAIL: meson install"; exit 1; }
rm -f "$dest.log"

fail=0
same() {  # same INSTALLED SOURCE
  if [ ! -f "$dest$1" ]; then
    echo "FAIL: missing $1"; fail=1
  elif ! cmp -s "$dest$1" "$2"; then
    echo "FAIL: $1 differs from $2"; fail=1
  else
    echo "ok: $1"
  fi
}
present() {  # present INSTALLED
  if [ -f "$dest$1" ] && [ -x "$dest$1" ]; then echo "ok: $1"
  else echo "FAIL: missing or not executable: $1"; fail=1; fi
}

same "$datadir/applications/$app_id.desktop" "$src/resources/$app_id.desktop"
same "$datadir/metainfo/$app_id.metainfo.xml" "$src/resources/$app_id.metainfo.xml"
same "$datadir/icons/hicolor/scalable/apps/$app_id.svg" \
     "$src/resources/icons/hicolor/scalable/apps/$app_id.svg"
same "$datadir/icons/hicolor/symbolic/apps/$app_id-symbolic.svg" \
     "$src/resources/icons/hicolor/symbolic/apps/$app_id-symbolic.svg"
present "$bindir/diffscope-cli"
if [ -e "$build/app/diffscope" ]; then
  present "$bindir/diffscope"
else
  echo "note: the explorer (app/diffscope) is not built; not checked"
fi

exit $fail
