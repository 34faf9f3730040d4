# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled fast path of a call: the common case checked and served in C.

A call whose arrays are all exact, C-contiguous NumPy arrays of one float dtype (integer
labels of ``intp`` or int32, which is copied to intp; sample weights, if any, of the loss's unreduced shape, float64 or the
inputs' dtype), whose options were checked and packed by the caller (only options that
bring no arrays come this way), is validated, computed and wrapped here, with any
``reduction``, ``grad``, ``hessian``, ``ignore_index`` (rows with that label count
for nothing, and "mean" divides by the others) and ``out`` (one gradient, written in
place where the general path would write it directly). Anything else, and anything this code is unsure
of (a label out of range, say), returns None and takes the general path of
``fastloss._api``, which applies every rule of the contract (docs/contract.md,
section 3) and raises its errors.
"""

cimport numpy as cnp

from fastloss import _config

cnp.import_array()

cdef object _EMPTY_F4_1 = cnp.PyArray_EMPTY(1, [0], cnp.NPY_FLOAT32, 0)
cdef object _EMPTY_F8_1 = cnp.PyArray_EMPTY(1, [0], cnp.NPY_FLOAT64, 0)
cdef cnp.npy_intp _ZERO2[2]
_ZERO2[0] = 0
_ZERO2[1] = 0
cdef object _EMPTY_F4_2 = cnp.PyArray_EMPTY(2, _ZERO2, cnp.NPY_FLOAT32, 0)
cdef object _EMPTY_F8_2 = cnp.PyArray_EMPTY(2, _ZERO2, cnp.NPY_FLOAT64, 0)
cdef object _NO_WEIGHTS = _EMPTY_F8_1


cdef class FastSpec:
    """What the fast path needs of one loss (built by ``fastloss.cpu_cython.fast_spec``)."""

    cdef public object kernel         # the _kernels entry of the loss's math
    cdef public object float32_kernel  # the entry of its float32 form, or None
    cdef public object sparse_kernel  # the entry for integer labels, or None
    cdef public bint rows             # a row-wise (class-axis) loss
    cdef public bint labels_only      # the second input must be integer labels
    cdef public bint has_target       # the second input is a target (not differentiable)
    cdef public bint hessian          # the loss has a hessian diagonal
    cdef public int n_inputs
    cdef public int grads
    cdef public tuple params          # the math's parameters for the default options
    cdef public object result_type

    def __init__(self, kernel, float32_kernel, sparse_kernel, rows, labels_only, has_target, hessian, n_inputs,
                 grads, params, result_type):
        self.kernel = kernel
        self.float32_kernel = float32_kernel
        self.sparse_kernel = sparse_kernel
        self.rows = rows
        self.labels_only = labels_only
        self.has_target = has_target
        self.hessian = hessian
        self.n_inputs = n_inputs
        self.grads = grads
        self.params = params
        self.result_type = result_type


cdef inline bint _plain(object a, int typenum):
    """An exact ndarray of ``typenum``, C-contiguous and aligned."""
    return (type(a) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray> a) == typenum
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray> a))


cdef inline bint _same_shape(cnp.ndarray a, cnp.ndarray b, int skip_last):
    cdef int nd = cnp.PyArray_NDIM(b)
    cdef int i
    if cnp.PyArray_NDIM(a) != nd + skip_last:
        return False
    for i in range(nd):
        if cnp.PyArray_DIM(a, i) != cnp.PyArray_DIM(b, i):
            return False
    return True


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b):
    """Whether two C-contiguous arrays share a byte."""
    cdef char* a0 = <char*> cnp.PyArray_DATA(a)
    cdef char* b0 = <char*> cnp.PyArray_DATA(b)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a)


cdef bint _writable_gradient(object out, cnp.ndarray x, int typenum, tuple inputs, object weights):
    """Whether ``out`` can take the gradient of ``x`` directly: an exact, writable,
    C-contiguous ndarray of its dtype and shape that overlaps no input but ``x`` itself
    exactly (a kernel reads an element, or a row, before writing its gradient), as the
    general path decides: ``fl.mse(x, x, out=x)`` goes there (the target is x too)."""
    cdef cnp.ndarray o
    if not _plain(out, typenum) or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray> out):
        return False
    o = <cnp.ndarray> out
    if not _same_shape(x, o, 0):
        return False
    for j, a in enumerate((*inputs, weights)):  # inputs[0] is x
        if _overlap(o, <cnp.ndarray> a) and not (j == 0 and cnp.PyArray_DATA(x) == cnp.PyArray_DATA(o)):
            return False
    return True


cdef Py_ssize_t _labels_counted(cnp.ndarray labels, Py_ssize_t width, bint has_ignore, cnp.npy_intp ignore):
    """How many labels are in [0, width) (those equal to ``ignore`` are not counted), or -1
    if any other is out of that range."""
    cdef const cnp.npy_intp* p = <const cnp.npy_intp*> cnp.PyArray_DATA(labels)
    cdef Py_ssize_t i, n = cnp.PyArray_SIZE(labels)
    cdef Py_ssize_t counted = 0
    with nogil:
        for i in range(n):
            if has_ignore and p[i] == ignore:
                continue
            if p[i] < 0 or p[i] >= width:
                return -1
            counted += 1
    return counted


cdef object _scalar(double value, int typenum):
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(0, NULL, typenum, 0)
    if typenum == cnp.NPY_FLOAT32:
        (<float*> cnp.PyArray_DATA(out))[0] = <float> value
    else:
        (<double*> cnp.PyArray_DATA(out))[0] = value
    return out


def fast_call(FastSpec spec, tuple args, str reduction_name, tuple params, object want=True,
              object sample_weight=None, object hessian=False, object ignore_index=None, object out=None):
    """The result of the common case, or None for the general path.

    It serves inputs below both ``_config.CYTHON_MAX_SIZE`` (the Cython backend's share
    under backend="auto") and ``_config.PARALLEL_MIN_SIZE`` (it runs on one thread).
    """
    cdef int reduction = 0  # 0 mean, 1 sum, 2 none
    cdef cnp.ndarray x, a, labels = None
    cdef int typenum, i, n_grads
    cdef bint keep_loss = True
    cdef object weights = _NO_WEIGHTS
    cdef Py_ssize_t size, width, count, chunk, chunk_elements
    cdef Py_ssize_t denominator  # the rows that "mean" divides by
    cdef cnp.npy_intp ignore = 0
    cdef object kernel = spec.kernel
    cdef double total, scale
    if len(args) != spec.n_inputs:
        return None
    if reduction_name == "mean":
        reduction = 0
    elif reduction_name == "sum":
        reduction = 1
    elif reduction_name == "none":
        reduction = 2
    else:
        return None
    if want is True:
        n_grads = spec.grads
    elif want is False:
        n_grads = 0
    elif type(want) is str and want == "only":
        n_grads = spec.grads
        keep_loss = False
    else:
        return None
    if not (hessian is False or (hessian is True and spec.hessian)):
        return None
    if ignore_index is not None:  # an integer (checked by the caller): labels equal to it count for nothing
        if not -2**62 < ignore_index < 2**62:
            return None
        ignore = ignore_index
    first = args[0]
    if type(first) is not cnp.ndarray:
        return None
    x = <cnp.ndarray> first
    typenum = cnp.PyArray_TYPE(x)
    if (typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64) or not cnp.PyArray_ISCARRAY_RO(x):
        return None
    if typenum == cnp.NPY_FLOAT32 and spec.float32_kernel is not None:
        kernel = spec.float32_kernel
    size = cnp.PyArray_SIZE(x)
    if size >= _config.CYTHON_MAX_SIZE or size >= _config.PARALLEL_MIN_SIZE:
        return None
    chunk_elements = _config.CHUNK_ELEMENTS
    if spec.rows:
        if cnp.PyArray_NDIM(x) != 2:
            return None
        width = cnp.PyArray_DIM(x, 1)
        if width == 0:
            return None
        count = cnp.PyArray_DIM(x, 0)
        denominator = count
        chunk = max(1, chunk_elements // width)
    else:
        width = 1
        count = size
        denominator = count
        chunk = chunk_elements
    for i in range(1, spec.n_inputs):
        if i == 1 and spec.has_target and (_plain(args[1], cnp.NPY_INTP) or _plain(args[1], cnp.NPY_INT32)):
            labels = <cnp.ndarray> args[1]
            if cnp.PyArray_TYPE(labels) != cnp.NPY_INTP:  # int32 labels (JAX's default): the kernels read intp
                labels = <cnp.ndarray> cnp.PyArray_Cast(labels, cnp.NPY_INTP)
            if spec.labels_only:
                pass
            elif spec.sparse_kernel is not None:
                kernel = spec.sparse_kernel
            else:
                return None
            if not spec.rows or not _same_shape(x, labels, 1):
                return None
            denominator = _labels_counted(labels, width, ignore_index is not None, ignore)
            if denominator < 0:
                return None
            continue
        if i == 1 and spec.labels_only:
            return None
        if not _plain(args[i], typenum) or not _same_shape(x, <cnp.ndarray> args[i], 0):
            return None
    if sample_weight is not None:  # of the unreduced loss's shape, float64 or the inputs' dtype
        if not (_plain(sample_weight, cnp.NPY_FLOAT64) or _plain(sample_weight, typenum)):
            return None
        if not _same_shape(x, <cnp.ndarray> sample_weight, 1 if spec.rows else 0):
            return None
        weights = sample_weight
        if typenum != cnp.NPY_FLOAT64 and cnp.PyArray_TYPE(<cnp.ndarray> weights) != cnp.NPY_FLOAT64:
            weights = cnp.PyArray_Cast(<cnp.ndarray> weights, cnp.NPY_FLOAT64)

    empty = _EMPTY_F4_2 if typenum == cnp.NPY_FLOAT32 else _EMPTY_F8_2
    if not spec.rows:
        empty = _EMPTY_F4_1 if typenum == cnp.NPY_FLOAT32 else _EMPTY_F8_1
    if out is not None:  # the gradient written into the caller's array, as the general path writes it
        if spec.grads != 1 or n_grads == 0 or not _writable_gradient(out, x, typenum, args, weights):
            return None
        grads = [out]
    else:
        grads = [cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), typenum, 0) for i in range(n_grads)]
    while len(grads) < 3:
        grads.append(empty)
    h = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), typenum, 0) if hessian else empty
    if reduction == 2 and keep_loss:
        loss_out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x) - (1 if spec.rows else 0), cnp.PyArray_DIMS(x),
                                     typenum, 0)
    else:
        loss_out = _EMPTY_F4_1 if typenum == cnp.NPY_FLOAT32 else _EMPTY_F8_1
    scale = (1.0 / denominator if denominator else 0.0) if reduction == 0 else 1.0
    y = (labels if labels is not None else args[1]) if spec.n_inputs > 1 else x
    if spec.rows:
        v = args[2] if spec.n_inputs > 2 else x
        total = kernel(x, y, v, None, weights, params, scale, loss_out,
                       grads[0], grads[1], grads[2], h, chunk, 1)
    else:
        total = kernel(x, y, None, weights, params, scale, loss_out, grads[0], grads[1], h, chunk, 1)
    if not keep_loss:
        loss = None
    elif reduction == 0:
        loss = _scalar(total / denominator if denominator else float("nan"), typenum)
    elif reduction == 1:
        loss = _scalar(total, typenum)
    else:
        loss = loss_out
    grad = None if n_grads == 0 else grads[0] if n_grads == 1 else tuple(grads[:n_grads])
    return spec.result_type(loss, grad, h if hessian else None)
