"""Convolution kernels: forward, backward-data and backward-filter (im2col + GEMM).

Names inside the kernels follow neon: ``N`` samples, ``C`` input channels of size
``H x W``, ``K`` filters of size ``R x S``, outputs of size ``P x Q``.  Arrays are
batch-first and C-contiguous: ``x (N, C, H, W)``, ``W (K, C, R, S)``,
``y (N, K, P, Q)``.  Stride ``(sh, sw)``, zero padding ``(ph, pw)`` and dilation
``(dh, dw)`` are handled in im2col/col2im:

    y[n, k, p, q] = sum_{c, r, s} W[k, c, r, s] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]

Each group of samples is one GEMM ``W (K, CRS) @ col (CRS, G*PQ)``: large images
go one per GEMM (``G = 1``), small ones are batched so that GEMMs stay efficient
(``G`` depends on the shapes only).  Groups run in a ``prange`` with per-thread
column buffers, and BLAS must run single-threaded inside it (the backend limits it
with threadpoolctl where :func:`uses_blas` says a call may run BLAS).  A 1x1
convolution with unit stride and no padding skips im2col (the image is already the
column matrix).

The GEMMs that form the output (forward) or the columns (backward-data) run, in
float32 on the AVX2 and AVX-512 paths (``_isa``: AVX2 + FMA or AVX-512F, chosen at
run time, the same bits), in ``nl_sgemm_panels`` (``include/nl_conv.h``)
rather than BLAS: it reads the filters in place and packs only 16-column panels,
where BLAS packs the whole (large) column or error matrix, which dominated for
images with few channels.  The filter gradient runs in ``nl_sgemm_nt`` (both
operands read along their long rows).  For single unpadded images with unit column
stride and output rows a multiple of 8 (LeNet's first layer), the forward and
filter-gradient GEMMs read the taps from the image in place (eight output pixels
lie in one image row), without im2col.  Measured on the shapes of
``benchmarks/bench_conv.py``, these are faster than BLAS except the backward passes
of layers with more than 64 filters, which keep BLAS; float64 and the generic path
use BLAS throughout.

On those paths, the unit-stride rows of float32 im2col/col2im are copied (added) by
``nl_copy_rows``/``nl_add_rows``, one call per filter tap: the rows are often 8 to
32 values long, too short for the compiler's vectorized loops (SSE2 only in this
build, with alias checks and scalar tails) to pay.

With padding, each thread zeroes its column buffer once per call: the buffer keeps
one row stride for every group, so the entries that come from the padding sit at
the same places for all samples and im2col writes only the taps inside the image.
Other scratch is not zeroed (GEMMs and gathers write all of it).  A bias
is where the forward GEMM starts (the panel kernel's accumulators; with BLAS the
output is filled with it first, which BLAS would zero otherwise): no extra pass.

The filter gradient is summed over a fixed number of sample chunks (independent of
the thread count) and the chunk partials are added in chunk order, so results are
bitwise identical for any number of threads.

Deconvolution (transposed convolution) reuses the same three kernels with the roles
of forward and backward-data swapped.
"""
from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport free, calloc, malloc
from libc.string cimport memcpy, memset
from ._activations cimport _bias_act_row, NL_ACT_IDENTITY
from ._blas cimport gemm as _gemm

cimport numpy as cnp
from cython cimport floating

# the row loops of im2col/col2im, biases and sums
from ._conv_rows cimport (
    _add_row, _copy_row, _fill, _sum, _valid_range, _zero,
)

# the instruction-set path, bound to the one level of _isa (set_isa, NEONLEARN_ISA)
from ._isa cimport NL_ISA_AVX2, isa_level, nl_isa, nl_isa_bind

# include/nl_conv.h: the float32 AVX2 / AVX-512 kernels (call only where _panels())
cdef extern from "nl_conv.h":
    void nl_sgemm_panels(int M, int N, int L, const float *A, Py_ssize_t a_row,
                         Py_ssize_t a_col, const float *B, Py_ssize_t ldb, float *C,
                         Py_ssize_t ldc, const float *init, float *panel,
                         const Py_ssize_t *b_row, const Py_ssize_t *b_col8) noexcept nogil
    void nl_sgemm_nt(int M, int N, int L, const float *A, Py_ssize_t lda,
                     const float *B, Py_ssize_t ldb, float *C, Py_ssize_t ldc, int nseg,
                     Py_ssize_t b_seg, const Py_ssize_t *b_row) noexcept nogil
    void nl_copy_rows(float *dst, Py_ssize_t ldd, const float *src, Py_ssize_t lds, int n,
                      int rows) noexcept nogil
    void nl_add_rows(float *dst, Py_ssize_t ldd, const float *src, Py_ssize_t lds, int n,
                     int rows) noexcept nogil

