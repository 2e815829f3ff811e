"""Random-weight stand-ins of the conversation models (ASR, speaker, VAD), in FunASR's own layout.

Like :mod:`standins` for emotion2vec: each stand-in is FunASR's own model
class (looked up in ``funasr.register.tables``) built from the config the
real model is published with (copies in ``model/data/conversation/``; see
``shared/reference/README-asr-speaker.md``), with seeded random weights, and
written as a directory that loads through the same ``funasr.AutoModel`` path
(:mod:`conversation_models`) as the downloaded model:

- ``sensevoice``: ``SenseVoiceSmall`` (published: 234M parameters, 25,055
  tokens). The tiny stand-in keeps the graph (SAN-M encoder, CTC head,
  language / text-norm / event / emotion queries) with 2 + 1 blocks of width
  64 and a tiny SentencePiece BPE tokenizer trained here (the ``sentencepiece``
  package is FunASR's own tokenizer back-end) that also knows SenseVoice's
  ``<|en|>`` / ``<|HAPPY|>`` … tags, so random output can carry them.
- ``paraformer-zh``: ``SeacoParaformer``, what FunASR's ``paraformer-zh``
  name resolves to (published: 8,404 tokens; config from FunASR's
  ``funasr/models/seaco_paraformer/template.yaml``, see the copy's header).
  The tiny stand-in keeps the graph (SAN-M encoder, CIF predictor with its
  timestamp head, SAN-M decoder, the SeACo hot-word decoder) at width 64
  with 2 / 1 / 1 blocks, and a tiny character vocabulary (``tokens.json``,
  FunASR's ``CharTokenizer``, as the published folder has).
- ``campplus``: ``CAMPPlus`` at its published size (6.85M parameters,
  192-dim embeddings): it is small, so speaker timing is real.
- ``fsmn-vad``: ``FsmnVADStreaming`` at its published size. The conversation
  pipeline detects speech with silero-vad (real weights ship in its wheel);
  the stand-in exists so FunASR's own ``vad_model`` pipeline can be tried
  offline.

Every directory carries the ``RANDOM_WEIGHTS_MARKER`` file, so results say
``random_weights``. Nothing here ever claims a word or a speaker.
"""

from __future__ import annotations

import copy
import io
import json
import os
from importlib import resources
from pathlib import Path

from emotion2vec_webui.model.standins import RANDOM_WEIGHTS_MARKER, model_folder

KINDS = ("sensevoice", "paraformer-zh", "campplus", "fsmn-vad")

# A tiny character vocabulary in the published layout: blank, <s>, </s> first, <unk> last (FunASR's CharTokenizer).
PARAFORMER_TOKENS = ("<blank>", "<s>", "</s>", *"你好请问有什么可以帮您谢再见明天我的订单到了坏", "hello", "thank",
                     "you", "order", "please", "<unk>")  # fmt: skip

# SenseVoice's special tokens (its published tokenizer has them as pieces).
SENSEVOICE_TAGS = (
    "<|zh|>", "<|en|>", "<|yue|>", "<|ja|>", "<|ko|>", "<|nospeech|>",
    "<|HAPPY|>", "<|SAD|>", "<|ANGRY|>", "<|NEUTRAL|>", "<|FEARFUL|>", "<|DISGUSTED|>", "<|SURPRISED|>",
    "<|EMO_UNKNOWN|>", "<|Speech|>", "<|BGM|>", "<|Laughter|>", "<|Applause|>", "<|withitn|>", "<|woitn|>",
)  # fmt: skip

_CORPUS = (
    "hello how are you today thank you for calling",
    "i would like to speak to the manager about my bill",
    "the order arrived late and the box was broken",
    "we can send a replacement tomorrow morning",
    "ni hao qing wen you shen me ke yi bang nin",
    "xie xie zai jian ming tian jian",
    "that is not what i was told last week",
    "please hold while i check your account",
)


def reference_config(kind: str) -> dict:
    """The published config.yaml of ``kind`` (``sensevoice``, ``campplus``, ``fsmn-vad``) as a dict."""
    import yaml

    name = {"sensevoice": "sensevoice_small", "paraformer-zh": "paraformer_zh", "campplus": "campplus",
            "fsmn-vad": "fsmn_vad"}[kind]  # fmt: skip
    text = resources.files("emotion2vec_webui.model").joinpath(f"data/conversation/{name}.config.yaml")
    return yaml.safe_load(text.read_text("utf-8"))


def train_tiny_tokenizer(vocab_size: int = 160) -> bytes:
    """A tiny SentencePiece BPE model (bytes) with SenseVoice's tags as user-defined pieces."""
    import sentencepiece as spm

    out = io.BytesIO()
    sentences = [line for _ in range(20) for line in _CORPUS]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=out,
        vocab_size=vocab_size,
        model_type="bpe",
        hard_vocab_limit=False,
        user_defined_symbols=list(SENSEVOICE_TAGS),
        minloglevel=2,
    )
    return out.getvalue()


