"""Triton kernels for CUDA tensors: :mod:`.ops` (softmax, log-softmax, log-sum-exp, cross-entropy by rows) and
:mod:`.linear` (linear cross-entropy, the logits only in on-chip tiles), :mod:`.family` (sparsemax, 1.5-entmax and
α-entmax, forward and backward); :mod:`._device` holds the device math they share. Importing :mod:`.ops` imports
Triton; importing this package does not.
"""
