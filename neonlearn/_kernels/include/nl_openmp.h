/* The one OpenMP shim (declared for Cython in ../_openmp_helpers.pxd): every
   omp_* call in neonlearn goes through it, so that a build without OpenMP still
   compiles and runs serially.  NEONLEARN_OPENMP says which build this is. */
#ifndef NL_OPENMP_H
#define NL_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
#define NEONLEARN_OPENMP 1
#else
#define NEONLEARN_OPENMP 0
static int omp_get_max_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_procs(void) { return 1; }
#endif

#endif /* NL_OPENMP_H */
