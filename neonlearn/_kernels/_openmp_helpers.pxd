# The one OpenMP shim (include/nl_openmp.h): every omp_* call in neonlearn goes
# through here, so that a build without OpenMP still compiles (and runs serially).
cdef extern from "nl_openmp.h":
    bint NEONLEARN_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_procs() noexcept nogil
