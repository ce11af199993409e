// gRPC's interop TestService on Node's @grpc/grpc-js (an implementation independent of
// grpcio and of loadagent), for loadagent's tests. It loads tests/interop/test_service.proto,
// answers as the interop spec describes (HalfDuplexCall only after the client half-closes),
// prints `PORT <n>` once listening, and on SIGTERM prints one JSON line of what it counted
// per method: calls, messages received and sent, and the status each call ended with.
// `--option NAME=INT` (repeatable) passes a server channel option, such as
// grpc.max_connection_age_ms.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const protoPath = path.join(__dirname, "..", "interop", "test_service.proto");
const definition = protoLoader.loadSync(protoPath, { keepCase: true, defaults: true });
const pkg = grpc.loadPackageDefinition(definition).grpc.testing;

const methods = {};
function count(method, { calls = 0, received = 0, sent = 0, status } = {}) {
  const m = (methods[method] ||= { calls: 0, received: 0, sent: 0, statuses: {} });
  m.calls += calls;
  m.received += received;
  m.sent += sent;
  if (status !== undefined) m.statuses[status] = (m.statuses[status] || 0) + 1;
}

const codeNames = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));
const payload = (size) => ({ body: Buffer.alloc(size) });
const sleep = (us) => new Promise((r) => setTimeout(r, us / 1000));
const asked = (status) => status && status.code !== 0;

const service = {
  EmptyCall(call, callback) {
    count("EmptyCall", { calls: 1, received: 1, sent: 1, status: "OK" });
    callback(null, {});
  },
  UnaryCall(call, callback) {
    count("UnaryCall", { calls: 1, received: 1 });
    const s = call.request.response_status;
    if (asked(s)) {
      count("UnaryCall", { status: codeNames[s.code] });
      callback({ code: s.code, details: s.message });
      return;
    }
    count("UnaryCall", { sent: 1, status: "OK" });
    callback(null, { payload: payload(call.request.response_size) });
  },
  async StreamingOutputCall(call) {
    count("StreamingOutputCall", { calls: 1, received: 1 });
    for (const p of call.request.response_parameters) {
      if (p.interval_us) await sleep(p.interval_us);
      if (call.cancelled) return;
      count("StreamingOutputCall", { sent: 1 });
      call.write({ payload: payload(p.size) });
    }
    const s = call.request.response_status;
    if (asked(s)) {
      count("StreamingOutputCall", { status: codeNames[s.code] });
      call.emit("error", { code: s.code, details: s.message });
      return;
    }
    count("StreamingOutputCall", { status: "OK" });
    call.end();
  },
  StreamingInputCall(call, callback) {
    count("StreamingInputCall", { calls: 1 });
    let total = 0;
    call.on("data", (r) => {
      count("StreamingInputCall", { received: 1 });
      total += r.payload ? r.payload.body.length : 0;
    });
    call.on("end", () => {
      count("StreamingInputCall", { sent: 1, status: "OK" });
      callback(null, { aggregated_payload_size: total });
    });
  },
  FullDuplexCall(call) {
    count("FullDuplexCall", { calls: 1 });
    call.on("data", (r) => {
      count("FullDuplexCall", { received: 1 });
      for (const p of r.response_parameters) {
        count("FullDuplexCall", { sent: 1 });
        call.write({ payload: payload(p.size) });
      }
    });
    call.on("end", () => {
      count("FullDuplexCall", { status: "OK" });
      call.end();
    });
  },
  HalfDuplexCall(call) {
    // Nothing is answered before the client half-closes: that is the method.
    count("HalfDuplexCall", { calls: 1 });
    const requests = [];
    call.on("data", (r) => {
      count("HalfDuplexCall", { received: 1 });
      requests.push(r);
    });
    call.on("end", () => {
      for (const r of requests) {
        for (const p of r.response_parameters) {
          count("HalfDuplexCall", { sent: 1 });
          call.write({ payload: payload(p.size) });
        }
      }
      count("HalfDuplexCall", { status: "OK" });
      call.end();
    });
  },
};

const options = {};
process.argv.slice(2).forEach((arg, i, args) => {
  if (arg !== "--option") return;
  const [name, value] = (args[i + 1] || "").split("=");
  options[name] = Number(value);
});
const server = new grpc.Server(options);
server.addService(pkg.TestService.service, service);
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(`PORT ${port}`);
});

process.on("SIGTERM", () => {
  server.tryShutdown(() => {
    console.log(JSON.stringify(methods));
    process.exit(0);
  });
  setTimeout(() => {
    console.log(JSON.stringify(methods));
    process.exit(0);
  }, 2000).unref();
});
