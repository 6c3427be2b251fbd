# The level of the instruction-set path, one for every kernel extension: each binds
# it at import (``nl_isa_bind(isa_level())``, include/nl_dispatch.h).
cdef const int *isa_level() noexcept nogil

cdef extern from "nl_dispatch.h":
    enum:  # enum nl_isa
        NL_ISA_GENERIC
        NL_ISA_AVX2
        NL_ISA_AVX512
    void nl_isa_bind(const int *level) noexcept nogil
    int nl_isa() noexcept nogil
