// Granary's Counter example in JavaScript (Node 20, built-in modules only).
//
// It hosts the actor type Counter over the actor callback protocol and keeps
// each counter's value in actor state through the sidecar's HTTP API, so a
// count survives deactivation, restarts and moves between silos.
//
// Pub/sub: the method announce publishes the actor's count to the topic
// counter-events of the pub/sub "pubsub"; the app subscribes to that topic
// (GET /dapr/subscribe) and keeps the last 1,000 events it received, which
// GET /events lists.
//
// Environment: APP_HOST (default 127.0.0.1) and APP_PORT (3000) to listen on;
// DAPR_HTTP_PORT (3500) or GRANARY_URL (the sidecar's full base URL);
// DAPR_API_TOKEN, sent to the sidecar; APP_API_TOKEN, required from callers.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const https = require('node:https');

const MAX_BODY = 1 << 20; // bytes accepted in a request or a sidecar answer
const ACTOR_CONFIG = {
  entities: ['Counter'],
  actorIdleTimeout: '1h',
  drainOngoingCallTimeout: '30s',
  drainRebalancedActors: true,
};
// Pub/sub names: where announce publishes, and what the app subscribes to.
const PUBSUB = 'pubsub';
const EVENTS_TOPIC = 'counter-events';
const MAX_EVENTS = 1000;
const SUBSCRIPTIONS = [{ pubsubname: PUBSUB, topic: EVENTS_TOPIC, route: '/events' }];

function fatal(message) {
  console.error(`counter-js: ${message}`);
  process.exit(1);
}

function portFromEnv(name, fallback) {
  const value = process.env[name] || fallback;
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535) fatal(`${name} "${value}" is not a port number`);
  return Number(value);
}

const HOST = process.env.APP_HOST || '127.0.0.1';
const PORT = portFromEnv('APP_PORT', '3000');
const SIDECAR = (process.env.GRANARY_URL || `http://127.0.0.1:${portFromEnv('DAPR_HTTP_PORT', '3500')}`).replace(/\/+$/, '');
if (!/^https?:\/\/[^/]/.test(SIDECAR)) fatal(`GRANARY_URL "${SIDECAR}" is not an http(s) URL`);
const DAPR_TOKEN = process.env.DAPR_API_TOKEN || '';
const APP_TOKEN = process.env.APP_API_TOKEN || '';

const counts = new Map(); // the count of each actor read or written so far
const events = []; // the data of the latest events received, oldest first

