"""Compiled Cython kernels (stateless), one module per kernel family.

Every kernel takes an explicit ``n_threads`` argument; the backends compute it with
:func:`neonlearn._kernels._openmp_helpers.effective_n_threads`.
"""
