#!/usr/bin/env bash
# Installs what the integration tests need beyond the Rust toolchain: Python grpcio with
# health checking, reflection and grpc_tools (for the server this project did not write).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! python3 -c "import grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
fi
python3 -c "import grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha; print('python grpcio', grpc.__version__)"
