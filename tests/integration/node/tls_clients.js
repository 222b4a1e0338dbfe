// ioredis over TLS against ticketd (run by test_tls.py).
// Usage: node tls_clients.js PORT CERTS_DIR
// Prints one JSON object of what each client saw; exits 1 if the script itself failed.
const fs = require("fs");
const path = require("path");
const shared = require("./clients");

const [port, certs] = process.argv.slice(2);
const file = (name) => fs.readFileSync(path.join(certs, name));
const { attempt } = shared;
const client = (tls) => shared.client({ port: Number(port), host: "127.0.0.1", tls });

(async () => {
  const out = {};
  const good = client({ ca: file("ca.crt"), cert: file("client.crt"), key: file("client.key") });
  out.connect = await attempt(() => good.connect().then(() => good.status));
  out.tickets = await attempt(() =>
      good.pipeline().call("TICKET").call("TICKET").call("TICKET").exec()
          .then((rs) => rs.map(([e, v]) => (e ? e.message : v))));
  good.disconnect();
  // A certificate from another CA: the server refuses the handshake.
  const other = client({ ca: file("ca.crt"), cert: file("other-client.crt"),
                         key: file("other-client.key") });
  out.other_ca = await attempt(() => other.connect().then(() => other.call("TICKET")));
  out.other_ca_error = other.lastError || "";
  other.disconnect();
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error("tls_clients.js:", e);
  process.exit(1);
});
