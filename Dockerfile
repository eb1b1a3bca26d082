# knowmix in a container: `docker build -t knowmix . && docker run --rm knowmix` runs the demo.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/knowmix
# CPU torch keeps the image small; build FROM a CUDA base and drop the index URL for GPUs.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.6"
COPY setup.cfg pyproject.toml README.md ./
COPY knowmix knowmix
COPY corpora corpora
COPY kg kg
COPY pipelines pipelines
COPY trainer trainer
RUN pip install .  # configs and lid.176.ftz ship inside the package; one fastText distribution: fasttext-numpy2
WORKDIR /work
ENTRYPOINT ["knowmix"]
CMD ["demo", "--output", "/work/out/demo"]
