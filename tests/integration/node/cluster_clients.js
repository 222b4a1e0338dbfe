// ioredis's Cluster and node-redis's createCluster against a ticketd cluster (run by
// test_cluster_clients.py). Usage: node cluster_clients.js ioredis|node-redis PORT MAX_SECONDS
// Connects through the member at PORT (any member, a follower too), prints "connected", then
// takes tickets one at a time, alternating `TICKET` (ioredis: keyless; node-redis routes by a
// key, so `TICKET default`, the same sequence) and `TICKET orders`, until its standard input
// closes or MAX_SECONDS have passed. The application does nothing about redirects or
// failovers: whatever the client library does not absorb is counted as an error it saw. Then
// prints one JSON line: {tickets: [[seq, sent_ms, acked_ms, value]...], errors: [[ms, msg]...]};
// exits 1 if the script itself failed.
const [lib, port, maxSeconds] = process.argv.slice(2);
const out = { tickets: [], errors: [] };
let stop = false;
process.stdin.on("data", () => {});
process.stdin.on("end", () => { stop = true; });
process.stdin.on("error", () => { stop = true; });

function finish(code) {
  // Exit once the line is written: stdout to a pipe is asynchronous in Node.js, and
  // process.exit() right after console.log cut the report at 64 KiB.
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(code));
}

// Bounded: whatever is still waiting 10 s past the time limit is reported as hung.
setTimeout(() => {
  out.errors.push([Date.now(), "hung: no answer 10 s past the time limit"]);
  finish(0);
}, Number(maxSeconds) * 1000 + 10000).unref();

async function connect() {
  const root = { host: "127.0.0.1", port: Number(port) };
  if (lib === "ioredis") {
    const { Cluster } = require("ioredis");
    const c = new Cluster([root], { lazyConnect: true });
    c.on("error", () => {});  // reported through the commands that fail
    await c.connect();
    return {
      ticket: (seq) => (seq === "default" ? c.call("TICKET") : c.call("TICKET", seq)),
      close: () => c.disconnect(),
    };
  }
  const { createCluster } = require("redis");
  // RESP: 2 — node-redis 6 asks for RESP3 (HELLO 3) by default and does not fall back when
  // the server answers -NOPROTO, as ticketd does (it speaks RESP2). A node it cannot reach
  // makes it refresh the slot table after topologyRefreshOnReconnectionAttemptStrategy ms
  // (5 s by default; 500 here, so the test need not wait that long).
  const c = createCluster({ rootNodes: [{ socket: root }], RESP: 2,
                            topologyRefreshOnReconnectionAttemptStrategy: 500 });
  c.on("error", () => {});
  await c.connect();
  return {
    ticket: (seq) => c.sendCommand(seq, false, ["TICKET", seq]),
    close: () => c.destroy(),
  };
}

(async () => {
  const client = await connect();
  console.log("connected");
  const deadline = Date.now() + Number(maxSeconds) * 1000;
  const seqs = ["default", "orders"];
  for (let i = 0; !stop && Date.now() < deadline; ++i) {
    const seq = seqs[i % 2];
    const sent = Date.now();
    try {
      const v = await client.ticket(seq);
      out.tickets.push([seq, sent, Date.now(), Number(v)]);
    } catch (e) {
      out.errors.push([Date.now(), String(e.message)]);
      if (out.errors.length > 200) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  client.close();
  finish(0);
})().catch((e) => {
  console.error("cluster_clients.js:", e);
  process.exit(1);
});
