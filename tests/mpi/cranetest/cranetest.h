/* libcranetest: a tiny shared library that a container template installs (tests/real/test_job_template.py) and
 * that an MPI job links against and calls on every node: pi's integrand, and the library's own version string. */
#ifndef CRANETEST_H
#define CRANETEST_H

/* the integrand of pi = integral from 0 to 1 of 4 / (1 + x^2) dx */
double cranetest_integrand(double x);
/* "libcranetest VERSION": what a rank prints to show it called the library on its node */
const char *cranetest_version(void);

#endif
