# knowmix in a container: `make docker && docker run --rm knowmix` runs the demo (ENTRYPOINT knowmix).
# `make docker` first builds a wheelhouse on the host (the knowmix wheel and every runtime dependency, the CPU
# build of torch), so the build itself needs no network and no index: the image installs only from it.
# BASE: python:3.11-slim where an image registry is reachable; `make docker` passes knowmix-base:bookworm, made
# from Debian's packages by scripts/docker_base.sh where none is. Either has Python 3.11 with venv.
ARG BASE=python:3.11-slim

FROM ${BASE} AS install
COPY wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv /opt/knowmix \
 && /opt/knowmix/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse knowmix \
 && cd /opt/knowmix/lib/python3.11/site-packages \
 && rm -rf torch/test torch/include pyarrow/include \
 && find numpy scipy pyarrow sympy -depth -type d -name tests -exec rm -rf {} + \
 && /opt/knowmix/bin/knowmix -V

# Only the venv goes into the image: no wheelhouse, no pip cache, no compiler; above, torch's C++ test binaries
# and headers and the test suites of numpy, scipy, pyarrow and sympy (about 250 MB) are left out too.
FROM ${BASE}
COPY --from=install /opt/knowmix /opt/knowmix
ENV PATH=/opt/knowmix/bin:$PATH PYTHONUNBUFFERED=1 LANG=C.UTF-8
WORKDIR /work
ENTRYPOINT ["knowmix"]
CMD ["demo", "--output", "/work/out/demo"]
