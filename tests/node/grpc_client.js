// @grpc/grpc-js as a client: calls METHOD on ADDRESS once with an empty request (raw bytes,
// nothing decoded) and prints the status code's name and details, as grpc-js's own client
// sees them, as one JSON line. loadagent's tests compare their report with it.
// Usage: node grpc_client.js ADDRESS /package.Service/Method [unary|server_stream]
"use strict";

const grpc = require("@grpc/grpc-js");

const [address, method, shape = "unary"] = process.argv.slice(2);
const client = new grpc.Client(address, grpc.credentials.createInsecure());
const identity = (b) => b;
const names = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));
const deadline = new Date(Date.now() + 10000);
const done = (err) => {
  console.log(JSON.stringify(err ? { code: names[err.code], details: err.details } : { code: "OK", details: "" }));
  client.close();
};
if (shape === "unary") {
  client.makeUnaryRequest(method, identity, identity, Buffer.alloc(0), { deadline }, (err) => done(err));
} else {
  const call = client.makeServerStreamRequest(method, identity, identity, Buffer.alloc(0), { deadline });
  call.on("data", () => {});
  call.on("error", (err) => done(err));
  call.on("end", () => {});
  call.on("status", (s) => { if (s.code === 0) done(null); });
}
