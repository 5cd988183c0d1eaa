// The ops HTTP server: after a known sequence of Checks, /metrics holds
// exactly the counts that sequence implies; health endpoints follow the state.
import { connect, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startOpsServer, type OpsLimits } from '../../src/server/ops-server.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';

const ACTIVE_A = 'tokenAAAAAAAAAAAAAAAAAAAAAAAAAA';
const ACTIVE_B = 'tokenBBBBBBBBBBBBBBBBBBBBBBBBBB';
const INACTIVE = 'tokenCCCCCCCCCCCCCCCCCCCCCCCCCC';
const BROKEN = 'tokenDDDDDDDDDDDDDDDDDDDDDDDDDD';
const RESET = 'tokenEEEEEEEEEEEEEEEEEEEEEEEEEE';

interface Harness {
  app: App;
  envoy: EnvoyClient;
  fake: FakeAuthorizationServer;
  ops: string;
}

async function start(t: Test): Promise<Harness> {
  const fake = await startFakeAuthorizationServer();
  t.teardown(() => fake.close());
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 3000 },
      endpoints: [{ name: 'idp', url: fake.url, authMethod: 'none' }],
      policies: [{ name: 'orders' }],
    },
    'test.yaml',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy, fake, ops: `http://127.0.0.1:${app.ops.port}` };
}

async function get(url: string): Promise<{ status: number; body: string; type: string }> {
  const response = await request(url);
  return { status: response.statusCode, body: await response.body.text(), type: String(response.headers['content-type']) };
}

/** Samples of the exposition text: `name{labels}` -> value. */
function samples(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    map.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return map;
}

const check = (h: Harness, token?: string) =>
  h.envoy.check({ headers: token ? { authorization: `Bearer ${token}` } : {} }).then(summarize);

