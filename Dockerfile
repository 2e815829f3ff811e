# syntax=docker/dockerfile:1
# emotion2vec-webui GPU image: CUDA runtime, the project's pinned PyTorch built for CUDA, non-root.
#
#   docker build -t emotion2vec-webui .
#   docker run --gpus all -p 7860:7860 \
#     -v e2v-modelscope:/home/app/.cache/modelscope -v e2v-hf:/home/app/.cache/huggingface \
#     -v "$PWD/outputs:/app/outputs" emotion2vec-webui
#
# Settings are E2V_* environment variables (docker run -e …), see "Settings" below and README.
# Without a GPU the same image runs on CPU (E2V_DEVICE=auto falls back, and says so in the log).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

# CUDA build of torch to install: the wheel index suffix (cu126, cu128, …) must match the base image's CUDA.
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# torch first, from PyTorch's CUDA index (PyPI's default torch is the CPU/other build);
# ==2.13.0 in pyproject.toml is then already satisfied by 2.13.0+cu128.
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"

WORKDIR /app
COPY pyproject.toml requirements.txt README.md app.py ./
COPY emotion2vec_webui ./emotion2vec_webui
RUN pip install . && python -c "import emotion2vec_webui.cli.main"

# Non-root user; the model caches and outputs/ are volumes it owns.
RUN useradd --create-home --home-dir /home/app --uid 10001 app \
 && mkdir -p /home/app/.cache/modelscope /home/app/.cache/huggingface /app/outputs /app/logs /tmp/gradio \
 && chown -R app:app /home/app /app/outputs /app/logs /tmp/gradio
USER app

# Settings (all optional; defaults in SPEC.md / README):
#   E2V_MODEL           emotion2vec_plus_large | _base | _seed | a local model dir (mount it)
#   E2V_HUB             ms (ModelScope, default) | hf (Hugging Face)
#   E2V_DEVICE          auto | cpu | cuda | cuda:N        E2V_PRECISION  auto | fp32 | bf16 | fp16
#   E2V_MAX_UPLOAD_MB   100    E2V_MAX_DURATION_S 600    E2V_MIN_DURATION_S 0.1
#   E2V_MAX_QUEUE       32 (beyond it: 503 overloaded with Retry-After)
#   E2V_API_TOKEN       when set, /api/* and /metrics need "Authorization: Bearer <token>", the UI a login
#   E2V_INPUT_DIRS      folders (":"-separated) that JSON "audio_path" may read; unset: refused
#   E2V_LOG_LEVEL       INFO   E2V_LOG_FORMAT text | json
ENV E2V_OUTPUT_DIR=/app/outputs \
    E2V_LOG_DIR=/app/logs \
    MODELSCOPE_CACHE=/home/app/.cache/modelscope \
    HF_HOME=/home/app/.cache/huggingface \
    GRADIO_TEMP_DIR=/tmp/gradio \
    GRADIO_ANALYTICS_ENABLED=False

VOLUME ["/home/app/.cache/modelscope", "/home/app/.cache/huggingface", "/app/outputs"]
EXPOSE 7860

# Liveness only (/healthz answers while the model still loads); orchestrators should use /readyz for traffic.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=4)"]

ENTRYPOINT ["emotion2vec-webui"]
CMD ["serve", "--host", "0.0.0.0", "--port", "7860"]
