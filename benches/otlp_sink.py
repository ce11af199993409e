#!/usr/bin/env python3
"""An OTLP/gRPC trace receiver for benchmarks: counts the spans it is sent.
Prints `PORT <n>` once listening; on SIGTERM prints `SPANS <n>` and exits.
Needs: pip install grpcio opentelemetry-proto"""
import signal
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

count = 0
lock = threading.Lock()


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        global count
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with lock:
            count += n
        return trace_service_pb2.ExportTraceServiceResponse()


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(f"PORT {port}", flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
server.stop(grace=1).wait()
print(f"SPANS {count}", flush=True)
