"""Python grpcio as a client: calls METHOD on ADDRESS once with an empty request (raw
bytes, nothing decoded) and prints the status code's name and details, as grpcio's own
client sees them, as one JSON line. loadagent's tests compare their report with it.

Usage: grpc_client.py ADDRESS /package.Service/Method [unary|server_stream] [MAX_RECEIVE]
"""

import json
import sys

import grpc


def main():
    address, method = sys.argv[1], sys.argv[2]
    shape = sys.argv[3] if len(sys.argv) > 3 else "unary"
    options = []
    if len(sys.argv) > 4:
        options.append(("grpc.max_receive_message_length", int(sys.argv[4])))
    with grpc.insecure_channel(address, options=options) as channel:
        identity = lambda b: b  # noqa: E731
        try:
            if shape == "unary":
                call = channel.unary_unary(
                    method, request_serializer=identity, response_deserializer=identity
                )
                call(b"", timeout=10)
            else:
                call = channel.unary_stream(
                    method, request_serializer=identity, response_deserializer=identity
                )
                for _ in call(b"", timeout=10):
                    pass
            print(json.dumps({"code": "OK", "details": ""}))
        except grpc.RpcError as e:
            print(json.dumps({"code": e.code().name, "details": e.details()}))


if __name__ == "__main__":
    main()
