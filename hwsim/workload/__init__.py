"""What is costed: layer records and the readers that make them (bundled networks, topology CSVs,
ONNX models, run folders, packed task files), and the checks of a run's tensors.
"""
