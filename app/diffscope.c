/* diffscope.c: the explorer's main(); everything else is in the diffscope-gui
 * library (ds-application.c) so the ui tests can link it. */
#include "ds-application.h"

int
main (int argc, char **argv)
{
  g_autoptr (DsApplication) app = ds_application_new ();
  return g_application_run (G_APPLICATION (app), argc, argv);
}
