"""The retrieval network as an ONNX graph for ONNX Runtime: exported once per network, never per process.

The graph takes one normalised N x 3 x H x W image (any batch and size) and gives the pooled descriptor, the
average-pooled features, the embedding (head + L2) and, when the network has one, the ImageNet logits, so the
CPU engine (:mod:`shared.model.ort_engine`) runs the bundle's whole network in one call. EfficientNet-Lite's TF
"SAME" padding is computed in Python from the input size, which tracing would freeze at the example's size; while
exporting, those convolutions compute their padding with tensor ops instead (:func:`traceable_same_padding`).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shared.model.network import RetrievalNet

INPUT = "image"
OUTPUTS = ("descriptor", "pooled", "embedding", "logits")
OPSET = 17
# Bump when the exported graph changes for the same weights (cache entries of older exports are then ignored).
EXPORT_FORMAT = 1


class _Exported(nn.Module):
    """What the graph computes: descriptor, pooled features, embedding and logits from one backbone run."""

    def __init__(self, net: RetrievalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        d, p = self.net.descriptor_and_pooled(x)
        out = (d, p, self.net.project(d))
        return (*out, self.net.classify(p)) if self.net.classifier is not None else out


def _same_padding_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """TF "SAME" padding from the input's traced size: constant for stride 1, size-dependent otherwise."""
    pads: list[Any] = []
    for dim, k, s, d in ((-1, self.weight.shape[-1], self.stride[1], self.dilation[1]),
                         (-2, self.weight.shape[-2], self.stride[0], self.dilation[0])):  # fmt: skip
        if s == 1:
            total: Any = (k - 1) * d
        else:
            i = x.shape[dim] if torch.jit.is_tracing() else torch.tensor(x.shape[dim])
            total = torch.clamp(((i + s - 1) // s - 1) * s + (k - 1) * d + 1 - i, min=0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


@contextmanager
def traceable_same_padding(net: nn.Module) -> Iterator[None]:
    """Swap EfficientNet-Lite's dynamic-padding convolutions to :func:`_same_padding_forward` while exporting."""
    try:
        from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding
    except ImportError:  # no EfficientNet installed: nothing to swap
        yield
        return
    swapped = [m for m in net.modules() if isinstance(m, Conv2dDynamicSamePadding)]
    for m in swapped:
        m.forward = types.MethodType(_same_padding_forward, m)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in swapped:
            del m.forward


def export_onnx(net: RetrievalNet, path: Path, *, example_size: tuple[int, int] = (288, 384)) -> Path:
    """Write ``net`` (in eval mode, on the CPU, fp32) as an ONNX graph with a dynamic batch and input size;
    atomic, so a reader never sees half a file."""
    net = net.eval().float().cpu()
    example = torch.zeros((1, 3, *example_size), dtype=torch.float32)
    outputs = list(OUTPUTS if net.classifier is not None else OUTPUTS[:3])
    buffer = io.BytesIO()
    with traceable_same_padding(net), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape arithmetic, made symbolic above
        torch.onnx.export(
            _Exported(net),
            (example,),
            buffer,
            dynamo=False,  # the TorchScript exporter: needs no onnxscript and keeps the traced sizes symbolic
            input_names=[INPUT],
            output_names=outputs,
            dynamic_axes={INPUT: {0: "n", 2: "h", 3: "w"}, **{o: {0: "n"} for o in outputs}},
            opset_version=OPSET,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users' workers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def network_digest(parts: dict[str, Any], states: dict[str, dict[str, Any] | None]) -> str:
    """A sha256 of everything that makes the network: its config and flags (``parts``) and the bytes of every
    tensor it loads over the packaged weights (``states``); the ONNX cache's key."""
    h = hashlib.sha256(f"export{EXPORT_FORMAT}|torch{torch.__version__}".encode())
    for key in sorted(parts):
        h.update(f"|{key}={parts[key]!r}".encode())
    for name in sorted(states):
        state = states[name] or {}
        h.update(f"|{name}:{len(state)}".encode())
        for key in sorted(state):
            t = torch.as_tensor(state[key]).detach().cpu().contiguous()
            h.update(f"|{key}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def cached_onnx(cache_dir: Path, digest: str, build: Callable[[], RetrievalNet]) -> Path:
    """``<cache_dir>/<digest>.onnx``, exported from ``build()`` the first time; a file lock makes processes
    starting together export once between them."""
    path = Path(cache_dir) / f"{digest}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            export_onnx(build(), path)
    return path
