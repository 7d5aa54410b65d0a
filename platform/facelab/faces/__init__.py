"""The offline face pipeline: detect -> landmarks -> align -> encode, and distances between faces.

    faces = get_detector("hog")(image)            # boxes, scores, 5 landmarks, in image pixels
    codes = FaceEncoder().encode(image, [f.box for f in faces], model="mean")
    d = distances(codes_a, codes_b, "mean")       # the seed's mean of small and large
"""

from facelab.faces.detect import DETECTORS, Detector, Face, get_detector
from facelab.faces.encode import MODELS, FaceEncoder, distances
from facelab.faces.landmarks import FaceMesh, align, dlib_points, five_points

__all__ = ["DETECTORS", "MODELS", "Detector", "Face", "FaceEncoder", "FaceMesh", "align", "distances", "dlib_points",
           "five_points", "get_detector"]