t.test('/metrics counts a known sequence of Checks exactly', async (t) => {
  const h = await start(t);
  const answer = answerByToken({
    [ACTIVE_A]: { sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 },
    [ACTIVE_B]: { sub: 'bob' },
    [INACTIVE]: { active: false },
  });
  h.fake.respond((req) => {
    const token = req.body.get('token');
    if (token === BROKEN) return { status: 500, body: 'oops' };
    if (token === RESET) return { json: { active: true, sub: 'x'.repeat(2000) }, destroyAfterBytes: 10 };
    if (token === ACTIVE_B) return { ...(answer(req) as object), delayMs: 150 };
    return answer(req);
  });

  t.equal((await check(h, ACTIVE_A)).allowed, true, 'A: allow, introspected');
  t.equal((await check(h, ACTIVE_A)).allowed, true, 'A again: allow from the cache');
  const concurrent = await Promise.all(Array.from({ length: 5 }, () => check(h, ACTIVE_B)));
  t.same(concurrent.map((r) => r.allowed), [true, true, true, true, true], 'B x5 concurrently: one call shared');
  t.equal((await check(h)).httpStatus, 401, 'no token');
  t.equal((await check(h, INACTIVE)).httpStatus, 401, 'inactive token');
  t.equal((await check(h, BROKEN)).httpStatus, 500, 'the endpoint answers 500: bad response');
  t.equal((await check(h, RESET)).httpStatus, 401, 'the connection is reset, and again on the retry: introspection error');
  t.equal(h.fake.requests.length, 6, 'five introspections reached the endpoint, the reset one twice');

  const scrape = await get(`${h.ops}/metrics`);
  t.equal(scrape.status, 200);
  t.match(scrape.type, /^text\/plain; version=0\.0\.4/);
  const m = samples(scrape.body);
  const decisions = [...m].filter(([name]) => name.startsWith('authz_check_decisions_total{'));
  t.same(
    new Map(decisions),
    new Map([
      ['authz_check_decisions_total{decision="allow",reason="ok",policy="orders",transport="grpc"}', 7],
      ['authz_check_decisions_total{decision="deny",reason="missing_token",policy="orders",transport="grpc"}', 1],
      ['authz_check_decisions_total{decision="deny",reason="inactive",policy="orders",transport="grpc"}', 1],
      ['authz_check_decisions_total{decision="deny",reason="bad_response",policy="orders",transport="grpc"}', 1],
      ['authz_check_decisions_total{decision="deny",reason="introspection_error",policy="orders",transport="grpc"}', 1],
    ]),
    'decisions by decision, reason and policy',
  );
  t.same(
    new Map([...m].filter(([name]) => name.startsWith('authz_introspection_requests_total{'))),
    new Map([
      ['authz_introspection_requests_total{endpoint="idp",outcome="active"}', 2],
      ['authz_introspection_requests_total{endpoint="idp",outcome="inactive"}', 1],
      ['authz_introspection_requests_total{endpoint="idp",outcome="bad_response"}', 1],
      ['authz_introspection_requests_total{endpoint="idp",outcome="error"}', 1],
    ]),
    'introspection calls by endpoint and outcome',
  );
  t.same(
    new Map([...m].filter(([name]) => name.startsWith('authz_cache_lookups_total{'))),
    new Map([
      ['authz_cache_lookups_total{result="hit"}', 1],
      ['authz_cache_lookups_total{result="negative_hit"}', 0],
      ['authz_cache_lookups_total{result="miss"}', 5],
      ['authz_cache_lookups_total{result="coalesced"}', 4],
      ['authz_cache_lookups_total{result="stale"}', 0],
    ]),
    'cache lookups: one hit, five calls, four Checks that shared a call, none stale',
  );
  t.equal(m.get('authz_check_duration_seconds_count'), 11, 'every Check timed');
  t.equal(m.get('authz_check_duration_seconds_bucket{le="0.0001"}') !== undefined, true, 'buckets start at 100 µs');
  t.equal(m.get('authz_introspection_duration_seconds_count{endpoint="idp"}'), 5);
  t.equal(m.get('authz_introspection_in_flight{endpoint="idp"}'), 0, 'nothing in flight');
  t.equal(m.get('authz_cache_entries'), 2, 'A and B are cached');
  t.equal(m.get('authz_cache_evictions_total'), 0);
  t.equal(m.get('authz_introspection_retries_total{endpoint="idp"}'), 1, 'the reset call was retried once');
  t.equal(m.get('authz_introspection_circuit_state{endpoint="idp"}'), 0, 'the circuit is closed');
  t.equal(m.get('authz_cache_negative_entries'), 1, 'the inactive token is held in the negative cache');
  t.equal(m.get('authz_cache_admin_evictions_total{scope="token"}'), 0);
  t.equal(m.get('authz_config_reloads_total{result="success"}'), 0);
  t.equal(m.get('authz_config_reloads_total{result="failure"}'), 0);
  t.ok([...m.keys()].some((k) => /^authz_build_info\{version="\d+\.\d+\.\d+",node="v\d+/.test(k)), 'build_info with version');
  t.ok(m.has('process_cpu_user_seconds_total'), 'default process metrics');
  for (const token of [ACTIVE_A, ACTIVE_B, INACTIVE, BROKEN, RESET]) {
    t.notOk(scrape.body.includes(token), 'no token in the metrics');
  }
  t.notOk(scrape.body.includes('alice'), 'no subject in the metrics');
});

t.test('/healthz and /readyz follow the service state; other paths and methods are refused', async (t) => {
  const h = await start(t);
  t.same(await get(`${h.ops}/healthz`), { status: 200, body: 'ok\n', type: 'text/plain' });
  t.same(await get(`${h.ops}/readyz`), { status: 200, body: 'ready\n', type: 'text/plain' });
  t.equal((await get(`${h.ops}/nope`)).status, 404);
  const post = await request(`${h.ops}/metrics`, { method: 'POST', body: 'x' });
  t.equal(post.statusCode, 405);
  t.equal(post.headers.allow, 'GET, HEAD');
  await post.body.dump();

  // A Check held in flight keeps the drain going while we look.
  h.fake.respond(() => ({ json: { active: true, sub: 'carol' }, delayMs: 600 }));
  const inFlight = check(h, ACTIVE_A);
  await h.fake.waitForRequests(1, 2000);
  const stopping = h.app.stop();
  const during = await get(`${h.ops}/readyz`);
  t.same(during, { status: 503, body: 'not ready: draining\n', type: 'text/plain' }, 'draining: not ready');
  t.equal((await get(`${h.ops}/healthz`)).status, 200, 'draining: still alive');
  // The gRPC server takes no new calls while draining: a health Check is refused or says NOT_SERVING.
  t.not(await h.envoy.health().catch(() => 'refused'), 'SERVING', 'gRPC health agrees');
  t.equal((await inFlight).allowed, true, 'the Check in flight finished');
  await stopping;
  await t.rejects(get(`${h.ops}/healthz`), 'the ops port is closed after stop');
});

/** An ops server on its own, with these limits. */
async function opsServer(t: Test, limits: OpsLimits) {
  const counts = { refused: 0 };
  const server = await startOpsServer('127.0.0.1', 0, {
    metrics: {
      registry: { contentType: 'text/plain', metrics: async () => '' },
      adminEvictions: { inc: () => {} },
      opsConnectionsRefused: { inc: () => (counts.refused += 1) },
    },
    notReady: () => null,
    limits,
  });
  t.teardown(() => server.close());
  return { port: server.port, counts };
}

interface Connection {
  socket: Socket;
  /** Everything the server sent. */
  received(): string;
  /** Resolves when the server closed the connection, with the ms since it was opened. */
  closed: Promise<number>;
}

function open(port: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const opened = performance.now();
    const socket = connect({ host: '127.0.0.1', port });
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    const closed = new Promise<number>((done) => socket.once('close', () => done(performance.now() - opened)));
    socket.once('error', () => {});
    socket.once('connect', () => resolve({ socket, received: () => text, closed }));
    socket.once('error', reject);
  });
}

/** Resolves with the promise's value, or 'open' after `ms`. */
const within = <T>(promise: Promise<T>, ms: number): Promise<T | 'open'> =>
  Promise.race([promise, new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), ms).unref())]);

