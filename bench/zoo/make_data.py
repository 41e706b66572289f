#!/usr/bin/python3
"""Makes calibration and test inputs for the zoo bench from real signals, not noise:
text rendered with Debian's DejaVu fonts for the PaddleOCR models (preprocessed as PaddleOCR does),
speech synthesised by espeak-ng for the audio models (16 kHz, int16 scale as openWakeWord feeds its
melspectrogram model). Features that chain models (mel frames -> embedding windows -> wake-word
windows, silero VAD states) are made afterwards by features.js with ONNX Runtime.

usage: /usr/bin/python3 bench/zoo/make_data.py OUT_DIR   (needs python3-pil, python3-scipy, espeak-ng)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.io import wavfile
from scipy.signal import resample_poly

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf"]
WORDS = ("invoice total amount paid due date account number customer service quantity price "
         "order shipping address street city station platform departure arrival gate seat "
         "temperature pressure volume model serial batch lot expiry warning caution open close").split()
PHRASES = [
    "hey jarvis", "alexa", "hey mycroft", "what is the weather today", "set a timer for five minutes",
    "turn on the kitchen lights", "the quick brown fox jumps over the lazy dog", "hey rhasspy",
    "please call my sister", "play some music", "how long until the train arrives", "stop",
    "remind me to buy milk", "what time is it", "open the garage door", "good morning",
]
VOICES = ["en", "en-us", "en-gb-x-rp", "en+f3", "en+m3", "en-us+f2"]


def text_line(rng, n_words):
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + f" {rng.integers(10, 99999)}"


def render_line(rng, h, w):
    """One text line on a light, slightly noisy background, as an HxWx3 uint8 RGB image."""
    font = ImageFont.truetype(os.path.join(FONT_DIR, rng.choice(FONTS)), int(h * rng.uniform(0.55, 0.75)))
    bg = int(rng.integers(200, 256))
    img = Image.new("RGB", (w, h), (bg, bg, bg))
    d = ImageDraw.Draw(img)
    ink = int(rng.integers(0, 80))
    d.text((int(rng.integers(2, 12)), int(h * 0.1)), text_line(rng, int(rng.integers(2, 5))), font=font,
           fill=(ink, ink, ink))
    a = np.asarray(img).astype(np.float32) + rng.normal(0, 6, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def render_page(rng, h, w):
    """A page with several text lines at random places (detector input)."""
    bg = int(rng.integers(200, 256))
    img = Image.new("RGB", (w, h), (bg, bg, bg))
    d = ImageDraw.Draw(img)
    y = int(rng.integers(2, 12))
    while y < h - 16:
        size = int(rng.integers(12, 22))
        font = ImageFont.truetype(os.path.join(FONT_DIR, rng.choice(FONTS)), size)
        ink = int(rng.integers(0, 90))
        d.text((int(rng.integers(2, w // 3)), y), text_line(rng, int(rng.integers(1, 4))), font=font,
               fill=(ink, ink, ink))
        y += size + int(rng.integers(4, 20))
    a = np.asarray(img).astype(np.float32) + rng.normal(0, 5, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def ocr_rec_norm(img):
    """PaddleOCR rec/cls preprocessing: BGR, /255, (x-0.5)/0.5, CHW."""
    x = img[:, :, ::-1].astype(np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)


def ocr_det_norm(img):
    """PaddleOCR det preprocessing: BGR, /255, ImageNet mean/std, CHW."""
    x = img[:, :, ::-1].astype(np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)


def speech(rng, text):
    """espeak-ng speech at 16 kHz, int16 scale, with a little room noise."""
    with tempfile.TemporaryDirectory() as td:
        wav = os.path.join(td, "s.wav")
        subprocess.run(["espeak-ng", "-v", str(rng.choice(VOICES)), "-s", str(int(rng.integers(130, 190))),
                        "-w", wav, text], check=True, capture_output=True)
        sr, a = wavfile.read(wav)
    a = resample_poly(a.astype(np.float64), 16000, sr) if sr != 16000 else a.astype(np.float64)
    a = a * rng.uniform(0.4, 1.0) + rng.normal(0, 30, a.shape)
    return np.clip(a, -32768, 32767).astype(np.float32)


def fixed_len(a, n, rng):
    if len(a) >= n:
        s = int(rng.integers(0, len(a) - n + 1))
        return a[s:s + n]
    out = rng.normal(0, 30, n).astype(np.float32)
    s = int(rng.integers(0, n - len(a) + 1))
    out[s:s + len(a)] = a
    return out


# Samples per split. ocr_cls: the validation part of a search (the last quarter) must hold enough
# images that the final choice is not noise (32 images left 8). The speech stream says each phrase
# REPEATS times (other voices and speeds), so that the wake-word windows features.js takes from it
# are far enough apart.
N_OCR_DET, N_OCR_REC, N_OCR_CLS = 4, 16, 128
REPEATS = 3


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "bench/zoo/data"
    os.makedirs(out, exist_ok=True)
    for split, seed in (("calib", 0), ("test", 1)):
        # One random stream per split and kind: changing one count leaves the other files alone.
        rng = np.random.default_rng([seed, 0])
        np.save(f"{out}/ocr_det_{split}.npy", np.stack([ocr_det_norm(render_page(rng, 160, 320)) for _ in range(N_OCR_DET)]))
        rng = np.random.default_rng([seed, 1])
        np.save(f"{out}/ocr_rec_{split}.npy", np.stack([ocr_rec_norm(render_line(rng, 48, 320)) for _ in range(N_OCR_REC)]))
        rng = np.random.default_rng([seed, 2])
        cls = []
        for i in range(N_OCR_CLS):
            img = render_line(rng, 48, 192)
            cls.append(ocr_rec_norm(img[::-1, ::-1] if i % 2 else img))  # half upside down
        np.save(f"{out}/ocr_cls_{split}.npy", np.stack(cls))
        # Speech: one long stream (for the streaming VAD and the wake-word chain) and 1 s clips.
        rng = np.random.default_rng([seed, 3])
        order = rng.permutation(np.tile(np.arange(len(PHRASES)), REPEATS))
        utts = [speech(rng, PHRASES[i]) for i in order]
        gaps = [rng.normal(0, 30, int(rng.integers(3000, 9000))).astype(np.float32) for _ in utts]
        stream = np.concatenate([x for pair in zip(gaps, utts) for x in pair])
        np.save(f"{out}/speech_stream_{split}.npy", stream)
        np.save(f"{out}/speech_1s_{split}.npy", np.stack([fixed_len(u, 16000, rng) for u in utts]))
    print("data in", out)


if __name__ == "__main__":
    main()