cnp.import_array()
nl_isa_bind(isa_level())


cdef inline bint _panels() noexcept nogil:
    """Whether float32 GEMMs may use nl_sgemm_panels / nl_sgemm_nt (the AVX2 or
    AVX-512 path; read once per kernel call)."""
    return nl_isa() >= NL_ISA_AVX2


DEF MAX_CHUNKS = 16
# measured: with more than this many filters BLAS runs the backward passes faster
DEF PANEL_MAX_FILTERS = 64


def uses_blas(bint float32, int K, bint forward=False):
    """Whether ``conv_fprop`` (``forward``) or the backward kernels may call BLAS for
    ``K`` filters (in float32 or else float64): the caller limits BLAS's threads only
    then (a threadpoolctl limit and restore costs about 20 us, 8% of a LeNet conv1
    forward + backward on 2 threads)."""
    return not (_panels() and float32 and (forward or K <= PANEL_MAX_FILTERS))


cdef inline void _act_in_place(floating *y, Py_ssize_t n, int act,
                               floating p) noexcept nogil:
    if act != NL_ACT_IDENTITY:
        _bias_act_row(y, NULL, False, act, p, y, n)


cdef inline void _gemm_panels(bint trans_a, int M, int N, int L, const floating *A,
                              int lda, const floating *B, Py_ssize_t ldb,
                              const floating *init, floating *C, Py_ssize_t ldc,
                              bint panels, floating *panel) noexcept nogil:
    """Row-major ``C (M x N) = op(A) @ B (+ init[i] on row i)``, ``op(A)`` being
    ``A`` (``M x L``) or, with ``trans_a``, the transpose of ``A`` (``L x M``); ``lda``
    is the row stride of ``A`` and ``init`` may be NULL.  With ``panels`` (float32
    on the AVX2 or AVX-512 path) ``nl_sgemm_panels`` runs (``panel`` holds
    ``64 * L`` values), else BLAS."""
    cdef int i
    if floating is float:
        if panels:
            if trans_a:
                nl_sgemm_panels(M, N, L, A, 1, lda, B, ldb, C, ldc, init, panel, NULL, NULL)
            else:
                nl_sgemm_panels(M, N, L, A, lda, 1, B, ldb, C, ldc, init, panel, NULL, NULL)
            return
    if init != NULL:
        # BLAS zeroes C first when beta == 0: starting from the bias costs no more
        for i in range(M):
            _fill(C + i * ldc, init[i], N)
    _gemm(trans_a, False, M, N, L, 1, A, lda, B, <int> ldb, 1 if init != NULL else 0,
          C, <int> ldc)


cdef void _im2col(const floating *x, floating *col, Py_ssize_t ld, int C, int H, int W,
                  int R, int S, int P, int Q, int sh, int sw, int ph, int pw, int dh,
                  int dw) noexcept nogil:
    """col[(c*R + r)*S + s, p*Q + q] = x[c, p*sh - ph + r*dh, q*sw - pw + s*dw] for the
    taps inside the image.

    The entries of taps in the padding are not written: they are the same for every
    sample, so the caller zeroes its column buffer once.  ``ld`` is the row stride
    of ``col`` (the columns of several samples sit side by side).
    """
    cdef int c, r, s, p, p0, p1, q0, q1
    cdef floating *row
    cdef bint rows = floating is float and sw == 1 and _panels()
    for c in range(C):
        for r in range(R):
            _valid_range(P, H, sh, r * dh - ph, &p0, &p1)
            for s in range(S):
                _valid_range(Q, W, sw, s * dw - pw, &q0, &q1)
                row = col + ((c * R + r) * S + s) * ld + q0
                if floating is float:
                    if rows:
                        if p1 > p0:
                            nl_copy_rows(row + <Py_ssize_t> p0 * Q, Q,
                                         x + (<Py_ssize_t> c * H + p0 * sh - ph + r * dh) * W
                                         + q0 - pw + s * dw, <Py_ssize_t> sh * W, q1 - q0,
                                         p1 - p0)
                        continue
                for p in range(p0, p1):
                    _copy_row(row + <Py_ssize_t> p * Q,
                              x + (<Py_ssize_t> c * H + p * sh - ph + r * dh) * W
                              + q0 * sw - pw + s * dw, q1 - q0, sw)


