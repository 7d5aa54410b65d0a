"""Face detection behind one interface: `get_detector(name)(image) -> list[Face]`.

Detectors (all offline, models shipped inside the installed packages):
- `hog`: dlib's HOG + linear SVM frontal detector;
- `cnn`: dlib's CNN (MMOD) detector (face-recognition-models' mmod_human_face_detector.dat);
- `mediapipe`: mediapipe 0.10.21 BlazeFace (full-range model);
- `haar`: OpenCV's frontal-face Haar cascade.
Every face comes back in original-image pixels with a score and five landmarks (eye centres, nose
tip, mouth corners) from dlib's 68-point model, so alignment is the same whatever found the face.
Small images (FER's 48x48) are upsampled before detection, and every image gets a black border
(`pad`, a fraction of its size) so that tightly cropped faces (UTKFace, ORL) are found whole;
`fallback_whole=True` returns the whole image as one face when nothing is found.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from facelab.errors import FacelabError

DETECTORS = ("hog", "cnn", "mediapipe", "mediapipe-full", "haar")


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels
    score: float
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((5, 2), np.float32))  # 5 x (x, y)
    whole_image: bool = False  # True when no face was found and the image itself stands in

    def as_dict(self) -> dict:
        return {"box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4),
                "landmarks": np.round(self.landmarks, 1).tolist(), "whole_image": self.whole_image}


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise FacelabError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale == 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)


class Detector:
    """Finds faces in an RGB uint8 image. `min_side`: smaller images are upsampled to it first;
    `upsample`: dlib's own pyramid upsampling (hog, cnn; face_recognition's `number_of_times_to_upsample`);
    `landmarks=False` leaves each face's five landmarks at zero (one 68-point fit per face less, for
    callers that need only the boxes)."""

    name: str

    def __init__(self, min_side: int = 160, threshold: float | None = None, fallback_whole: bool = False,
                 pad: float = 0.15, upsample: int = 0, landmarks: bool = True):
        self.min_side, self.threshold, self.fallback_whole, self.pad = min_side, threshold, fallback_whole, pad
        self.upsample, self.landmarks = int(upsample), landmarks

    def _find(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> list[Face]:
        from facelab.faces.landmarks import five_points

        points = five_points if self.landmarks else (lambda image, box: np.zeros((5, 2), np.float32))
        image = _rgb(image)
        height, width = image.shape[:2]
        scale = max(1.0, self.min_side / min(height, width))
        scaled = _resize(image, scale)
        border = int(round(self.pad * max(scaled.shape[:2])))
        if border:
            scaled = np.pad(scaled, ((border, border), (border, border), (0, 0)))
        faces = []
        for (x0, y0, x1, y1), score in self._find(scaled):
            if self.threshold is not None and score < self.threshold:
                continue
            x0, y0, x1, y1 = ((v - border) / scale for v in (x0, y0, x1, y1))
            box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            faces.append(Face(box, float(score), points(image, box)))
        if not faces and self.fallback_whole:
            box = (0.0, 0.0, float(width), float(height))
            faces.append(Face(box, 0.0, points(image, box), whole_image=True))
        return sorted(faces, key=lambda f: -f.score)


class HogDetector(Detector):
    name = "hog"

    def _find(self, image):
        import dlib

        rects, scores, _ = _dlib_hog().run(image, self.upsample, -0.5)
        return [((r.left(), r.top(), r.right(), r.bottom()), s) for r, s in zip(rects, scores)]


class CnnDetector(Detector):
    name = "cnn"

    def _find(self, image):
        return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence) for d in _dlib_cnn()(image, self.upsample)]


class MediapipeDetector(Detector):
    """BlazeFace short-range (faces within ~2 m: portraits, crops); `mediapipe-full` is the full-range model."""

    name = "mediapipe"
    model_selection = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import mediapipe as mp

        self._model = mp.solutions.face_detection.FaceDetection(model_selection=self.model_selection,
                                                                min_detection_confidence=0.3)

    def _find(self, image):
        height, width = image.shape[:2]
        result = self._model.process(image)
        out = []
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            x0, y0 = rel.xmin * width, rel.ymin * height
            out.append(((x0, y0, x0 + rel.width * width, y0 + rel.height * height), det.score[0]))
        return out


class MediapipeFullDetector(MediapipeDetector):
    name = "mediapipe-full"
    model_selection = 1


class HaarDetector(Detector):
    name = "haar"

    def _find(self, image):
        import cv2

        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = _haar().detectMultiScale3(grey, scaleFactor=1.1, minNeighbors=4, minSize=(20, 20),
                                                      outputRejectLevels=True)
        return [((x, y, x + w, y + h), float(s)) for (x, y, w, h), s in zip(boxes, np.ravel(weights))]


@functools.cache
def _dlib_hog():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _dlib_cnn():
    import dlib
    import face_recognition_models

    return dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())


@functools.cache
def _haar():
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


_CLASSES = {cls.name: cls for cls in (HogDetector, CnnDetector, MediapipeDetector, MediapipeFullDetector, HaarDetector)}


def get_detector(name: str = "hog", **options) -> Detector:
    """A detector by name (see DETECTORS); options: min_side, threshold, fallback_whole, pad, upsample, landmarks."""
    if name not in _CLASSES:
        raise FacelabError(f"unknown face detector '{name}'; detectors: {', '.join(DETECTORS)}")
    return _CLASSES[name](**options)
