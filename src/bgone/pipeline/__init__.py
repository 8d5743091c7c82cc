"""The pipeline: decoded images → network → masks → refined cut-outs. ``remover`` (``Remover``,
``remove_background``), ``options`` and ``resolution`` (what a removal does, parsed once), ``transforms``
(the official pre/post-processing), ``refine`` (foreground colours), ``rembg_mask`` (rembg's mask
options), ``runtime`` (model cache, compile, allocator), ``onnx_backend`` and ``batch_files`` (many
files through one ``Remover``). Imports ``nn``, ``weights`` and ``imaging``."""
