"""What a gRPC-Web client written by others sees: sonora's client calls testing.echo.v1.Echo/Say
once over gRPC-Web (HTTP/1.1) and prints a JSON line {"code": NAME, "details": TEXT, "message":
REPLY}, so the tests compare loadagent's status and message with it.

Usage: web_client.py URL MESSAGE
"""

import json
import os
import sys
import tempfile

import grpc
import sonora.client
from compile_proto import compile_proto


def main():
    url, message = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    compile_proto(here, "echo.proto", tempfile.mkdtemp(prefix="web-client-pb-"))
    import echo_pb2

    with sonora.client.insecure_web_channel(url) as channel:
        # Not the generated stub: today's grpcio-tools passes stubs an argument sonora's
        # channel does not take.
        say = channel.unary_unary(
            "/testing.echo.v1.Echo/Say",
            request_serializer=echo_pb2.SayRequest.SerializeToString,
            response_deserializer=echo_pb2.SayReply.FromString,
        )
        try:
            reply = say(echo_pb2.SayRequest(message=message))
            out = {"code": "OK", "details": "", "message": reply.message}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details() or "", "message": None}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
