"""Small ONNX models generated for tests and benchmarks (nothing large is committed)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def chain_model(path: Path, nodes: int) -> Path:
    """An ONNX chain of ``nodes`` Add/Relu nodes named like modules (/block3/add310)."""
    graph_nodes, prev = [], "x"
    for i in range(nodes // 2):
        graph_nodes.append(helper.make_node("Add", [prev, "one"], [f"a{i}"], name=f"/block{i // 100}/add{i}"))
        graph_nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"/block{i // 100}/relu{i}"))
        prev = f"r{i}"
    graph = helper.make_graph(graph_nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def trained_digits_cnn():  # type: ignore[no-untyped-def]
    """The bundled sample's ``DigitsCNN`` with its trained weights, in eval mode (imports torch)."""
    import sys

    import torch

    from workbench.resources import sample_dir

    folder = str(sample_dir())
    sys.path.insert(0, folder)
    try:
        from digits_cnn import DigitsCNN
    finally:
        sys.path.remove(folder)
    model = DigitsCNN()
    model.load_state_dict(torch.load(sample_dir() / "digits_cnn.pt", weights_only=True))
    return model.eval()
