#!/usr/bin/env bash
# Installs what the integration tests need beyond the Rust toolchain:
# - Python grpcio with health checking, reflection and grpc_tools (the gRPC server this
#   project did not write), hdrhistogram (a reader of our interval logs we did not write) and
#   kubernetes-validate (Kubernetes' own schemas for deploy/kubernetes/);
# - Chromium (Debian's package) to render the HTML report headless;
# - openssl (Debian's package): s_server is a TLS peer this project did not write;
# - prometheus (Debian's package): promtool checks /metrics, and a real server scrapes it;
# - docker-compose (Debian's package): validates docker-compose.yml without an engine;
# - Node's @grpc/grpc-js (npm, tests/node): a second gRPC implementation (interop
#   TestService server and client) and Node's own HTTP/2 server for malformed answers;
# - dnsmasq (Debian's dnsmasq-base): the DNS server of the fleet tests (A and SRV records
#   from a hosts file it re-reads on SIGHUP);
# - util-linux's prlimit and mount (Debian, usually present): descriptor limits and
#   read-only or full file systems for the hostile-input tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! python3 -c "import grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha, hdrh, kubernetes_validate, prometheus_client" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
fi
python3 -c "import grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha, hdrh, kubernetes_validate; print('python grpcio', grpc.__version__)"
missing=""
command -v chromium >/dev/null || missing="$missing chromium"
command -v openssl >/dev/null || missing="$missing openssl"
command -v promtool >/dev/null || missing="$missing prometheus"
command -v docker-compose >/dev/null || missing="$missing docker-compose"
command -v prlimit >/dev/null || missing="$missing util-linux"
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || missing="$missing dnsmasq-base"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "missing:$missing (apt-get install$missing)" >&2
    exit 1
  fi
fi
command -v node >/dev/null || { echo "missing: node (Node.js is on every machine of this project)" >&2; exit 1; }
if [ ! -d "$here/node/node_modules/@grpc/grpc-js" ] || [ ! -d "$here/node/node_modules/@grpc/proto-loader" ]; then
  (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
fi
node -e "console.log('node @grpc/grpc-js', require('$here/node/node_modules/@grpc/grpc-js/package.json').version)"
chromium --version
openssl version
promtool --version | head -n 1
PATH="$PATH:/usr/sbin" dnsmasq --version | head -n 1
