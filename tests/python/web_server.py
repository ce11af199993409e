"""A gRPC-Web server loadagent did not write, for its tests: sonora (gRPC-Web for Python's
ASGI) serving testing.echo.v1.Echo under hypercorn, over HTTP/1.1 and HTTP/2 (h2c prior
knowledge, or ALPN with TLS; mutual TLS with --tls-ca).

It prints `PORT <n>` once listening and, on SIGTERM, a JSON line with what it served
(unary calls, server streams, stream messages sent, and the distinct request messages), then
exits. sonora's ASGI server writes a unary call's trailer frame from bytes, as
`b'grpc-status': b'0'` (sonora 0.2.3): no gRPC-Web client finds a status there (a conforming
one fails the call; sonora's own client ignores the missing status). The server corrects that
unless --sonora-as-is, which the tests use to check loadagent judges such a frame as a
conforming client does. Its CORS preflight answer sends a text header value, which hypercorn
refuses (HTTP 500); the server answers preflights itself (allowing the request's Origin, or
only --allow-origin) unless --sonora-as-is. Say echoes the message; a message "fail:<CODE>:<text>" aborts with that status. Subscribe
sends inner.id replies, each after delay_ms.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import sys
import tempfile

import grpc
from compile_proto import compile_proto
from hypercorn.asyncio import serve
from hypercorn.config import Config
from sonora.asgi import grpcASGI


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls-cert", default="")
    parser.add_argument("--tls-key", default="")
    parser.add_argument("--tls-ca", default="", help="require client certificates signed by this CA")
    parser.add_argument("--sonora-as-is", action="store_true", help="keep sonora's unary trailer frame and CORS preflight as they are")
    parser.add_argument("--max-requests-per-connection", type=int, default=1000, help="hypercorn closes a connection after this many requests (its default: 1000)")
    parser.add_argument("--allow-origin", default="", help="the only origin CORS preflights allow (default: the request's)")
    args = parser.parse_args()

    if not args.sonora_as_is:
        from sonora import protocol

        pack = protocol.pack_trailers

        def text(v):
            return v.decode("ascii") if isinstance(v, bytes) else v

        protocol.pack_trailers = lambda trailers: pack([(text(k), text(v)) for k, v in trailers])

    here = os.path.dirname(os.path.abspath(__file__))
    compile_proto(here, "echo.proto", tempfile.mkdtemp(prefix="web-pb-"))
    import echo_pb2
    import echo_pb2_grpc

    state = {"unary": 0, "streams": 0, "stream_sent": 0, "preflights": 0, "messages": {}}
    clients = set()

    async def preflight(self, scope, receive, send):
        state["preflights"] += 1
        asked = dict(scope["headers"]).get(b"origin", b"*")
        allowed = args.allow_origin.encode("ascii") if args.allow_origin else asked
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", b"0"),
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", b"*"),
            (b"access-control-allow-origin", allowed),
            (b"access-control-expose-headers", b"*"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    if not args.sonora_as_is:
        grpcASGI._do_cors_preflight = preflight

    class Echo(echo_pb2_grpc.EchoServicer):
        async def Say(self, request, context):
            state["unary"] += 1
            if len(state["messages"]) < 10000:
                state["messages"][request.message] = state["messages"].get(request.message, 0) + 1
            if request.delay_ms:
                await asyncio.sleep(request.delay_ms / 1000.0)
            if request.message.startswith("fail:"):
                _, code, text = request.message.split(":", 2)
                await context.abort(getattr(grpc.StatusCode, code), text)
            return echo_pb2.SayReply(message=request.message)

        async def Subscribe(self, request, context):
            state["streams"] += 1
            for i in range(request.inner.id):
                if request.delay_ms:
                    await asyncio.sleep(request.delay_ms / 1000.0)
                state["stream_sent"] += 1
                yield echo_pb2.SayReply(message=str(i))

    grpc_app = grpcASGI()
    echo_pb2_grpc.add_EchoServicer_to_server(Echo(), grpc_app)

    async def app(scope, receive, send):
        # sonora passes ASGI lifespan events on to an application it does not have; answer
        # them here, so hypercorn does not log a warning at every start.
        if scope["type"] != "lifespan":
            # Each distinct client address and port is one connection the calls came on.
            if scope["type"] == "http" and scope.get("client"):
                clients.add(tuple(scope["client"]))
            return await grpc_app(scope, receive, send)
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 60
    config.keep_alive_max_requests = args.max_requests_per_connection
    if args.tls_cert:
        config.certfile = args.tls_cert
        config.keyfile = args.tls_key
        if args.tls_ca:
            config.ca_certs = args.tls_ca
            config.verify_mode = ssl.CERT_REQUIRED
    print(f"PORT {sock.getsockname()[1]}", flush=True)

    async def run():
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await serve(app, config, shutdown_trigger=done.wait)

    try:
        asyncio.run(run())
    except Exception as e:  # noqa: BLE001
        # hypercorn's HTTP/2 code (0.18) raises KeyError for DATA that arrives on a stream it
        # already answered and closed (a native gRPC reflection request it refused, when the
        # request's DATA comes in a later read): that connection's task dies, and at
        # shutdown the error resurfaces from the server's task group. What was served is
        # still counted: say so and print the counts.
        print(f"hypercorn ended with an error: {e!r}", file=sys.stderr, flush=True)
    state["connections"] = len(clients)
    print(json.dumps(state), flush=True)


if __name__ == "__main__":
    sys.exit(main())
