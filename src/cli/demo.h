/*
 * cli/demo — the demo repository `yci up` creates on first start: a git
 * repository with a README and a tests/ folder of unittest tests (the seed's
 * demo), committed on branch main.
 */
#ifndef YCI_CLI_DEMO_H
#define YCI_CLI_DEMO_H

#include "lib/buf.h"

/* Create the repository in dir (made if missing). A dir that already holds a
 * git repository is left as it is. 0, or -errno with a message in err. */
int cli_demo_create(const char *dir, struct buf *err);

#endif
