# Inner loops of the convolution kernels (``_conv.pyx``): the rows of im2col/col2im,
# fills, biases and sums, in float32 and float64.  Inline: each is compiled into its
# caller.
#
# Indices are Py_ssize_t and rows are passed as pointers: the build inherits
# Python's -fwrapv, under which GCC does not vectorize loops whose addresses are
# computed in (wrapping) int arithmetic.
from cython cimport floating


cdef inline void _fill(floating *a, floating value, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        a[i] = value


cdef inline void _zero(floating *a, Py_ssize_t n) noexcept nogil:
    _fill(a, 0, n)


cdef inline void _copy_row(floating *dst, const floating *src, Py_ssize_t n,
                           Py_ssize_t stride) noexcept nogil:
    """dst[i] = src[i * stride] for i < n."""
    cdef Py_ssize_t i
    if stride == 1:
        for i in range(n):
            dst[i] = src[i]
    else:
        for i in range(n):
            dst[i] = src[i * stride]


cdef inline void _add_row(floating *dst, const floating *src, Py_ssize_t n,
                          Py_ssize_t stride) noexcept nogil:
    """dst[i * stride] += src[i] for i < n."""
    cdef Py_ssize_t i
    if stride == 1:
        for i in range(n):
            dst[i] += src[i]
    else:
        for i in range(n):
            dst[i * stride] += src[i]


cdef inline void _add_scalar(floating *dst, const floating *src, floating b,
                             Py_ssize_t n) noexcept nogil:
    """dst[i] = src[i] + b for i < n (``dst`` may be ``src``)."""
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = src[i] + b


cdef inline floating _sum(const floating *a, Py_ssize_t n) noexcept nogil:
    """Sum of ``a[:n]`` in eight interleaved partial sums (vectorizable, and the
    order depends on ``n`` only)."""
    cdef floating acc[8]
    cdef floating tail = 0
    cdef Py_ssize_t i, j, n8 = n - n % 8
    for j in range(8):
        acc[j] = 0
    for i in range(0, n8, 8):
        for j in range(8):
            acc[j] += a[i + j]
    for i in range(n8, n):
        tail += a[i]
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail


cdef inline void _valid_range(int n_out, int n_in, int stride, int offset, int *lo,
                              int *hi) noexcept nogil:
    """``[lo, hi)``: the outputs ``o < n_out`` whose input ``o*stride + offset``
    lies in ``[0, n_in)`` (the unpadded part of an im2col row)."""
    cdef int a = 0, b = 0
    if offset < 0:
        a = (stride - 1 - offset) // stride
    if n_in - offset > 0:
        b = (n_in - offset + stride - 1) // stride
    if a > n_out:
        a = n_out
    if b > n_out:
        b = n_out
    if b < a:
        b = a
    lo[0] = a
    hi[0] = b
