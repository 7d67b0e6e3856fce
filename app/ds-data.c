/* ds-data.c: see ds-data.h. */
#include "ds-data.h"

#include <stdlib.h>

#include "ds-pipeline.h"
#include "ds-util.h"

#ifndef DS_DATA_DIR
#error "DS_DATA_DIR (the source tree's resources/) must be defined by the build"
#endif
#ifndef DS_INSTALLED_DATA_DIR
#error "DS_INSTALLED_DATA_DIR (DATADIR/diffscope) must be defined by the build"
#endif

const char *
ds_data_dir (void)
{
  const char *d = getenv ("DIFFSCOPE_DATA_DIR");
  if (d && *d)
    return d;
  if (ds_path_exists (DS_DATA_DIR "/" DS_BUILTIN_MODEL_SUBDIR "/model_index.json"))
    return DS_DATA_DIR;
  return DS_INSTALLED_DATA_DIR;
}
