# cliffguard: gateway, judge worker and controller in one slim image (run as a non-root user).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY router ./router
COPY judges ./judges
COPY monitoring ./monitoring
# the CPU build of torch first, so nothing pulls the CUDA one; then the project into a venv
RUN python -m venv /opt/cliffguard \
 && /opt/cliffguard/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && /opt/cliffguard/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 cliffguard
COPY --from=build /opt/cliffguard /opt/cliffguard
ENV PATH=/opt/cliffguard/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    CLIFFGUARD_DATA_DIR=/data \
    CLIFFGUARD_LISTEN__HOST=0.0.0.0
RUN mkdir /data && chown cliffguard /data
USER 10001
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["cliffguard"]
CMD ["serve", "--config", "/etc/cliffguard/cliffguard.yaml"]
