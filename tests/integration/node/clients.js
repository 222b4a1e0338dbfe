// What the Node.js client scripts share: an ioredis client that never retries (a refusal is
// an answer here, not something to wait out), and attempt(), which turns a promise into
// {ok: value} or {err: message}.
const Redis = require("ioredis");

function client(opts) {
  const r = new Redis({ lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null,
                        ...opts });
  // A refused AUTH or handshake surfaces as an error event (the connect promise only says it
  // closed).
  r.on("error", (e) => { r.lastError = e.message; });
  return r;
}

async function attempt(fn) {
  try {
    return { ok: await fn() };
  } catch (e) {
    return { err: e.message };
  }
}

module.exports = { client, attempt };
