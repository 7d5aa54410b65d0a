"""Landmarks (dlib 5 and 68 points, mediapipe's 468-point mesh) and eye-based alignment."""

from __future__ import annotations

import functools

import numpy as np

Box = tuple[float, float, float, float]


@functools.cache
def _predictor(points: int):
    import dlib
    import face_recognition_models as models

    path = models.pose_predictor_model_location() if points == 68 else models.pose_predictor_five_point_model_location()
    return dlib.shape_predictor(path)


def dlib_rect(box: Box):
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return dlib.rectangle(x0, y0, x1, y1)


def dlib_shape(image: np.ndarray, box: Box, points: int = 68):
    """dlib's full_object_detection (what its face encoder takes) for a face box."""
    return _predictor(points)(image, dlib_rect(box))


def dlib_points(image: np.ndarray, box: Box, points: int = 68) -> np.ndarray:
    """dlib's 68 (or 5) landmarks of a face box as an [n, 2] float array in image pixels."""
    shape = dlib_shape(image, box, points)
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def five_points(image: np.ndarray, box: Box) -> np.ndarray:
    """Left eye centre, right eye centre, nose tip, left and right mouth corner (image left/right)."""
    p = dlib_points(image, box, 68)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


class FaceMesh:
    """mediapipe's 468-point face mesh (x, y in pixels, z relative), for the faces in an image."""

    def __init__(self, max_faces: int = 1):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                                     min_detection_confidence=0.3)

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        height, width = image.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(image[:, :, :3], dtype=np.uint8))
        return [np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark], np.float32)
                for face in result.multi_face_landmarks or []]


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 112, eye_y: float = 0.38,
          eye_distance: float = 0.36) -> np.ndarray:
    """A size x size crop by the similarity transform that puts the eyes level at fixed positions."""
    import cv2

    left, right = np.asarray(landmarks[0], np.float64), np.asarray(landmarks[1], np.float64)
    dx, dy = right - left
    angle = np.degrees(np.arctan2(dy, dx))
    scale = eye_distance * size / max(np.hypot(dx, dy), 1e-6)
    centre = (left + right) / 2
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[0, 2] += size / 2 - centre[0]
    matrix[1, 2] += eye_y * size - centre[1]
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
