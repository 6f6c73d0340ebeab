"""Detectors of personal data in robot datasets: human faces in camera frames and personal-data
patterns in text (task instructions).

Faces: OpenCV's bundled frontal-face Haar cascade (``cv2.data.haarcascades``), which needs no model
download; it finds frontal faces of at least ``min_face_px`` pixels and misses profiles and small or
occluded faces, so a clean result lowers the risk rather than proving absence.

Text: emails, phone numbers (international, North American, or national with a trunk 0), IBANs
(ISO 13616 mod-97 check), payment card numbers (Luhn check) and IPv4 addresses. Matches are
reported by kind and character span only, so evidence never copies the personal data it found.
"""

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FACE_CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetector:
    """Frontal faces in RGB images, with OpenCV's bundled Haar cascade."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_face_px: int = 20):
        """Load the cascade; raises RuntimeError when the OpenCV install lacks it."""
        path = Path(cv2.data.haarcascades) / FACE_CASCADE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV could not load its face cascade {path}")
        self.scale_factor, self.min_neighbors, self.min_face_px = scale_factor, min_neighbors, min_face_px

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Return the (x, y, width, height) box of every face found in an H×W×3 uint8 RGB image."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        boxes = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_face_px, self.min_face_px),
        )
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in boxes]


_detectors = threading.local()


def face_detector(scale_factor: float, min_neighbors: int, min_face_px: int) -> FaceDetector:
    """The calling thread's FaceDetector with these settings, loaded on first use.

    Loading the cascade costs as much as scanning tens of frames (0.05-0.13 s), so it is loaded once per
    thread (and so once per Ray worker or audit process) rather than once per frame file; one per
    thread because OpenCV's detector keeps per-call state and must not be shared between threads.
    """
    cache = _detectors.__dict__.setdefault("by_settings", {})
    key = (scale_factor, min_neighbors, min_face_px)
    if key not in cache:
        cache[key] = FaceDetector(*key)
    return cache[key]


@dataclass(frozen=True)
class TextMatch:
    """One personal-data pattern found in a text: its kind and character span (never the text)."""

    kind: str
    start: int
    end: int


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    compact = re.sub(r"\s", "", text).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _phone_ok(text: str) -> bool:
    return 8 <= len(re.sub(r"\D", "", text)) <= 15


def _ipv4_ok(text: str) -> bool:
    return all(int(part) <= 255 for part in text.split("."))


# In priority order: a span claimed by an earlier kind is not reported again as a later one.
_PATTERNS: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
    (
        "email",
        re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        lambda s: True,
    ),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), _iban_ok),
    ("payment_card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card_ok),
    ("ip_address", re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])"), _ipv4_ok),
    (
        "phone",
        # International (+ or 00 prefix), North American (555) 123-4567, or a national number with a
        # trunk 0 (0612345678); never a fragment of a longer digit group such as a card number.
        re.compile(
            r"(?<![\w+])(?:(?:\+|00)\s?[1-9][\d\s().-]{6,18}\d"
            r"|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}"
            r"|0\d{9,10})(?![\s.-]?\d)"
        ),
        _phone_ok,
    ),
]
TEXT_KINDS = tuple(kind for kind, _, _ in _PATTERNS)


def scan_text(text: str) -> list[TextMatch]:
    """Find emails, IBANs, payment card numbers, IPv4 addresses and phone numbers in ``text``.

    Candidates must pass their checksum or shape check (mod-97, Luhn, octets <= 255, 8-15 digits);
    overlapping candidates go to the earlier kind in that list. Returns matches in text order.
    """
    found: list[TextMatch] = []
    for kind, pattern, valid in _PATTERNS:
        for match in pattern.finditer(text):
            span = match.span()
            if valid(match.group()) and not any(span[0] < m.end and m.start < span[1] for m in found):
                found.append(TextMatch(kind, *span))
    return sorted(found, key=lambda m: m.start)