cdef void _col2im(const floating *col, Py_ssize_t ld, floating *x, int C, int H, int W,
                  int R, int S, int P, int Q, int sh, int sw, int ph, int pw, int dh,
                  int dw) noexcept nogil:
    """Adjoint of :func:`_im2col`: ``x`` is zeroed, then columns are scattered-added."""
    cdef int c, r, s, p, p0, p1, q0, q1
    cdef const floating *row
    cdef bint rows = floating is float and sw == 1 and _panels()
    _zero(x, <Py_ssize_t> C * H * W)
    for c in range(C):
        for r in range(R):
            _valid_range(P, H, sh, r * dh - ph, &p0, &p1)
            for s in range(S):
                _valid_range(Q, W, sw, s * dw - pw, &q0, &q1)
                row = col + ((c * R + r) * S + s) * ld + q0
                if floating is float:
                    if rows:
                        if p1 > p0:
                            nl_add_rows(x + (<Py_ssize_t> c * H + p0 * sh - ph + r * dh) * W
                                        + q0 - pw + s * dw, <Py_ssize_t> sh * W,
                                        row + <Py_ssize_t> p0 * Q, Q, q1 - q0, p1 - p0)
                        continue
                for p in range(p0, p1):
                    _add_row(x + (<Py_ssize_t> c * H + p * sh - ph + r * dh) * W
                             + q0 * sw - pw + s * dw, row + <Py_ssize_t> p * Q,
                             q1 - q0, sw)


cdef tuple _shape4(const floating[:, :, :, ::1] a):
    return (a.shape[0], a.shape[1], a.shape[2], a.shape[3])


def _check_geometry(x_shape, y_shape, w_shape, int sh, int sw, int ph, int pw, int dh,
                    int dw):
    """Check that ``y_shape`` is the convolution of ``x_shape`` by ``w_shape``."""
    N, C, H, W = x_shape
    N2, K, P, Q = y_shape
    K2, C2, R, S = w_shape
    if sh < 1 or sw < 1 or dh < 1 or dw < 1 or ph < 0 or pw < 0:
        raise ValueError("strides and dilations must be >= 1 and padding >= 0")
    if C < 1 or R < 1 or S < 1:
        # the GEMM's inner dimension C*R*S would be 0 (an illegal leading dimension)
        raise ValueError("filters of shape %r are empty: C, R and S must be >= 1"
                         % (tuple(w_shape),))
    if min(C, H, W, K, R, S) < 1:
        raise ValueError("empty input %r or filters %r" % (tuple(x_shape), tuple(w_shape)))
    if N != N2:
        raise ValueError("x has %d samples but y has %d" % (N, N2))
    if C != C2 or K != K2:
        raise ValueError("filters of shape %r do not map %d channels to %d"
                         % (tuple(w_shape), C, K))
    P_exp = (H + 2 * ph - (dh * (R - 1) + 1)) // sh + 1
    Q_exp = (W + 2 * pw - (dw * (S - 1) + 1)) // sw + 1
    if P != P_exp or Q != Q_exp or P_exp < 1 or Q_exp < 1:
        raise ValueError("output size (%d, %d) does not match the geometry (expected "
                         "(%d, %d))" % (P, Q, P_exp, Q_exp))


cdef inline bint _is_plain_1x1(int R, int S, int sh, int sw, int ph,
                               int pw) noexcept nogil:
    return R == 1 and S == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0


DEF GEMM_COLUMNS = 512


def _group_size(int N, int PQ):
    """Samples per GEMM: small images are batched so that a GEMM has about
    ``GEMM_COLUMNS`` columns, keeping at least four groups when the batch allows.
    Depends on the shapes only (never on the thread count)."""
    cdef int g = (GEMM_COLUMNS + PQ - 1) // PQ
    cdef int quarter = (N + 3) // 4
    if g > quarter:
        g = quarter
    return g if g > 1 else 1


