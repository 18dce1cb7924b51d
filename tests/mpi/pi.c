/* Numerical integration of pi = integral from 0 to 1 of 4 / (1 + x^2) dx, by the midpoint rule over N intervals
 * (argv[1], default 10^7) shared out among the MPI ranks. Each rank prints the host it runs on; rank 0 prints pi.
 * Built with mpicc by crane's tests (tests/real/test_mpi.py) and run with mpirun across an MPI cluster's nodes. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int rank, size, length;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &length);
    long n = argc > 1 ? (long)atof(argv[1]) : 10000000L;
    double h = 1.0 / (double)n, sum = 0.0;
    for (long i = rank; i < n; i += size) {
        double x = h * ((double)i + 0.5);
        sum += 4.0 / (1.0 + x * x);
    }
    double part = h * sum, pi = 0.0;
    MPI_Reduce(&part, &pi, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    /* the ranks' lines, in rank order: each sends its host to rank 0, which prints them */
    if (rank == 0) {
        printf("rank 0 of %d on %s\n", size, host);
        for (int r = 1; r < size; r++) {
            char other[MPI_MAX_PROCESSOR_NAME];
            MPI_Recv(other, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            printf("rank %d of %d on %s\n", r, size, other);
        }
        printf("pi = %.12f\n", pi);
    } else {
        MPI_Send(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
    }
    MPI_Finalize();
    return 0;
}
