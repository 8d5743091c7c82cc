"""Tools around the engine: ``bench`` (speed against the official-style path), ``evaluate`` and
``segmentation_metrics`` (``bgone eval``), ``onnx_export`` (``bgone export onnx``). Nothing in the
service or the CLI depends on them."""
