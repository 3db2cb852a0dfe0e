"""Local semantic editing of StyleGAN2 faces: Collins, Bala, Price, Süsstrunk, "Editing in Style: Uncovering
the Local Semantics of GANs", CVPR 2020.

``kmeans``: spherical k-means and the adjusted Rand index; ``catalog``: clusters of a generator's features and
the per-layer contribution matrices M; ``edit``: the query q and the style blend; ``metrics``: CIELAB and the
locality of an edit; ``transfer``: part and full-face transfer with cached style vectors, locality against the
baselines; ``segmenter``: a small part segmenter for synthetic faces, face-parser hooks, naming clusters by
overlap; ``generators``: which StyleGAN2 to edit (trained on synthetic faces, FFHQ, your own file) and the
segmenter shipped with the synthetic one; ``figures``: per-part transfer errors under an independent labeler; ``ffhq_align``, ``invert`` and ``photo``: your
own photo aligned like FFHQ, projected into W+ with pivotal tuning, edited and pasted back.
"""
from .catalog import Catalog, build_catalog, cluster_layer_name, style_layer_inputs
from .generators import load_generator, load_segmenter, synthetic_generator_path, synthetic_segmenter_path, tiny_generator
from .figures import FACIAL_PARTS, PartFigure, figures_table, part_transfer_figures
from .edit import blend_styles, combine_queries, global_query, layer_query, part_contribution, query
from .kmeans import SphericalKMeans, adjusted_rand_index
from .metrics import EditLocality, edit_locality, locality_table, masked_mse, rgb_to_lab
from .segmenter import (ClusterNaming, ParserLabeler, PartSegmenter, auto_name_clusters, cluster_heatmap_grid,
                        cluster_heatmap_rows, face_parser_from_hub, label_samples, name_clusters, part_iou,
                        sample_cluster_maps, train_segmenter)
from .ffhq_align import FFHQFace, TinyFaceError, align_ffhq, ffhq_quad, find_faces
from .invert import Inversion, invert, pivotal_tuning, preview_strip, project, psnr
from .photo import PhotoError, PhotoFace, label_landmarks, photo_face, read_photo, upload_widget
from .transfer import (PartTransfer, Progression, face_styles, full_face_transfer, locality_report, mean_locality,
                       ordered_parts, progression_grid, seeded_w_plus)

__all__ = [
    "load_generator", "load_segmenter", "synthetic_generator_path", "synthetic_segmenter_path", "tiny_generator",
    "FACIAL_PARTS", "PartFigure", "figures_table", "part_transfer_figures",
    "Catalog", "build_catalog", "cluster_layer_name", "style_layer_inputs",
    "blend_styles", "combine_queries", "global_query", "layer_query", "part_contribution", "query",
    "SphericalKMeans", "adjusted_rand_index",
    "EditLocality", "edit_locality", "locality_table", "masked_mse", "rgb_to_lab",
    "ClusterNaming", "ParserLabeler", "PartSegmenter", "auto_name_clusters", "cluster_heatmap_grid",
    "cluster_heatmap_rows", "face_parser_from_hub", "label_samples", "name_clusters", "part_iou", "sample_cluster_maps",
    "train_segmenter",
    "FFHQFace", "TinyFaceError", "align_ffhq", "ffhq_quad", "find_faces",
    "Inversion", "invert", "pivotal_tuning", "preview_strip", "project", "psnr",
    "PhotoError", "PhotoFace", "label_landmarks", "photo_face", "read_photo", "upload_widget",
    "PartTransfer", "Progression", "face_styles", "full_face_transfer", "locality_report", "mean_locality",
    "ordered_parts", "progression_grid", "seeded_w_plus",
]
