"""Making models smaller and faster.

``quantize.quantize`` writes a quantized copy of an ONNX model with onnxruntime (static/dynamic int8, fp16,
int4) and reports what was actually quantized; ``accuracy_aware.quantize_within`` keeps the nodes that cost
too much accuracy in float; ``prune`` removes weights. Nothing heavy loads until a function runs.
"""
