"""Image retrieval: embedders (raw pixels, deep features), the search methods, cached FAISS indexes, and
precision@k / mAP@k of each method."""
