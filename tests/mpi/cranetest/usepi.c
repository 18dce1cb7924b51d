/* pi by the midpoint rule, as tests/mpi/pi.c, with the integrand taken from libcranetest (installed by a template,
 * not by the job): every rank calls the library on its node and reports the library's version with its host.
 * Usage: usepi N [FAILING_RANK]: with FAILING_RANK, that rank exits with code 5 after MPI_Finalize (one node fails). */
#include <cranetest.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int rank, size, length;
    char line[MPI_MAX_PROCESSOR_NAME + 64], host[MPI_MAX_PROCESSOR_NAME];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &length);
    long n = argc > 1 ? (long)atof(argv[1]) : 10000000L;
    int failing = argc > 2 ? atoi(argv[2]) : -1;
    double h = 1.0 / (double)n, sum = 0.0;
    for (long i = rank; i < n; i += size)
        sum += cranetest_integrand(h * ((double)i + 0.5));
    double part = h * sum, pi = 0.0;
    MPI_Reduce(&part, &pi, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    snprintf(line, sizeof line, "%s with %s", host, cranetest_version());
    if (rank == 0) {
        printf("rank 0 of %d on %s\n", size, line);
        for (int r = 1; r < size; r++) {
            char other[sizeof line];
            MPI_Recv(other, sizeof other, MPI_CHAR, r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            printf("rank %d of %d on %s\n", r, size, other);
        }
        printf("pi = %.12f\n", pi);
        fflush(stdout);
    } else {
        MPI_Send(line, sizeof line, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
    }
    MPI_Finalize();
    if (rank == failing) {
        fprintf(stderr, "rank %d on %s: failing on purpose\n", rank, host);
        return 5;
    }
    return 0;
}
