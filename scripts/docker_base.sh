#!/usr/bin/env bash
# Builds a small Debian bookworm image with Python 3.11 (python3 + python3-venv) from Debian's packages, for
# machines that reach Debian's package archive but no image registry: debootstrap --variant=minbase into a
# temporary folder, drop caches and docs, `docker import`. Needs root, debootstrap and a running Docker daemon.
#   scripts/docker_base.sh [TAG]          (default knowmix-base:bookworm; DEBIAN_MIRROR overrides the mirror)
set -euo pipefail
tag=${1:-knowmix-base:bookworm}
suite=bookworm
work=$(mktemp -d "${TMPDIR:-/tmp}/knowmix-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

# shellcheck disable=SC2086  # an empty DEBIAN_MIRROR means debootstrap's default mirror
debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$rootfs" ${DEBIAN_MIRROR:-}

# What a runtime image never needs: downloaded .debs, package lists, docs, man pages, translations.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
find "$rootfs"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} +

tar --numeric-owner -C "$rootfs" -c . \
  | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' \
      -m "debootstrap --variant=minbase --include=python3,python3-venv $suite" - "$tag"
docker image ls "$tag"
