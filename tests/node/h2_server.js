// An HTTP/2 server (Node's http2, cleartext with prior knowledge) that answers every
// request in one way that is not well-formed gRPC, so loadagent's tests can check that it
// reports what a gRPC client would. Usage: node h2_server.js MODE; prints `PORT <n>`.
//
// Modes:
//   html200            HTTP 200, content-type text/html, an HTML body, no grpc-status
//   status:N           HTTP status N, content-type text/plain, no grpc-status
//   two_messages       a well-formed gRPC response with two messages, status OK
//   compressed_plain   a message with the compressed flag set, no grpc-encoding, status OK
//   size:N             one message of N bytes, status OK
//   no_message         no message at all, status OK
//   silent             never answers (the stream stays open until the client ends it)
// It counts the requests it answered and prints `{"served": n}` on SIGTERM.
"use strict";

const http2 = require("http2");

const mode = process.argv[2] || "html200";
let served = 0;

function message(bytes, flag = 0) {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([prefix, bytes]);
}

function grpc(stream, body) {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.end(body);
}

const server = http2.createServer();
server.on("stream", (stream) => {
  stream.on("error", () => {});
  // Read the whole request first, as a server would.
  stream.resume();
  stream.on("end", () => {
    served += 1;
    if (mode === "silent") {
      return;
    }
    if (mode === "html200") {
      stream.respond({ ":status": 200, "content-type": "text/html" });
      stream.end("<html><body>not gRPC</body></html>");
    } else if (mode.startsWith("status:")) {
      stream.respond({ ":status": Number(mode.slice(7)), "content-type": "text/plain" });
      stream.end("an HTTP error\n");
    } else if (mode === "two_messages") {
      grpc(stream, Buffer.concat([message(Buffer.from([8, 1])), message(Buffer.from([8, 2]))]));
    } else if (mode === "compressed_plain") {
      grpc(stream, message(Buffer.from([8, 1]), 1));
    } else if (mode.startsWith("size:")) {
      grpc(stream, message(Buffer.alloc(Number(mode.slice(5)))));
    } else if (mode === "no_message") {
      grpc(stream, Buffer.alloc(0));
    } else {
      stream.respond({ ":status": 500 });
      stream.end(`unknown mode ${mode}`);
    }
  });
});
server.listen(0, "127.0.0.1", () => console.log(`PORT ${server.address().port}`));
process.on("SIGTERM", () => {
  console.log(JSON.stringify({ served }));
  process.exit(0);
});