cdef void _gather(const floating *a, floating *buf, Py_ssize_t ld, int gs, int K,
                  int PQ) noexcept nogil:
    """buf[k, j*PQ + i] = a[j, k, i] for the ``gs`` samples of a group (rows of
    ``buf`` are ``ld`` apart)."""
    cdef int j, k
    for j in range(gs):
        for k in range(K):
            memcpy(buf + k * ld + j * PQ, a + (<Py_ssize_t> j * K + k) * PQ,
                   PQ * sizeof(floating))


cdef void *_scratch(int n_threads, size_t per_thread, size_t itemsize,
                    bint zeroed=True) except NULL:
    """Scratch of ``per_thread`` items for each of ``n_threads`` threads, zeroed or
    not (allocated before the parallel region, so that a failure raises MemoryError).
    Threads zero their own part where needed: zeroing here would run on one thread
    (or page-fault fresh pages), 10% of a LeNet conv2 pass on 2 threads."""
    cdef size_t n = <size_t> (n_threads if n_threads > 1 else 1) * per_thread + 1
    cdef void *p = calloc(n, itemsize) if zeroed else malloc(n * itemsize)
    if p == NULL:
        raise MemoryError()
    return p


cdef bint _taps_in_place(int G, bint direct, int ph, int pw, int sw,
                         int Q) noexcept nogil:
    """Whether the float32 AVX2 / AVX-512 kernels read the taps of the image in place (no
    im2col): single images (``G == 1``), no padding, unit column stride, output rows
    a multiple of 8 values (LeNet's first layer)."""
    return _panels() and G == 1 and not direct and ph == 0 and pw == 0 and sw == 1 \
        and Q % 8 == 0


cdef Py_ssize_t *_tap_offsets(int C, int H, int W, int R, int S, int dh,
                              int dw) except NULL:
    """Offsets in an image of its taps ``(c, r, s)`` for output pixel (0, 0), in
    C*R*S order (malloc'ed)."""
    cdef Py_ssize_t *taps = <Py_ssize_t *> malloc(<size_t> C * R * S * sizeof(Py_ssize_t))
    cdef int c, r, s
    if taps == NULL:
        raise MemoryError()
    for c in range(C):
        for r in range(R):
            for s in range(S):
                taps[(c * R + r) * S + s] = (<Py_ssize_t> c * H + r * dh) * W + s * dw
    return taps


