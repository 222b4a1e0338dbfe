// ioredis against ticketd with a password and with ACL users (run by test_auth_clients.py).
// Usage: node auth_clients.js PORT PASSWORD APP_USER APP_PASSWORD
// Prints one JSON object of what each client saw; exits 1 if the script itself failed.
const shared = require("./clients");

const [port, password, appUser, appPassword] = process.argv.slice(2);
const { attempt } = shared;
const client = (opts) => shared.client({ port: Number(port), ...opts });

(async () => {
  const out = {};
  const def = client({ password });
  out.default_connect = await attempt(() => def.connect().then(() => def.status));
  out.default_ticket = await attempt(() => def.call("TICKET"));
  out.default_whoami = await attempt(() => def.call("ACL", "WHOAMI"));
  out.default_snapshot = await attempt(() => def.call("RAFT.SNAPSHOT"));
  def.disconnect();

  const app = client({ username: appUser, password: appPassword });
  out.app_connect = await attempt(() => app.connect().then(() => app.status));
  out.app_tickets = await attempt(() =>
      app.pipeline().call("TICKET").call("TICKET").call("TICKET").exec()
         .then((rs) => rs.map(([e, v]) => (e ? e.message : v))));
  out.app_whoami = await attempt(() => app.call("ACL", "WHOAMI"));
  out.app_removeserver = await attempt(() => app.call("RAFT.REMOVESERVER", "1"));
  out.app_snapshot = await attempt(() => app.call("RAFT.SNAPSHOT"));
  app.disconnect();

  const wrong = client({ password: "wrong" });
  out.wrong_connect = await attempt(() => wrong.connect().then(() => wrong.call("TICKET")));
  out.wrong_error = wrong.lastError || "";
  wrong.disconnect();
  const none = client({});
  out.none_ticket = await attempt(() => none.connect().then(() => none.call("TICKET")));
  out.none_error = none.lastError || "";
  none.disconnect();
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error("auth_clients.js:", e);
  process.exit(1);
});
