"""Speech emotion recognition with an emotion2vec+ ONNX export: onnxruntime, numpy, soundfile and soxr only.

    python infer.py clip.wav [more.wav ...] [--int8] [--frames] [--embedding]

Prints one JSON object per file (JSON Lines), the fields of
``emotion2vec-webui recognize --json`` that this runner has: emotion,
emotion_zh, confidence, scores, granularity, audio, model, head (when the
export holds a trained classifier head), dimensions (a regression head's target values, e.g. arousal, valence;
per frame too with --frames, unsmoothed), calibration (when it holds one: ``export --calibration``; the scores it
calibrates are then softmax(logits / temperature + bias)) and frames when asked (per-frame scores, unsmoothed). Recordings longer than --window-s
seconds are classified in non-overlapping windows whose frame embeddings are
pooled (the app itself cuts at pauses with overlap; scores then differ a little).
Written by ``emotion2vec-webui export``; needs no PyTorch, no FunASR, no emotion2vec-webui.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf
import soxr

HERE = Path(__file__).resolve().parent
RATE = 16000
HOP, FIELD = 320, 400  # samples between frames, samples one frame sees


def load_audio(path):
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != RATE:
        audio = soxr.resample(audio, rate, RATE, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32), rate, sf.info(path).channels


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def head_logits(custom, embedding):
    """The trained head on the utterance embedding: standardise, dense layers with ReLU between (logits)."""
    x = (embedding.astype(np.float64) - custom["mean"]) / custom["scale"]
    layers = sum(1 for k in custom.files if k.startswith("W"))
    for i in range(layers):
        x = x @ custom[f"W{i}"].astype(np.float64) + custom[f"b{i}"]
        x = np.maximum(x, 0) if i < layers - 1 else x
    return x


def calibrated(calibration, logits):
    """softmax(logits / temperature + bias): the calibrated probabilities (calibration.json, export --calibration)."""
    return softmax(np.asarray(logits, dtype=np.float64) / calibration["temperature"] + np.array(calibration["bias"]))


def dimensions(spec, config, custom, embedding, feats):
    """A regression head's values on the utterance embedding (and on each frame when ``feats`` is given)."""
    targets = spec["labels"]
    values = head_logits(custom, embedding)
    block = {
        "name": spec["name"],
        "kind": "regression",
        "targets": targets,
        "targets_zh": spec["labels_zh"],
        "values": {t: round(float(v), 5) for t, v in zip(targets, values)},  # noqa: B905 (Python 3.8+)
        "checkpoint_sha256": config["custom_head"]["checkpoint_sha256"],
        "frames": None,
    }
    if feats is not None:  # per frame, unsmoothed (the app smooths them over E2V_FRAME_SMOOTHING_S)
        raw = np.round(head_logits(custom, feats), 5).tolist()
        block["frames"] = {
            "hop_s": HOP / RATE,
            "smoothing_s": 0.0,
            "targets": targets,
            "values": raw,
            "raw_values": raw,
        }
    return block


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("audio", nargs="+")
    p.add_argument("--int8", action="store_true", help="run model.int8.onnx")
    p.add_argument("--frames", action="store_true", help="add per-frame scores")
    p.add_argument("--embedding", action="store_true", help="add the utterance embedding")
    p.add_argument("--window-s", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: its default)")
    args = p.parse_args(argv)
    config = json.loads((HERE / "config.json").read_text("utf-8"))
    labels = json.loads((HERE / "labels.json").read_text("utf-8"))["labels"]
    keys = [lab["en"] for lab in labels]
    zh = {lab["en"]: lab["zh"] for lab in labels}
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    graph = HERE / ("model.int8.onnx" if args.int8 else "model.onnx")
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    head = np.load(HERE / "head.npz")
    custom = np.load(HERE / "custom_head.npz") if (HERE / "custom_head.npz").is_file() else None
    regression = custom is not None and (config.get("custom_head") or {}).get("kind") == "regression"
    head_spec = json.loads((HERE / "labels.json").read_text("utf-8")).get("head") if custom is not None else None
    calibration = None
    if (HERE / "calibration.json").is_file():
        calibration = json.loads((HERE / "calibration.json").read_text("utf-8"))
    for path in args.audio:
        wav, rate, channels = load_audio(path)
        if wav.size < FIELD:
            print(json.dumps({"error": f"{path}: shorter than {FIELD} samples at 16 kHz"}), flush=True)
            continue
        window = int(args.window_s * RATE) if args.window_s > 0 else wav.size
        head_scores = None
        if wav.size <= window:
            outputs = session.run(None, {"wav": wav[None]})
            scores, frame_logits, embedding, feats = outputs[0][0], outputs[1][0], outputs[2][0], outputs[3][0]
            if custom is not None and not regression:
                head_scores = outputs[4][0]
        else:  # non-overlapping windows of whole frames; the head on the mean of all frames
            frames, step = [], (window // HOP) * HOP
            for start in range(0, wav.size, step):
                piece = wav[start : start + step + FIELD - HOP]
                if piece.size >= FIELD:
                    frames.append(session.run(["frame_embeddings"], {"wav": piece[None]})[0][0])
            feats = np.concatenate(frames)
            embedding = feats.mean(axis=0)
            scores = softmax(embedding @ head["weight"].T + head["bias"])
            frame_logits = feats @ head["weight"].T + head["bias"]
            if custom is not None and not regression:
                head_scores = softmax(head_logits(custom, embedding))
        if calibration is not None and calibration["target"] == "nine":  # the nine classes' logits, calibrated
            scores = calibrated(calibration, embedding.astype(np.float64) @ head["weight"].T + head["bias"])
            frame_logits = frame_logits / calibration["temperature"] + np.array(calibration["bias"])
        elif calibration is not None and custom is not None and not regression:  # the trained head's
            head_scores = calibrated(calibration, head_logits(custom, embedding))
        top = int(np.argmax(scores))
        result = {
            "emotion": keys[top],
            "emotion_zh": zh[keys[top]],
            "confidence": round(float(scores[top]), 6),
            "scores": {k: round(float(s), 6) for k, s in zip(keys, scores)},  # noqa: B905 (Python 3.8+)
            "granularity": "frame" if args.frames else "utterance",
            "audio": {
                "source_name": Path(path).name,
                "duration_s": round(wav.size / RATE, 4),
                "original_sample_rate": rate,
                "original_channels": channels,
                "sample_rate": RATE,
            },
            "model": {
                "name": config["source_model"]["name"],
                "hub": config["source_model"]["hub"],
                "hub_id": config["source_model"]["hub_id"],
                "device": "cpu",
                "dtype": "onnx-int8" if args.int8 else "onnx-float32",
                "random_weights": config["source_model"]["random_weights"],
            },
        }
        if head_scores is not None:  # a trained head exported with --head: result.json's "head" block
            spec, top_h = head_spec, int(np.argmax(head_scores))
            result["head"] = {
                "name": spec["name"],
                "labels": spec["labels"],
                "labels_zh": spec["labels_zh"],
                "label": spec["labels"][top_h],
                "label_zh": spec["labels_zh"][top_h],
                "confidence": round(float(head_scores[top_h]), 6),
                "scores": {k: round(float(v), 6) for k, v in zip(spec["labels"], head_scores)},  # noqa: B905
                "checkpoint_sha256": config["custom_head"]["checkpoint_sha256"],
            }
        if regression:  # a regression head exported with --head: result.json's "dimensions" block
            result["dimensions"] = dimensions(head_spec, config, custom, embedding, feats if args.frames else None)
        if calibration is not None:
            result["calibration"] = {
                "name": calibration["name"],
                "target": calibration["target"],
                "temperature": round(calibration["temperature"], 6),
                "bias": any(b != 0 for b in calibration["bias"]),
                "checkpoint_sha256": calibration["checkpoint_sha256"],
                "created": calibration.get("created"),
            }
        if args.frames:
            result["frames"] = {
                "hop_s": HOP / RATE,
                "smoothing_s": 0.0,
                "labels": keys,
                "scores": np.round(softmax(frame_logits), 5).tolist(),
            }
        if args.embedding:
            result["embedding"] = {"shape": list(embedding.shape), "values": embedding.round(6).tolist()}
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
