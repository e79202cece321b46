"""Transfer Lab's logic, in layers; each imports only from the layers below it (checked by import-linter).

======================  ===================================================================================
``core.cli``            the command line, one module per command group
``core.app``            what the app's pages share: training queue, background tasks, live view, figures
``core.training``       configs, the engine, one run, the race planner — and, beside it, ``core.retrieval``:
``core.retrieval``      embedders, search methods, FAISS indexes, retrieval quality
``core.runs``           the run store, evaluating a saved run, its predictions, comparing runs
``core.models``         backbones, regimes, device and precision, frozen-pass runtimes, inference
``core.data``           datasets: sources, download, the drawn sample, decoding, the tensor cache, splits
foundation              ``errors``, ``settings``, ``progress``, ``files`` (atomic writes), ``lru``
======================  ===================================================================================

Nothing in this package imports streamlit; the app's pages call into it.
"""
