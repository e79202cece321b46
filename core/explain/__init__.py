"""Why pretrained features transfer — the logic of the "Look inside" page and of ``python -m core explain|zoo``.

* :mod:`core.explain.imagenet`: a pretrained backbone's own top-k over ImageNet's 1,000 classes, named offline;
* :mod:`core.explain.cam`: Grad-CAM (and Grad-CAM++, Score-CAM) heat maps of where a run looks, with the
  ``grad-cam`` package, at each backbone's registry ``cam_layer``;
* :mod:`core.explain.features`: first-layer filters as RGB tiles, and a photo's feature maps at three depths;
* :mod:`core.explain.embedding_map`: a 2-D map (UMAP, PCA at once) of a dataset's deep features, reusing the
  search indexes' vectors, with a one-number cluster separation;
* :mod:`core.explain.zoo`: every backbone in one table: size, published accuracy, latency measured here, and
  the best flowers accuracy per regime in the run store.
"""