def _sensevoice(seed: int, tmp: Path) -> tuple[dict, int, dict]:
    import sentencepiece as spm
    import torch

    from emotion2vec_webui.model import funasr_import

    cfg = copy.deepcopy(reference_config("sensevoice"))
    tables = funasr_import.register_config(cfg)
    cfg["encoder_conf"].update(output_size=64, attention_heads=2, linear_units=128, num_blocks=2, tp_blocks=1)
    bpe = train_tiny_tokenizer()
    (tmp / "tiny.bpe.model").write_bytes(bpe)
    sp = spm.SentencePieceProcessor(model_proto=bpe)
    cfg["tokenizer_conf"]["bpemodel"] = "tiny.bpe.model"
    torch.manual_seed(seed)
    lfr_m = cfg["frontend_conf"]["lfr_m"]
    model = tables.model_classes["SenseVoiceSmall"](
        **{k: cfg[k] for k in ("encoder", "encoder_conf")}, **cfg["model_conf"],
        vocab_size=sp.get_piece_size(), input_size=80 * lfr_m,
    )  # fmt: skip
    with torch.no_grad():  # a visible spread in the CTC head, so the output is not all blanks
        model.ctc.ctc_lo.weight.normal_(0.0, 0.5)
        model.ctc.ctc_lo.bias.normal_(0.0, 0.5)
        model.ctc.ctc_lo.bias[0] += 1.0  # blanks between tokens, as CTC output has
    metas = {"init_param": "model.pt", "config": "config.yaml", "tokenizer_conf": {"bpemodel": "tiny.bpe.model"}}
    return cfg, model, {"task": "auto-speech-recognition", "model": {"type": "funasr"}, "file_path_metas": metas}


def _paraformer(seed: int, tmp: Path):
    import torch

    from emotion2vec_webui.model import funasr_import

    cfg = copy.deepcopy(reference_config("paraformer-zh"))
    tables = funasr_import.register_config(cfg)
    width = 64
    cfg["encoder_conf"].update(output_size=width, attention_heads=2, linear_units=128, num_blocks=2)
    cfg["decoder_conf"].update(attention_heads=2, linear_units=128, num_blocks=1, att_layer_num=1)
    cfg["seaco_decoder_conf"].update(attention_heads=2, linear_units=128, num_blocks=1)
    cfg["predictor_conf"]["idim"] = width
    # the hot-word encoder reads the decoder's embeddings; the published 8377 lies outside a tiny vocabulary
    cfg["model_conf"].update(inner_dim=width, NO_BIAS=len(PARAFORMER_TOKENS) - 1)
    (tmp / "tokens.json").write_text(json.dumps(list(PARAFORMER_TOKENS), ensure_ascii=False), "utf-8")
    torch.manual_seed(seed)
    lfr_m = cfg["frontend_conf"]["lfr_m"]
    parts = ("specaug", "specaug_conf", "encoder", "encoder_conf", "decoder", "decoder_conf", "seaco_decoder",
             "seaco_decoder_conf", "predictor", "predictor_conf", "ctc_conf")  # fmt: skip
    model = tables.model_classes["SeacoParaformer"](
        **{k: cfg[k] for k in parts}, **cfg["model_conf"], vocab_size=len(PARAFORMER_TOKENS), input_size=80 * lfr_m,
    )  # fmt: skip
    with torch.no_grad():  # CIF fires about every 4th 60 ms frame (speech-like token rates), so turns get tokens
        for head, bias in ((model.predictor.cif_output, -1.1), (model.predictor.cif_output2, -0.5)):
            head.weight.normal_(0.0, 0.01)
            head.bias.fill_(bias)
    metas = {"init_param": "model.pt", "config": "config.yaml", "tokenizer_conf": {"token_list": "tokens.json"}}
    return cfg, model, {"task": "auto-speech-recognition", "model": {"type": "funasr"}, "file_path_metas": metas}


def _campplus(seed: int, tmp: Path):
    import torch

    from emotion2vec_webui.model import funasr_import

    cfg = copy.deepcopy(reference_config("campplus"))
    tables = funasr_import.register_config(cfg)
    torch.manual_seed(seed)
    model = tables.model_classes["CAMPPlus"](**cfg["model_conf"])
    metas = {"init_param": "model.pt", "config": "config.yaml"}
    return cfg, model, {"task": "speaker-verification", "model": {"type": "cam++"}, "file_path_metas": metas}


def _fsmn_vad(seed: int, tmp: Path):
    import torch

    from emotion2vec_webui.model import funasr_import

    cfg = copy.deepcopy(reference_config("fsmn-vad"))
    # The template names WavFrontend; the published model folder's config uses the streaming front-end,
    # which FsmnVADStreaming.inference needs (it fails with WavFrontend).
    cfg["frontend"] = "WavFrontendOnline"
    tables = funasr_import.register_config(cfg)
    torch.manual_seed(seed)
    model = tables.model_classes["FsmnVADStreaming"](
        encoder=cfg["encoder"], encoder_conf=cfg["encoder_conf"], **cfg["model_conf"]
    )
    metas = {"init_param": "model.pt", "config": "config.yaml"}
    return cfg, model, {"task": "voice-activity-detection", "model": {"type": "funasr"}, "file_path_metas": metas}


def make_conversation_standin(directory: str | os.PathLike, kind: str, seed: int = 0) -> Path:
    """Write a random-weight stand-in of ``kind`` (:data:`KINDS`) to ``directory``.

    Returns:
        The directory path (created; existing model files are replaced).
    """
    import torch
    import yaml

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    out = Path(directory).expanduser().resolve()
    with model_folder(out) as tmp:
        build = {"sensevoice": _sensevoice, "paraformer-zh": _paraformer, "campplus": _campplus,
                 "fsmn-vad": _fsmn_vad}[kind]  # fmt: skip
        cfg, model, configuration = build(seed, tmp)
        model.eval()
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save({"model": state}, tmp / "model.pt")
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), "utf-8")
        (tmp / "configuration.json").write_text(json.dumps({"framework": "pytorch", **configuration}, indent=2), "utf-8")
        n_params = sum(p.numel() for p in model.parameters())
        marker = {"random_weights": True, "kind": kind, "seed": seed, "parameters": n_params,
                  "created_by": "emotion2vec-webui make-test-model --kind " + kind}  # fmt: skip
        (tmp / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(marker, indent=2), "utf-8")
    return out
