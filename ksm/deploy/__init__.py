"""Deployable tasks: a run folded into an ONNX model and quantised to int8, and the bit-packed
task file that ``ksm-sim`` prices.
"""
