"""kernels: the hot loops of the memories, each a pure-torch reference beside a Triton kernel.

Each op lives in ``kernels/<op>/``: ``reference.py`` is the specification (readable torch, runs on
CPU), ``triton_impl.py`` the kernel with the same signature and results, and the package's
``__init__`` the public function, which takes ``backend="auto" | "torch" | "triton"`` (``auto``:
Triton when every input is on CUDA and triton imports; ``TRITON_INTERPRET=1`` lets ``"triton"`` run
on CPU tensors in the Triton interpreter). triton is imported only when a Triton backend runs.

Ops:
    block_scores, block_topk: ReKV retrieval; score stored frame blocks against the question's
        mean query per layer and select the top k, in groups, in time order.
    quantize_int8, dequantize_int8, int8_error: symmetric int8 compression of KV blocks (KIVI
        layout: keys per channel, values per token) and the error of a round trip.

This package imports only torch, triton and the standard library, nothing else of ours.

Example:
    >>> import torch
    >>> from memstream.kernels import block_topk, int8_error
    >>> query = torch.tensor([[1.0, 0.0]])                         # (L=1, C=2): one layer's mean query
    >>> keys = torch.tensor([[[3.0, 0], [1, 0], [2, 0], [5, 0]]])  # (L=1, N=4, C=2): one key per block
    >>> block_topk(query, keys, 2)                                 # the two best blocks, in time order
    tensor([[0, 3]])
    >>> int8_error(torch.linspace(-1, 1, 64).reshape(1, 8, 8), reduce_dim=-1)["max_abs"] < 1 / 127
    True
"""

if __name__ != "memstream.kernels":  # imported by the bare name: it is another distribution's
    from memstream.kernels.bare_name import hand_over

    hand_over(__name__)
else:
    from .block_topk import block_scores, block_topk
    from .quant8 import Int8Error, dequantize_int8, int8_error, quantize_int8

    __all__ = ["Int8Error", "block_scores", "block_topk", "dequantize_int8", "int8_error", "quantize_int8"]
