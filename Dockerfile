# CUDA image of the vLLM drop-in environment (the default variant).
# Build context: the tarball that ./build.sh makes, not this repository:
#   ./build.sh && docker build -t vllm-dropin - < dist/vllm-dropin-cuda.tar.gz
# vLLM and its CUDA stack come with the official vLLM image of the locked version
# (environment/requirements-vllm-cuda.lock; the tests fail if VLLM_VERSION drifts from it).
# DRUM and the environment get a venv of their own, so neither closure can break the other;
# the vLLM process runs in the base image's Python (DROPIN_VLLM_PYTHON).
ARG VLLM_VERSION=0.25.0
FROM vllm/vllm-openai:v${VLLM_VERSION}
ARG VLLM_VERSION

ENV CODE_DIR=/opt/code \
    ADDRESS=0.0.0.0:8080 \
    HOME=/opt/home \
    PATH=/opt/venv/bin:$PATH \
    DROPIN_VLLM_PYTHON=/usr/bin/python3 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DO_NOT_TRACK=1 \
    VLLM_NO_USAGE_STATS=1 \
    HF_HUB_DISABLE_TELEMETRY=1

WORKDIR /opt/environment
# The image's only install step: the same script and lock that CI and the tarball test run. It
# also writes the bytecode of the base image's packages, which the image's user cannot write.
COPY install.sh requirements.lock ./
RUN ["bash", "install.sh", "/opt/venv", "requirements.lock"]
COPY start_server.sh ./
COPY schemas ./schemas
COPY vllm_dropin ./vllm_dropin

# Non-root; group 0 and g=u so that platforms running an arbitrary UID (OpenShift) can write too.
RUN useradd --uid 1000 --gid 0 --no-log-init --create-home --home-dir /opt/home app \
    && mkdir -p /opt/code \
    && chown -R 1000:0 /opt/code /opt/home \
    && chmod -R g=u /opt/code /opt/home
USER 1000:0
EXPOSE 8080
ENTRYPOINT ["/opt/environment/start_server.sh"]