t.test('a connection that never finishes its headers is closed soon after headersTimeout', async (t) => {
  const headersTimeout = 1000;
  const { port } = await opsServer(t, { maxConnections: 8, headersTimeout });
  const loris = await open(port);
  t.teardown(() => loris.socket.destroy());
  loris.socket.write('GET /healthz HTTP/1.1\r\nHost: ops\r\n');
  // One more header line every 100 ms, never the blank line that ends them; bounded by the close or 100 lines.
  const drip = setInterval(() => loris.socket.writable && loris.socket.write('x-slow: 1\r\n'), 100);
  t.teardown(() => clearInterval(drip));
  // Node looked only every 30 s by default: such a connection stayed up to 30 s whatever headersTimeout said.
  const ms = await within(loris.closed, headersTimeout + 4000);
  clearInterval(drip);
  if (ms === 'open') t.fail('still open 4 s after headersTimeout');
  else t.ok(ms >= headersTimeout * 0.9, `closed after ${Math.round(ms)} ms, not before headersTimeout`);
  t.match(loris.received(), /^HTTP\/1\.1 408 /, 'with a 408');
});

t.test('connections beyond maxConnections are closed at once; those under it are served', async (t) => {
  const maxConnections = 3;
  const { port, counts } = await opsServer(t, { maxConnections, headersTimeout: 10_000 });
  const held: Connection[] = [];
  t.teardown(() => held.forEach((c) => c.socket.destroy()));
  for (let i = 0; i < maxConnections; i++) held.push(await open(port));
  const extra = await open(port);
  t.teardown(() => extra.socket.destroy());
  t.not(await within(extra.closed, 5000), 'open', 'one more connection is closed by the server');
  t.equal(extra.received(), '', 'without an answer');
  t.equal(counts.refused, 1, 'and counted');

  // The ones held still work.
  held[0]!.socket.write('GET /healthz HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n');
  t.not(await within(held[0]!.closed, 5000), 'open');
  t.match(held[0]!.received(), /^HTTP\/1\.1 200 /, 'a connection under the cap is served');

  // A slot freed is a slot taken: bounded retries while the server counts the close.
  let answer = '';
  for (let attempt = 0; attempt < 50 && answer === ''; attempt++) {
    const next = await open(port);
    next.socket.write('GET /healthz HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n');
    await within(next.closed, 5000);
    answer = next.received();
    if (answer === '') await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.match(answer, /^HTTP\/1\.1 200 /, 'once one closes, a new connection is served');
});
