"""gRPC's interop TestService on Python grpcio, for loadagent's tests.

It compiles tests/interop/test_service.proto at start-up (grpc_tools), serves
grpc.testing.TestService as the interop spec describes it (EmptyCall; UnaryCall with
response_size and response_status; StreamingOutputCall with response_parameters;
StreamingInputCall summing payloads; FullDuplexCall answering as requests arrive;
HalfDuplexCall answering only after the client half-closes), prints `PORT <n>` once
listening, and on SIGTERM prints one JSON line of what it counted per method: calls,
messages received and sent, and the status each call ended with. Then it exits.
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


def compile_proto(out_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    shared_compile(os.path.join(os.path.dirname(here), "interop"), "test_service.proto", out_dir)


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.methods = {}

    def add(self, method, calls=0, received=0, sent=0, status=None):
        with self.lock:
            m = self.methods.setdefault(
                method, {"calls": 0, "received": 0, "sent": 0, "statuses": {}}
            )
            m["calls"] += calls
            m["received"] += received
            m["sent"] += sent
            if status is not None:
                m["statuses"][status] = m["statuses"].get(status, 0) + 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="interop-py-")
    compile_proto(out)
    import test_service_pb2 as pb
    import test_service_pb2_grpc as pb_grpc

    counts = Counts()

    def fail_if_asked(method, context, status):
        if status is not None and status.code != 0:
            code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
            counts.add(method, status=code.name)
            context.abort(code, status.message)

    def payload(size):
        return pb.Payload(body=b"\0" * size)

    class TestService(pb_grpc.TestServiceServicer):
        def EmptyCall(self, request, context):
            counts.add("EmptyCall", calls=1, received=1, sent=1, status="OK")
            return pb.Empty()

        def UnaryCall(self, request, context):
            counts.add("UnaryCall", calls=1, received=1)
            if request.HasField("response_status"):
                fail_if_asked("UnaryCall", context, request.response_status)
            counts.add("UnaryCall", sent=1, status="OK")
            return pb.SimpleResponse(payload=payload(request.response_size))

        def StreamingOutputCall(self, request, context):
            counts.add("StreamingOutputCall", calls=1, received=1)
            for p in request.response_parameters:
                if p.interval_us:
                    time.sleep(p.interval_us / 1e6)
                counts.add("StreamingOutputCall", sent=1)
                yield pb.StreamingOutputCallResponse(payload=payload(p.size))
            if request.HasField("response_status"):
                fail_if_asked("StreamingOutputCall", context, request.response_status)
            counts.add("StreamingOutputCall", status="OK")

        def StreamingInputCall(self, request_iterator, context):
            counts.add("StreamingInputCall", calls=1)
            total = 0
            for r in request_iterator:
                counts.add("StreamingInputCall", received=1)
                total += len(r.payload.body)
            counts.add("StreamingInputCall", sent=1, status="OK")
            return pb.StreamingInputCallResponse(aggregated_payload_size=total)

        def FullDuplexCall(self, request_iterator, context):
            counts.add("FullDuplexCall", calls=1)
            for r in request_iterator:
                counts.add("FullDuplexCall", received=1)
                if r.HasField("response_status"):
                    fail_if_asked("FullDuplexCall", context, r.response_status)
                for p in r.response_parameters:
                    if p.interval_us:
                        time.sleep(p.interval_us / 1e6)
                    counts.add("FullDuplexCall", sent=1)
                    yield pb.StreamingOutputCallResponse(payload=payload(p.size))
            counts.add("FullDuplexCall", status="OK")

        def HalfDuplexCall(self, request_iterator, context):
            counts.add("HalfDuplexCall", calls=1)
            # Nothing is answered before the client half-closes: that is the method.
            requests = []
            for r in request_iterator:
                counts.add("HalfDuplexCall", received=1)
                requests.append(r)
            for r in requests:
                for p in r.response_parameters:
                    counts.add("HalfDuplexCall", sent=1)
                    yield pb.StreamingOutputCallResponse(payload=payload(p.size))
            counts.add("HalfDuplexCall", status="OK")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_TestServiceServicer_to_server(TestService(), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"PORT {port}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(grace=1).wait()
    with counts.lock:
        print(json.dumps(counts.methods), flush=True)


if __name__ == "__main__":
    main()
