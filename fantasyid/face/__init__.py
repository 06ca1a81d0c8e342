"""Face knowledge: detection, alignment, head pose, ArcFace, EVA-CLIP features, DECA + FLAME vertices, views.

Shared by ``generate``, ``eval``, ``edit-shape``, ``prep`` and ``train``. Importing this package is cheap: the names
below are loaded on first use, so torch, timm, insightface and OpenCV are imported only by what needs them.

* :class:`FaceAnalyzer`, :class:`Face`, :func:`load_image`, :func:`align_arcface`, :func:`align_ffhq`
  (``fantasyid.face.analysis``)
* :class:`HeadPose`, :func:`head_pose_from_landmarks`, :func:`select_views`, :func:`select_view_indices`
  (``fantasyid.face.pose``)
* :class:`EvaClipConfig`, :class:`EvaClipVisionTower`, :func:`load_eva_clip_vision`, :func:`preprocess_eva_clip`
  (``fantasyid.face.eva_clip``)
* :class:`FlameLayer`, :func:`load_flame_model`, :func:`decode_vertices` (``fantasyid.face.flame``)
* :class:`DecaEncoder`, :func:`load_deca_encoder`, :class:`DecaFlame` (``fantasyid.face.deca``)
* :func:`face_pack_dir`, :func:`ensure_face_pack`, :func:`install_buffalo_sc`, :func:`download_face_pack`, :func:`fantasyid_home`
  (``fantasyid.face.assets``)
"""

from __future__ import annotations

from fantasyid._lazy import lazy_exports

_EXPORTS = {
    # analysis
    "FaceAnalyzer": ("analysis", "FaceAnalyzer"),
    "Face": ("analysis", "Face"),
    "load_image": ("analysis", "load_image"),
    "to_rgb_uint8": ("analysis", "to_rgb_uint8"),
    "fit_long_side": ("analysis", "fit_long_side"),
    "align_arcface": ("analysis", "align_arcface"),
    "align_ffhq": ("analysis", "align_ffhq"),
    "MAX_IMAGE_PIXELS": ("analysis", "MAX_IMAGE_PIXELS"),
    # pose
    "HeadPose": ("pose", "HeadPose"),
    "head_pose_from_landmarks": ("pose", "head_pose_from_landmarks"),
    "select_views": ("pose", "select_views"),
    "select_view_indices": ("pose", "select_view_indices"),
    # EVA-CLIP
    "EvaClipConfig": ("eva_clip", "EvaClipConfig"),
    "EvaClipOutput": ("eva_clip", "EvaClipOutput"),
    "EvaClipVisionTower": ("eva_clip", "EvaClipVisionTower"),
    "build_eva_clip_vision": ("eva_clip", "build_eva_clip_vision"),
    "load_eva_clip_vision": ("eva_clip", "load_eva_clip_vision"),
    "preprocess_eva_clip": ("eva_clip", "preprocess"),
    # FLAME and DECA
    "FlameLayer": ("flame", "FlameLayer"),
    "FlameModelData": ("flame", "FlameModelData"),
    "load_flame_model": ("flame", "load_flame_model"),
    "decode_vertices": ("flame", "decode_vertices"),
    "DecaCodes": ("deca", "DecaCodes"),
    "DecaEncoder": ("deca", "DecaEncoder"),
    "DecaFlame": ("deca", "DecaFlame"),
    "load_deca_encoder": ("deca", "load_deca_encoder"),
    # assets
    "face_pack_dir": ("assets", "face_pack_dir"),
    "install_buffalo_sc": ("assets", "install_buffalo_sc"),
    "ensure_face_pack": ("assets", "ensure_face_pack"),
    "download_face_pack": ("assets", "download_face_pack"),
    "fantasyid_home": ("assets", "fantasyid_home"),
}

__all__ = tuple(sorted(_EXPORTS))
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
