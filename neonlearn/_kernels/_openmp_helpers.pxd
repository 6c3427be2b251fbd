# The one OpenMP shim: every omp_* call in neonlearn goes through here, so that a
# build without OpenMP still compiles (and runs serially).
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define NEONLEARN_OPENMP 1
    #else
    #define NEONLEARN_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    static int omp_get_num_procs(void) { return 1; }
    #endif
    """
    bint NEONLEARN_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_procs() noexcept nogil