def conv_fprop(const floating[:, :, :, ::1] x not None,
               const floating[:, :, :, ::1] w not None,
               const floating[::1] bias not None, floating[:, :, :, ::1] y not None,
               int sh=1, int sw=1, int ph=0, int pw=0, int dh=1, int dw=1,
               int n_threads=1, int act=NL_ACT_IDENTITY, double act_param=0):
    """``y = act(conv(x, w) (+ bias per filter))``; ``bias`` of length 0 means none.

    The activation (``NL_ACT_*``, the dense kernels' ``_bias_act_row``: the same
    bits as a separate pass) runs in the epilogue, on each group's output while it is
    in cache, instead of a pass over the whole output."""
    _check_geometry(_shape4(x), _shape4(y), _shape4(w), sh, sw, ph, pw, dh, dw)
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int K = w.shape[0], R = w.shape[2], S = w.shape[3]
    cdef int P = y.shape[2], Q = y.shape[3]
    cdef int CRS = C * R * S, PQ = P * Q, k, j, g, n0, gs, nc
    cdef bint panels = _panels()
    # BLAS rounds a column by its place in the call: there, one sample per GEMM, so
    # that a sample's output never depends on the samples beside it (the panel
    # GEMM's columns are independent of the group)
    cdef int G = _group_size(N, PQ) if floating is float and panels else 1
    cdef int n_groups = (N + G - 1) // G
    cdef Py_ssize_t ld = <Py_ssize_t> G * PQ
    cdef bint direct = G == 1 and _is_plain_1x1(R, S, sh, sw, ph, pw)
    cdef bint has_bias = bias.shape[0] > 0
    cdef const floating *bp = NULL
    cdef bint in_place = floating is float and _taps_in_place(G, direct, ph, pw, sw, Q)
    cdef Py_ssize_t *taps = NULL
    cdef Py_ssize_t *cols8 = NULL
    # per thread: the columns (zeroed once: im2col leaves the padding entries
    # alone), then the GEMM output of a group of several samples
    cdef Py_ssize_t col_size = 0 if direct or in_place else CRS * ld
    cdef Py_ssize_t buf_size = K * ld if G > 1 else 0
    cdef Py_ssize_t per_thread = col_size + buf_size + 64 * CRS
    cdef floating *scratch
    cdef floating *col
    cdef floating *ybuf
    cdef floating *panel
    cdef const floating *colp
    cdef floating *yn
    cdef floating p = <floating>act_param
    if has_bias and bias.shape[0] != K:
        raise ValueError("bias has %d values for %d filters" % (bias.shape[0], K))
    if N == 0:
        return
    if has_bias:
        bp = &bias[0]
    if in_place:
        # the image offsets of output pixels 8j .. 8j + 7 (in one output row)
        taps = _tap_offsets(C, H, W, R, S, dh, dw)
        cols8 = <Py_ssize_t *> malloc((PQ // 8) * sizeof(Py_ssize_t))
        if cols8 == NULL:
            free(taps)
            raise MemoryError()
        for j in range(PQ // 8):
            cols8[j] = <Py_ssize_t> (8 * j // Q) * sh * W + 8 * j % Q
    try:
        scratch = <floating *> _scratch(n_threads, per_thread, sizeof(floating), False)
    except MemoryError:
        free(taps)
        free(cols8)
        raise
    with nogil, parallel(num_threads=n_threads):
        col = scratch + threadid() * per_thread
        if ph > 0 or pw > 0:  # the padding entries, never written by im2col
            memset(col, 0, col_size * sizeof(floating))
        ybuf = col + col_size
        panel = ybuf + buf_size
        for g in prange(n_groups, schedule="static"):
            n0 = g * G
            gs = N - n0 if N - n0 < G else G
            nc = gs * PQ
            if in_place:
                if floating is float:
                    nl_sgemm_panels(K, PQ, CRS, &w[0, 0, 0, 0], CRS, 1, &x[n0, 0, 0, 0], 0,
                                    &y[n0, 0, 0, 0], PQ, bp, panel, taps, cols8)
                    _act_in_place(&y[n0, 0, 0, 0], K * PQ, act, p)
                continue
            if direct:
                colp = &x[n0, 0, 0, 0]
            else:
                for j in range(gs):
                    _im2col(&x[n0 + j, 0, 0, 0], col + j * PQ, ld, C, H, W, R, S, P, Q,
                            sh, sw, ph, pw, dh, dw)
                colp = col
            if G == 1:
                _gemm_panels(False, K, PQ, CRS, &w[0, 0, 0, 0], CRS, colp, PQ, bp,
                             &y[n0, 0, 0, 0], PQ, panels, panel)
                _act_in_place(&y[n0, 0, 0, 0], K * PQ, act, p)
            else:
                # the chains start from the bias, as for one sample (G == 1): a
                # sample's bits do not depend on its group
                _gemm_panels(False, K, nc, CRS, &w[0, 0, 0, 0], CRS, colp, ld, bp,
                             ybuf, ld, panels, panel)
                for j in range(gs):
                    for k in range(K):
                        memcpy(&y[n0 + j, k, 0, 0], ybuf + k * ld + j * PQ,
                               PQ * sizeof(floating))
                        _act_in_place(&y[n0 + j, k, 0, 0], PQ, act, p)
    free(scratch)
    free(taps)
    free(cols8)


def conv_bprop_data(const floating[:, :, :, ::1] dy not None,
                    const floating[:, :, :, ::1] w not None,
                    floating[:, :, :, ::1] dx not None, int sh=1, int sw=1, int ph=0,
                    int pw=0, int dh=1, int dw=1, int n_threads=1):
    """``dx = conv^T(dy, w)``: the gradient with respect to the input (col2im)."""
    _check_geometry(_shape4(dx), _shape4(dy), _shape4(w), sh, sw, ph, pw, dh, dw)
    cdef int N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef int K = w.shape[0], R = w.shape[2], S = w.shape[3]
    cdef int P = dy.shape[2], Q = dy.shape[3]
    cdef int CRS = C * R * S, PQ = P * Q, j, g, n0, gs, nc
    cdef int G = _group_size(N, PQ), n_groups = (N + G - 1) // G
    cdef Py_ssize_t ld = <Py_ssize_t> G * PQ
    cdef bint direct = G == 1 and _is_plain_1x1(R, S, sh, sw, ph, pw)
    # per thread: the GEMM's columns, then the gathered errors of a group
    cdef Py_ssize_t col_size = 0 if direct else CRS * ld
    cdef Py_ssize_t buf_size = K * ld if G > 1 else 0
    cdef Py_ssize_t per_thread = col_size + buf_size + 64 * K
    cdef floating *scratch
    cdef floating *col
    cdef floating *dybuf
    cdef floating *panel
    cdef const floating *dyp
    # measured: with more filters BLAS forms the columns faster
    cdef bint panels = _panels() and K <= PANEL_MAX_FILTERS
    if N == 0:
        return
    # the GEMM writes every column, _gather every error
    scratch = <floating *> _scratch(n_threads, per_thread, sizeof(floating), False)
    with nogil, parallel(num_threads=n_threads):
        col = scratch + threadid() * per_thread
        dybuf = col + col_size
        panel = dybuf + buf_size
        for g in prange(n_groups, schedule="static"):
            n0 = g * G
            gs = N - n0 if N - n0 < G else G
            nc = gs * PQ
            if direct:
                _gemm_panels(True, CRS, PQ, K, &w[0, 0, 0, 0], CRS, &dy[n0, 0, 0, 0], PQ,
                             NULL, &dx[n0, 0, 0, 0], PQ, panels, panel)
                continue
            if G == 1:
                dyp = &dy[n0, 0, 0, 0]
            else:
                _gather(&dy[n0, 0, 0, 0], dybuf, ld, gs, K, PQ)
                dyp = dybuf
            _gemm_panels(True, CRS, nc, K, &w[0, 0, 0, 0], CRS, dyp, ld, NULL, col, ld,
                         panels, panel)
            for j in range(gs):
                _col2im(col + j * PQ, ld, &dx[n0 + j, 0, 0, 0], C, H, W, R, S, P, Q,
                        sh, sw, ph, pw, dh, dw)
    free(scratch)


def conv_bprop_filter(const floating[:, :, :, ::1] x not None,
                      const floating[:, :, :, ::1] dy not None,
                      floating[:, :, :, ::1] dw_out not None,
                      floating[::1] dbias not None, int sh=1, int sw=1, int ph=0,
                      int pw=0, int dh=1, int dw=1, int n_threads=1):
    """``dw_out = sum_n dy[n] @ im2col(x[n])^T`` (overwritten) and, when ``dbias``
    is not empty, ``dbias[k] = sum of dy[:, k]``.  Deterministic for any thread count.
    """
    _check_geometry(_shape4(x), _shape4(dy), _shape4(dw_out), sh, sw, ph, pw, dh, dw)
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int K = dw_out.shape[0], R = dw_out.shape[2], S = dw_out.shape[3]
    cdef int P = dy.shape[2], Q = dy.shape[3]
    cdef int CRS = C * R * S, PQ = P * Q, KCRS = K * CRS
    cdef int G = _group_size(N, PQ), n_groups = (N + G - 1) // G
    cdef bint direct = G == 1 and _is_plain_1x1(R, S, sh, sw, ph, pw)
    cdef bint has_bias = dbias.shape[0] > 0
    # measured: with more filters BLAS is faster
    cdef bint nt_kernel = _panels() and K <= PANEL_MAX_FILTERS
    cdef int n_chunks = n_groups if n_groups < MAX_CHUNKS else MAX_CHUNKS
    cdef int ch, g, g0, g1, n0, gs, nc, k, i, j
    cdef Py_ssize_t ld = <Py_ssize_t> G * PQ
    cdef size_t stride = <size_t> KCRS + K
    # float32, single images, no padding, unit column stride, output rows a multiple
    # of 8: the kernel reads the taps from the image (rows of Q values, no im2col)
    cdef bint in_place = (floating is float and nt_kernel
                          and _taps_in_place(G, direct, ph, pw, sw, Q))
    cdef Py_ssize_t *taps = NULL
    # per thread: the columns (zeroed once), then the gathered errors of a group
    cdef Py_ssize_t col_size = 0 if direct or in_place else CRS * ld
    cdef Py_ssize_t per_thread = col_size + (K * ld if G > 1 else 0)
    cdef floating *scratch
    cdef floating *part
    cdef floating *col
    cdef floating *dybuf
    cdef const floating *colp
    cdef const floating *dyp
    cdef floating acc
    cdef floating *dwp = &dw_out[0, 0, 0, 0]
    if has_bias and dbias.shape[0] != K:
        raise ValueError("dbias has %d values for %d filters" % (dbias.shape[0], K))
    if N == 0:
        dw_out[...] = 0
        if has_bias:
            dbias[...] = 0
        return
    part = <floating *> _scratch(n_chunks, stride, sizeof(floating))
    try:
        scratch = <floating *> _scratch(n_threads, per_thread, sizeof(floating), False)
    except MemoryError:
        free(part)
        raise
    if in_place:
        try:
            taps = _tap_offsets(C, H, W, R, S, dh, dw)
        except MemoryError:
            free(part)
            free(scratch)
            raise
    with nogil:
        with parallel(num_threads=n_threads):
            col = scratch + threadid() * per_thread
            if ph > 0 or pw > 0:  # the padding entries, never written by im2col
                memset(col, 0, col_size * sizeof(floating))
            dybuf = col + col_size
            for ch in prange(n_chunks, schedule="static"):
                g0 = <int> ((<long> ch * n_groups) // n_chunks)
                g1 = <int> ((<long> (ch + 1) * n_groups) // n_chunks)
                for g in range(g0, g1):
                    n0 = g * G
                    gs = N - n0 if N - n0 < G else G
                    nc = gs * PQ
                    if direct or in_place:
                        colp = &x[n0, 0, 0, 0]
                    else:
                        for j in range(gs):
                            _im2col(&x[n0 + j, 0, 0, 0], col + j * PQ, ld, C, H, W, R,
                                    S, P, Q, sh, sw, ph, pw, dh, dw)
                        colp = col
                    if G == 1:
                        dyp = &dy[n0, 0, 0, 0]
                    else:
                        _gather(&dy[n0, 0, 0, 0], dybuf, ld, gs, K, PQ)
                        dyp = dybuf
                    if floating is float:
                        if in_place:
                            nl_sgemm_nt(K, CRS, Q, dyp, ld, colp, 0, part + ch * stride,
                                        CRS, P, <Py_ssize_t> sh * W, taps)
                        elif nt_kernel:
                            nl_sgemm_nt(K, CRS, nc, dyp, ld, colp, ld, part + ch * stride,
                                        CRS, 1, 0, NULL)
                        else:
                            _gemm(False, True, K, CRS, nc, 1, dyp, ld, colp, ld, 1,
                                  part + ch * stride, CRS)
                    else:
                        _gemm(False, True, K, CRS, nc, 1, dyp, ld, colp, ld, 1,
                              part + ch * stride, CRS)
                    if has_bias:
                        for k in range(K):
                            part[ch * stride + KCRS + k] += _sum(dyp + k * ld, nc)
        # reduce the chunk partials in chunk order (parallel over elements)
        for i in prange(<int> stride, num_threads=n_threads, schedule="static"):
            acc = 0
            for j in range(n_chunks):
                acc = acc + part[j * stride + i]
            if i < KCRS:
                dwp[i] = acc
            elif has_bias:
                dbias[i - KCRS] = acc
    free(taps)
    free(scratch)
    free(part)


def channel_sum(const floating[:, :, :, ::1] a not None, floating[::1] out not None,
                int n_threads=1):
    """``out[k] = sum of a[:, k]`` (per-channel bias gradient), deterministic."""
    cdef int N = a.shape[0], K = a.shape[1]
    cdef int PQ = a.shape[2] * a.shape[3], n, k, i
    cdef floating acc
    cdef floating *part
    cdef const floating *an
    if out.shape[0] != K:
        raise ValueError("out has %d values for %d channels" % (out.shape[0], K))
    if N == 0:
        out[...] = 0
        return
    part = <floating *> calloc(<size_t> N * K + 1, sizeof(floating))
    if part == NULL:
        raise MemoryError()
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            an = &a[n, 0, 0, 0]
            for k in range(K):
                part[n * K + k] = _sum(an + k * PQ, PQ)
        for k in range(K):
            acc = 0
            for n in range(N):
                acc = acc + part[n * K + k]
            out[k] = acc
    free(part)
