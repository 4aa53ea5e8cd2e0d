"""The fast engines behind the public functions, each imported lazily by the code that dispatches to it.

* :mod:`.numba`: CPU kernels for NumPy float32/float64 arrays, and their runtime (threads, on-disk cache).
* :mod:`.triton`: GPU kernels for CUDA tensors (row kernels in :mod:`.triton.ops`, linear cross-entropy in
  :mod:`.triton.linear`).

Importing this package imports neither numba nor Triton. The generic code (:mod:`softmaxkit.softmax`,
:mod:`softmaxkit.cross_entropy`, :mod:`softmaxkit.torch`) is the oracle every kernel is tested against; no kernel
imports the public API.
"""
