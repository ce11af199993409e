"""Compiles a .proto with grpc_tools at a test server's start-up and makes its modules
importable: shared by the Python servers of loadagent's tests."""

import os
import sys

from grpc_tools import protoc


def compile_proto(proto_dir, proto_file, out_dir):
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    code = protoc.main(
        [
            "protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(proto_dir, proto_file),
        ]
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out_dir)
