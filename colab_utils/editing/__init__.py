"""Local semantic editing of StyleGAN2 faces: Collins, Bala, Price, Süsstrunk, "Editing in Style: Uncovering
the Local Semantics of GANs", CVPR 2020.

``kmeans``: spherical k-means and the adjusted Rand index; ``catalog``: clusters of a generator's features and
the per-layer contribution matrices M; ``edit``: the query q and the style blend; ``metrics``: CIELAB and the
locality of an edit.
"""
from .catalog import Catalog, build_catalog, cluster_layer_name, style_layer_inputs
from .edit import blend_styles, combine_queries, global_query, layer_query, part_contribution, query
from .kmeans import SphericalKMeans, adjusted_rand_index
from .metrics import EditLocality, edit_locality, locality_table, masked_mse, rgb_to_lab

__all__ = [
    "Catalog", "build_catalog", "cluster_layer_name", "style_layer_inputs",
    "blend_styles", "combine_queries", "global_query", "layer_query", "part_contribution", "query",
    "SphericalKMeans", "adjusted_rand_index",
    "EditLocality", "edit_locality", "locality_table", "masked_mse", "rgb_to_lab",
]
