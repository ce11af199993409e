"""A gRPC echo server on Python grpcio, for loadagent's integration tests.

It compiles tests/python/echo.proto at start-up (grpc_tools), serves testing.echo.v1.Echo
with grpc.health.v1 and server reflection (grpcio-reflection: v1alpha only), prints
`PORT <n>` once listening, `FIRST` on the first request, and on SIGTERM prints a JSON line
with what it received (counts, and the traceparent of every call by method), then exits.

Options:
  --stall-after N --stall-ms M   the Nth request holds a lock for M ms that every request
                                 takes, so the whole server stalls once; in Chat, the Nth
                                 stream message (server-wide) is answered M ms late
  --require-metadata KEY=VALUE   answer UNAUTHENTICATED unless the request carries it
  --pid-file PATH                write the server's pid there
  --metrics-port-file PATH       serve prometheus_client's default metrics on a loopback port
                                 and write the port there
  --fail-every N                 every Nth request ends with UNAVAILABLE "planned failure"
  --fail-attempts N              the first N requests carrying each distinct `message` end
                                 with UNAVAILABLE (a client's retries then get through)
  --pushback-ms VALUE            failures carry the trailer grpc-retry-pushback-ms: VALUE
                                 (any text: "-1" and "soon" ask a client not to retry)
  --max-concurrent-streams N     the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS to announce

A line on stdin changes it while it runs (it prints "OK <line>" once done): SERVING or
NOT_SERVING sets the health status; BREAK makes Say answer wrongly (an empty message) while
health stays as it is — the case method probes exist for.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from compile_proto import compile_proto as shared_compile
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


def compile_proto(out_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    shared_compile(here, "echo.proto", out_dir)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (127.0.0.2, … for a fleet)")
    parser.add_argument("--stall-after", type=int, default=0)
    parser.add_argument("--workers", type=int, default=64, help="threads serving calls: with a fixed delay_ms S, the capacity is about workers / S")
    parser.add_argument("--stall-ms", type=int, default=0)
    parser.add_argument("--require-metadata", default="")
    parser.add_argument("--grpc-option", action="append", default=[], help="NAME=INT, a grpcio server channel option (e.g. grpc.max_connection_age_ms=1000); repeatable")
    parser.add_argument("--record-metadata", action="append", default=[], help="keep the values of this metadata key (repeatable)")
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--fail-attempts", type=int, default=0)
    parser.add_argument("--pushback-ms", default=None)
    parser.add_argument("--max-concurrent-streams", type=int, default=0)
    parser.add_argument("--health", default="SERVING", help="the overall health status to report")
    parser.add_argument("--tls-cert", default="")
    parser.add_argument("--tls-key", default="")
    parser.add_argument("--pid-file", default="", help="write this process's pid here")
    parser.add_argument(
        "--metrics-port-file",
        default="",
        help="serve prometheus_client's default metrics on a loopback port written here",
    )
    args = parser.parse_args()

    out_dir = tempfile.mkdtemp(prefix="echo-pb-")
    compile_proto(out_dir)
    import echo_pb2
    import echo_pb2_grpc

    lock = threading.Lock()
    stall = threading.Lock()
    state = {"requests": 0, "metadata_ok": 0, "broken": False, "failed": 0}
    messages = {}
    attempts = {}  # --fail-attempts: requests seen per message (the first 100,000 messages)
    sequence = []  # the first 10,000 messages' `message`, in the order they arrived
    ids = set()
    peers = set()  # the client address:port of each connection Say was called on
    traceparents = {}
    calls = {}  # calls received by method (every service: health checks too)
    recorded = {}  # --record-metadata KEY: the values received, in order

    class TraceparentRecorder(grpc.ServerInterceptor):
        """Keeps the W3C traceparent of every call, by method (health checks included)."""

        def intercept_service(self, continuation, details):
            with lock:
                calls[details.method] = calls.get(details.method, 0) + 1
            for key, value in details.invocation_metadata or ():
                if key in args.record_metadata:
                    with lock:
                        seen = recorded.setdefault(key, [])
                        if len(seen) < 10000:
                            seen.append(value)
                if key == "traceparent":
                    with lock:
                        seen = traceparents.setdefault(details.method, [])
                        if len(seen) < 10000:
                            seen.append(value)
            return continuation(details)

    required = tuple(args.require_metadata.split("=", 1)) if args.require_metadata else None

    class Echo(echo_pb2_grpc.EchoServicer):
        def Say(self, request, context):
            with lock:
                state["requests"] += 1
                n = state["requests"]
                if len(messages) < 10000:
                    messages[request.message] = messages.get(request.message, 0) + 1
                if len(sequence) < 10000:
                    sequence.append(request.message)
                ids.add(request.inner.id)
                if len(peers) < 100000:
                    peers.add(context.peer())
            if n == 1:
                print("FIRST", flush=True)
            if args.stall_after and n == args.stall_after:
                with stall:
                    time.sleep(args.stall_ms / 1000.0)
            else:
                with stall:
                    pass
            if request.delay_ms:
                time.sleep(request.delay_ms / 1000.0)
            md = dict(context.invocation_metadata())
            if required:
                if md.get(required[0]) != required[1]:
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, f"missing {required[0]}")
                with lock:
                    state["metadata_ok"] += 1
            fail = args.fail_every and n % args.fail_every == 0
            if args.fail_attempts:
                with lock:
                    seen = attempts.get(request.message, 0) + 1
                    if len(attempts) < 100000:
                        attempts[request.message] = seen
                fail = fail or seen <= args.fail_attempts
            if fail:
                with lock:
                    state["failed"] += 1
                if args.pushback_ms is not None:
                    context.set_trailing_metadata((("grpc-retry-pushback-ms", args.pushback_ms),))
                context.abort(grpc.StatusCode.UNAVAILABLE, "planned failure")
            if state["broken"]:
                return echo_pb2.SayReply(message="")
            return echo_pb2.SayReply(message=request.message)

        def Chat(self, request_iterator, context):
            with lock:
                state["streams"] = state.get("streams", 0) + 1
            for request in request_iterator:
                with lock:
                    state["stream_received"] = state.get("stream_received", 0) + 1
                    n = state["stream_received"]
                if args.stall_after and n == args.stall_after:
                    time.sleep(args.stall_ms / 1000.0)
                if request.message == "fail":
                    context.abort(grpc.StatusCode.UNAVAILABLE, "asked to fail")
                if request.delay_ms:
                    time.sleep(request.delay_ms / 1000.0)
                with lock:
                    state["stream_sent"] = state.get("stream_sent", 0) + 1
                yield echo_pb2.SayReply(message=request.message)

        def Subscribe(self, request, context):
            with lock:
                state["streams"] = state.get("streams", 0) + 1
            for i in range(request.inner.id):
                if not context.is_active():
                    return
                if request.delay_ms:
                    time.sleep(request.delay_ms / 1000.0)
                with lock:
                    state["stream_sent"] = state.get("stream_sent", 0) + 1
                yield echo_pb2.SayReply(message=str(i))

    options = []
    if args.max_concurrent_streams:
        options.append(("grpc.max_concurrent_streams", args.max_concurrent_streams))
    for option in args.grpc_option:
        name, value = option.split("=", 1)
        options.append((name, int(value)))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        interceptors=[TraceparentRecorder()],
        options=options,
    )
    echo_pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", getattr(health_pb2.HealthCheckResponse, args.health))
    names = (
        echo_pb2.DESCRIPTOR.services_by_name["Echo"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    if args.tls_cert:
        with open(args.tls_cert, "rb") as c, open(args.tls_key, "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(f"{args.host}:{args.port}", creds)
    else:
        port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    if args.metrics_port_file:
        from prometheus_client import start_http_server

        metrics_server, _ = start_http_server(0, addr="127.0.0.1")
        with open(args.metrics_port_file, "w") as f:
            f.write(f"{metrics_server.server_port}\n")
    print(f"PORT {port}", flush=True)

    # Health flips on command: a line "SERVING" or "NOT_SERVING" on stdin sets the overall
    # status, and "OK <word>" is printed back once it is set (tests wait for that, not sleep).
    def commands():
        for line in sys.stdin:
            word = line.strip()
            if word in ("SERVING", "NOT_SERVING"):
                health_servicer.set("", getattr(health_pb2.HealthCheckResponse, word))
                print(f"OK {word}", flush=True)
            elif word == "BREAK":
                with lock:
                    state["broken"] = True
                print("OK BREAK", flush=True)

    threading.Thread(target=commands, daemon=True).start()
    done = threading.Event()

    def on_term(*_):
        done.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    done.wait()
    server.stop(grace=1).wait()
    with lock:
        state["messages"] = messages
        state["sequence"] = sequence
        state["distinct_ids"] = len(ids)
        state["connections"] = len(peers)
        state["traceparents"] = traceparents
        state["calls"] = calls
        state["recorded_metadata"] = recorded
        print(json.dumps(state), flush=True)


if __name__ == "__main__":
    main()
