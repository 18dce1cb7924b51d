/* libcranetest's source: built into libcranetest.so by the template's playbook, in the template's build container. */
#include "cranetest.h"

double cranetest_integrand(double x) { return 4.0 / (1.0 + x * x); }

const char *cranetest_version(void) { return "libcranetest 1.0"; }
