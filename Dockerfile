# Tether as a node-agent image: the daemon plus what it runs on a node (runc, crun, conmon,
# catatonit as the pause holder, the CNI plugins), on Debian 12 slim, with Tether
# pip-installed from this checkout into a venv at /opt/tether (its wheels in
# /opt/tether/wheels and the systemd unit in /usr/share/tether, for the chart's installer).
#
#   buildah bud -t tether:dev .        (or: docker build -t tether:dev .)
#
# Build arguments:
#   BASE           the base image (default debian:12-slim; the tests pass a locally made one)
#   NODE_PACKAGES  the Debian packages installed (scripts/image-inputs.sh reads this line)
#   PIP_INDEX_URL, PIP_NO_INDEX, PIP_FIND_LINKS
#                  pip's own variables, for a PyPI mirror or an offline wheel directory
#   http_proxy, https_proxy  honoured by apt and pip as usual
# As a node agent it runs privileged with the host's PID namespace, network and the
# paths of docs/deployment.md mounted in; the image does nothing special for that.
ARG BASE=debian:12-slim
FROM ${BASE} AS node

ARG NODE_PACKAGES="runc crun conmon catatonit containernetworking-plugins python3 python3-venv util-linux mount zstd iptables iproute2 ca-certificates"
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ${NODE_PACKAGES} \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# Built in a stage of its own from a copy of the checkout (.dockerignore keeps the venv and
# caches out), so the final image has no source and no build leftovers. The wheels Tether is
# installed from stay in the image: the Helm chart's installer (charts/tether/files/install.sh)
# installs Tether on the host from /opt/tether/wheels, with the unit in /usr/share/tether.
FROM node AS build
ARG PIP_INDEX_URL
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
COPY . /src
RUN python3 -m venv /opt/tether \
 && /opt/tether/bin/pip wheel --no-cache-dir --disable-pip-version-check -w /opt/tether/wheels /src \
 && /opt/tether/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --find-links /opt/tether/wheels tether \
 && /opt/tether/bin/tether --version

FROM node
COPY --from=build /opt/tether /opt/tether
COPY contrib/systemd/tether.service /usr/share/tether/tether.service
ENV PATH=/opt/tether/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.opencontainers.image.title="tether" \
      org.opencontainers.image.description="A Kubernetes CRI container runtime (node agent)"
ENTRYPOINT ["tether"]
CMD ["serve"]