// An error with the status it answers with; other errors answer 500.
class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One call to the sidecar; resolves to {status, body}. The path is passed
// as given (no dot-segment cleanup), with the sidecar's base path before it.
function sidecar(method, path, body) {
  const base = new URL(SIDECAR);
  const headers = { 'Content-Type': 'application/json' };
  if (DAPR_TOKEN) headers['dapr-api-token'] = DAPR_TOKEN;
  const options = {
    method, headers, timeout: 10000,
    protocol: base.protocol, hostname: base.hostname, port: base.port,
    path: base.pathname.replace(/\/$/, '') + path,
  };
  return new Promise((resolve, reject) => {
    const req = (base.protocol === 'https:' ? https : http).request(options, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (chunk) => {
        if (size < MAX_BODY) chunks.push(chunk);
        size += chunk.length;
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).subarray(0, MAX_BODY).toString().trim();
        resolve({ status: res.statusCode, body: text });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('sidecar call timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

const statePath = (id) => `/v1.0/actors/Counter/${encodeURIComponent(id)}/state`;

// The integer a decoded JSON number holds, if it is a whole number within
// ±(2^53-1), the range every JSON implementation keeps exactly; else null.
const safeInt = (value) => (Number.isSafeInteger(value) ? value : null);

// The actor's count: from the cache, else from actor state
// (GET .../state/count answers 200 with the value, or 204 when absent).
async function load(id) {
  if (counts.has(id)) return counts.get(id);
  let res;
  try {
    res = await sidecar('GET', `${statePath(id)}/count`);
  } catch (err) {
    throw new Error(`reading count: ${err.message}`);
  }
  let n;
  if (res.status === 204) {
    n = 0;
  } else if (res.status === 200) {
    try {
      n = safeInt(JSON.parse(res.body));
    } catch {
      n = null;
    }
    if (n === null) throw new Error(`reading count: stored value ${res.body} is not an integer`);
  } else {
    throw new Error(`reading count: sidecar answered ${res.status}: ${res.body}`);
  }
  counts.set(id, n);
  return n;
}

// Writes the count with an actor state transaction and, only once the
// sidecar has accepted it (204), updates the cache.
async function save(id, n) {
  const tx = [{ operation: 'upsert', request: { key: 'count', value: n } }];
  let res;
  try {
    res = await sidecar('POST', statePath(id), JSON.stringify(tx));
  } catch (err) {
    throw new Error(`saving count: ${err.message}`);
  }
  if (res.status !== 204) throw new Error(`saving count: sidecar answered ${res.status}: ${res.body}`);
  counts.set(id, n);
}

// Adds by (null or undefined means 1) to the actor's count and saves it.
async function increment(id, by) {
  const step = by == null ? 1 : safeInt(by);
  if (step === null) throw new HTTPError(400, '"by" must be an integer within ±(2^53-1)');
  const n = (await load(id)) + step;
  if (!Number.isSafeInteger(n)) throw new HTTPError(400, 'the count would leave ±(2^53-1)');
  await save(id, n);
  return n;
}

// Sends an event to the events topic; resolves once the sidecar has stored it (204).
async function publish(data) {
  let res;
  try {
    res = await sidecar('POST', `/v1.0/publish/${PUBSUB}/${EVENTS_TOPIC}`, data);
  } catch (err) {
    throw new Error(`publishing: ${err.message}`);
  }
  if (res.status !== 204) throw new Error(`publishing: sidecar answered ${res.status}: ${res.body}`);
}

// Keeps the data of one CloudEvent of the events topic; returns the answer
// the sidecar expects: SUCCESS, or DROP for a body that is not one (retrying
// would not help). A null body means it was too large.
function receive(body) {
  let event;
  try {
    if (body === null) throw new Error('body larger than 1 MiB');
    event = JSON.parse(body.toString(), finiteNumbers);
    if (event === null || typeof event !== 'object' || Array.isArray(event)) throw new Error('not a JSON object');
    if (event.id != null && typeof event.id !== 'string') throw new Error('"id" is not a string');
  } catch (err) {
    console.warn(`dropping an event that is not a CloudEvent: ${err.message}`);
    return { status: 'DROP' };
  }
  events.push(event.data ?? null);
  if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
  return { status: 'SUCCESS' };
}

// A JSON.parse reviver refusing numbers too large for a double (which would
// be written back as null).
function finiteNumbers(key, value) {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('a number is too large');
  return value;
}

// The JSON object body; empty or null means {}. A null body means it was too large.
function readObject(body) {
  if (body === null) throw new HTTPError(413, 'body larger than 1 MiB');
  if (body.length === 0) return {};
  let value;
  try {
    value = JSON.parse(body.toString());
  } catch (err) {
    throw new HTTPError(400, `body is not JSON: ${err.message}`);
  }
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new HTTPError(400, 'body must be a JSON object');
  return value;
}

// Runs increment (optional body {"by": n}), get, reset or announce (publish
// the count), or a reminder (remind/{name}) or timer (timer/{name}) callback;
// resolves to the count.
async function runMethod(id, call, body) {
  const [name, arg] = call;
  if (call.length === 1 && name === 'increment') return increment(id, readObject(body).by);
  if (call.length === 1 && name === 'get') return load(id);
  if (call.length === 1 && name === 'reset') {
    await save(id, 0);
    return 0;
  }
  if (call.length === 1 && name === 'announce') {
    const n = await load(id);
    await publish(JSON.stringify({ id, count: n }));
    return n;
  }
  if (call.length === 2 && (name === 'remind' || name === 'timer')) {
    const data = JSON.stringify(readObject(body).data ?? null);
    console.log(`${name === 'remind' ? 'reminder' : 'timer'} fired: actor=${id} name=${arg} data=${data}`);
    return increment(id);
  }
  throw new HTTPError(404, `Counter has no method ${JSON.stringify(call.join('/'))}`);
}

function tokenMatches(got) {
  const a = Buffer.from(String(got ?? ''));
  const b = Buffer.from(APP_TOKEN);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

// Routes one call of the actor callback protocol; resolves to [status, JSON value or undefined].
async function route(req, body) {
  if (APP_TOKEN && !tokenMatches(req.headers['dapr-api-token'])) {
    throw new HTTPError(401, 'missing or wrong dapr-api-token');
  }
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  let parts;
  try {
    parts = req.url.split('?')[0].split('/').slice(1).map(decodeURIComponent);
  } catch {
    throw new HTTPError(400, 'malformed escape in the path');
  }
  const [p0, p1, id, p3, ...call] = parts;
  if (method === 'GET' && parts.length === 2 && p0 === 'dapr' && p1 === 'config') return [200, ACTOR_CONFIG];
  if (method === 'GET' && parts.length === 1 && p0 === 'healthz') return [200];
  if (method === 'GET' && parts.length === 2 && p0 === 'dapr' && p1 === 'subscribe') return [200, SUBSCRIPTIONS];
  if (method === 'POST' && parts.length === 1 && p0 === 'events') return [200, receive(body)];
  if (method === 'GET' && parts.length === 1 && p0 === 'events') return [200, events];
  if (p0 === 'actors' && p1 === 'Counter' && id) {
    if (method === 'DELETE' && parts.length === 3) {
      counts.delete(id); // deactivation: the state stays in the store
      return [200];
    }
    if (method === 'PUT' && p3 === 'method' && call.length >= 1 && call.length <= 2 && call.every(Boolean)) {
      return [200, { count: await runMethod(id, call, body) }];
    }
  }
  throw new HTTPError(404, `no route for ${req.method} /${parts.join('/')}`);
}

function reply(res, status, value) {
  const body = value === undefined ? '' : JSON.stringify(value);
  const headers = { 'Content-Length': Buffer.byteLength(body) };
  if (value !== undefined) headers['Content-Type'] = 'application/json';
  res.writeHead(status, headers).end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('error', () => {}); // the caller went away; there is no one to answer
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on('end', () => {
    route(req, size > MAX_BODY ? null : Buffer.concat(chunks)).then(
      ([status, value]) => reply(res, status, value),
      (err) => {
        if (!(err instanceof HTTPError)) console.error(`call failed: ${err.message}`);
        reply(res, err instanceof HTTPError ? err.status : 500, { error: err.message });
      },
    );
  });
});

server.on('error', (err) => fatal(`listen on ${HOST}:${PORT}: ${err.message}`));
server.listen(PORT, HOST, () => {
  console.log(`counter-js listening on ${HOST}:${server.address().port}, sidecar ${SIDECAR}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
