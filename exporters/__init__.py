"""Writers from the ticket artifact to deployment formats (installed as ``slt_deploy.exporters``).

- :mod:`.nir_format`: NIR graphs (the hand-off to neuromorphic backends), read and write;
- :mod:`.onnx_format`: the ANN counterpart of a ticket as ONNX, and its MAC counts.
"""
