// Through the service, played by Envoy against the fake authorization server:
// what coalescing and negative caching save, the circuit breaker opening and
// closing, retries, the bound on calls in flight, clientIdHeader. Each count
// of introspections here is exact; the metrics must agree with it.
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, summarize, type CheckOptions, type EnvoyClient } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer, type FakeAuthorizationServer, type FakeHandler } from '../support/fake-authorization-server.js';

const GOOD = 'resilience-good-token-Tq7w';
const normal: FakeHandler = answerByToken({ [GOOD]: { sub: 'alice', client_id: 'app-one' } });

/** A clock that moves only when the test moves it: cache expiry and the circuit breaker's resetTimeout follow it. */
class TestClock {
  ms = Date.now();
  now(): number {
    return this.ms;
  }
}

interface Harness {
  app: App;
  envoy: EnvoyClient;
  fake: FakeAuthorizationServer;
  clock: TestClock;
  check(token: string, options?: CheckOptions): ReturnType<typeof summarizeCheck>;
  metrics(): Promise<Map<string, number>>;
}

function summarizeCheck(envoy: EnvoyClient, token: string, options: CheckOptions = {}) {
  return envoy.check({ ...options, headers: { authorization: `Bearer ${token}`, ...options.headers } }).then(summarize);
}

async function start(t: Test, endpoint: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Promise<Harness> {
  const fake = await startFakeAuthorizationServer(normal);
  t.teardown(() => fake.close());
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 500 },
      log: { level: 'silent' },
      endpoints: [{ name: 'idp', url: fake.url, authMethod: 'none', ...endpoint }],
      ...top,
    },
    'test',
    { env: {} },
  );
  const clock = new TestClock();
  const app = await startApp(config, createLogger('silent'), { clock });
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  const ops = `http://127.0.0.1:${app.ops.port}`;
  return {
    app,
    envoy,
    fake,
    clock,
    check: (token, options) => summarizeCheck(envoy, token, options),
    async metrics() {
      const text = await (await request(`${ops}/metrics`)).body.text();
      const map = new Map<string, number>();
      for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('#')) continue;
        const at = line.lastIndexOf(' ');
        map.set(line.slice(0, at), Number(line.slice(at + 1)));
      }
      return map;
    },
  };
}

t.test('coalescing: 200 concurrent Checks of one new token make exactly 1 introspection', async (t) => {
  const h = await start(t);
  h.fake.respond((req) => ({ delayMs: 100, ...(normal(req) as object) }));
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: 200 }, () => h.check(GOOD)));
  t.comment(`200 concurrent Checks of a new token (endpoint answers in 100 ms): ${(performance.now() - started).toFixed(0)} ms`);
  t.equal(results.filter((r) => r.allowed).length, 200, 'all 200 allowed');
  t.equal(h.fake.requests.length, 1, 'exactly 1 introspection: 199 saved');
  const m = await h.metrics();
  t.equal(m.get('authz_cache_lookups_total{result="miss"}'), 1);
  t.equal(m.get('authz_cache_lookups_total{result="coalesced"}'), 199);
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="active"}'), 1);
});

t.test('negative caching: 1000 Checks of one bad token within negativeTTL make exactly 1 introspection', async (t) => {
  const h = await start(t);
  h.fake.respond((req) => ({ delayMs: 300, ...(normal(req) as object) }));
  const BAD = 'resilience-bad-token-0000';
  let denied = 0;
  // 1000 Checks in waves of 100 concurrent ones, over about 9 s of the service's clock.
  for (let wave = 0; wave < 10; wave += 1) {
    const results = await Promise.all(Array.from({ length: 100 }, () => h.check(BAD)));
    denied += results.filter((r) => !r.allowed && r.httpStatus === 401).length;
    h.clock.ms += 900;
  }
  t.equal(denied, 1000, 'all 1000 denied 401');
  t.equal(h.fake.requests.length, 1, 'exactly 1 introspection: 999 saved');
  const m = await h.metrics();
  const coalesced = m.get('authz_cache_lookups_total{result="coalesced"}') ?? 0;
  const negative = m.get('authz_cache_lookups_total{result="negative_hit"}') ?? 0;
  t.equal(m.get('authz_cache_lookups_total{result="miss"}'), 1);
  t.equal(coalesced + negative, 999, `the other 999 shared the call (${coalesced}) or hit the negative cache (${negative})`);
  t.comment(`1000 Checks of one bad token: 1 introspection, ${coalesced} coalesced, ${negative} negative hits`);
  t.ok(negative >= 900, 'every Check after the first wave was a negative hit');
  t.equal(m.get('authz_cache_negative_entries'), 1);

  h.clock.ms += 1_000; // past negativeTTL (10 s)
  t.equal((await h.check(BAD)).httpStatus, 401);
  t.equal(h.fake.requests.length, 2, 'asked again once the negative entry ended');
});

t.test('a flood of random bad tokens neither reaches the endpoint twice nor evicts a valid token', async (t) => {
  const h = await start(t, {}, { cache: { maxCacheEntries: 10, maxNegativeEntries: 100 } });
  t.equal((await h.check(GOOD)).allowed, true);
  const bad = Array.from({ length: 500 }, (_, i) => `flood-token-${i}-xxxxxxxx`);
  for (let i = 0; i < bad.length; i += 100) await Promise.all(bad.slice(i, i + 100).map((token) => h.check(token)));
  t.equal(h.fake.requests.length, 501, 'one introspection per distinct bad token');
  t.equal((await h.check(GOOD)).allowed, true);
  t.equal(h.fake.requests.length, 501, 'the valid token is still cached: the flood filled only the negative cache');
  const repeat = await Promise.all(bad.slice(-40).map((token) => h.check(token)));
  t.ok(repeat.every((r) => r.httpStatus === 401));
  t.equal(h.fake.requests.length, 501, 'repeats of recent bad tokens are negative hits');
  const m = await h.metrics();
  t.ok((m.get('authz_cache_negative_entries') ?? Infinity) <= 100, `negative entries bounded (${m.get('authz_cache_negative_entries')})`);
  t.equal(m.get('authz_cache_entries'), 1);
});

t.test('circuit breaker: opens after consecutive failures, fails fast, closes after a good probe', async (t) => {
  const h = await start(t, { retries: 0, circuitBreaker: { failures: 3, resetTimeout: 5_000 } }, { policies: [{ name: 'p', unreachableStatus: 503 }] });
  h.fake.respond(() => ({ status: 503 }));
  for (let i = 0; i < 3; i += 1) {
    const r = await h.check(`failing-token-${i}`);
    t.equal(r.httpStatus, 500, `failure ${i + 1}: the endpoint's 503 is a bad response (badResponseStatus)`);
  }
  t.equal(h.fake.requests.length, 3);
  let m = await h.metrics();
  t.equal(m.get('authz_introspection_circuit_state{endpoint="idp"}'), 2, 'open');

  const started = performance.now();
  const fast = await Promise.all(Array.from({ length: 20 }, (_, i) => h.check(`fast-token-${i}`)));
  const fastMs = performance.now() - started;
  t.ok(fastMs < 1_000, 'answered at once');
  t.comment(`20 Checks against an open circuit: ${fastMs.toFixed(1)} ms in all, no introspection`);
  t.ok(
    fast.every((r) => !r.allowed && r.httpStatus === 503 && r.code === 14),
    'denied with unreachableStatus (503), reason introspection_error',
  );
  t.equal(h.fake.requests.length, 3, 'the endpoint was not asked while the circuit is open');
  m = await h.metrics();
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="circuit_open"}'), 20);
  t.equal(m.get('authz_check_decisions_total{decision="deny",reason="introspection_error",policy="p",transport="grpc"}'), 20);
  t.equal(m.get('authz_introspection_duration_seconds_count{endpoint="idp"}'), 3, 'fast failures are not timed as calls');

  h.clock.ms += 5_000;
  m = await h.metrics();
  t.equal(m.get('authz_introspection_circuit_state{endpoint="idp"}'), 1, 'half-open once resetTimeout has passed');
  // The probe fails: open again for another resetTimeout.
  t.equal((await h.check('probe-one')).httpStatus, 500);
  t.equal((await h.check('after-failed-probe')).httpStatus, 503, 'open again');
  t.equal(h.fake.requests.length, 4, 'one probe');

  h.clock.ms += 5_000;
  h.fake.respond(normal);
  t.equal((await h.check(GOOD)).allowed, true, 'a good probe');
  m = await h.metrics();
  t.equal(m.get('authz_introspection_circuit_state{endpoint="idp"}'), 0, 'closed');
  t.equal((await h.check('unknown-after-closing')).httpStatus, 401, 'answers again');
  t.equal(h.fake.requests.length, 6);
  t.equal(await h.envoy.health(), 'SERVING', 'healthy throughout');
});

t.test('unreachable endpoint: retried, then the breaker stops the calls', async (t) => {
  const h = await start(t, { retries: 1, circuitBreaker: { failures: 2, resetTimeout: 60_000 } });
  await h.fake.close();
  for (let i = 0; i < 2; i += 1) t.equal((await h.check(`down-${i}`)).httpStatus, 401, 'connection refused: unreachableStatus');
  const m = await h.metrics();
  t.equal(m.get('authz_introspection_retries_total{endpoint="idp"}'), 2, 'each call retried once');
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="error"}'), 2);
  t.equal(m.get('authz_introspection_circuit_state{endpoint="idp"}'), 2);
  t.equal((await h.check('down-2')).httpStatus, 401, 'circuit open: the same deny, at once');
});

t.test('429 from the endpoint: calls pause for Retry-After, the circuit stays closed, legitimate tokens work after', async (t) => {
  const h = await start(t, { retries: 2 });
  h.fake.respond(() => ({ status: 429, headers: { 'retry-after': '1' } }));
  const r = await h.check(GOOD);
  t.equal(r.allowed, false);
  t.equal(r.httpStatus, 401, 'unreachable (unreachableStatus), not a bad answer');
  t.equal(h.fake.requests.length, 1, 'not retried');

  // An attacker's random tokens while the server is rate limiting: denied without asking,
  // and they do not open the circuit that legitimate new tokens need.
  const flood = await Promise.all(Array.from({ length: 60 }, (_, i) => h.check(`random-token-${i}-Zq9`)));
  t.ok(flood.every((f) => !f.allowed && f.httpStatus === 401), 'every random token denied 401');
  t.equal(h.fake.requests.length, 1, 'none of them reached the rate-limited server during the pause');
  const m = await h.metrics();
  t.equal(m.get('authz_introspection_circuit_state{endpoint="idp"}'), 0, 'the circuit is still closed');

  h.fake.respond(normal);
  h.clock.ms += 1_000;
  t.equal((await h.check(GOOD)).allowed, true, 'a legitimate token is allowed once Retry-After has passed');
  t.equal(h.fake.requests.length, 2);
});

t.test('a 503 then an answer: one retry, one allow', async (t) => {
  const h = await start(t);
  let calls = 0;
  h.fake.respond((req) => (++calls === 1 ? { status: 503 } : normal(req)));
  t.equal((await h.check(GOOD)).allowed, true);
  t.equal(h.fake.requests.length, 2);
  const m = await h.metrics();
  t.equal(m.get('authz_introspection_retries_total{endpoint="idp"}'), 1);
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="active"}'), 1, 'one introspection, counted once');
});

t.test('waiting for a slot (maxInFlight) ends at Envoy\'s deadline', async (t) => {
  const h = await start(t, { maxInFlight: 1, queueTimeout: 10_000, authenticationTimeout: 10_000 });
  h.fake.respond(() => ({ blackHole: true }));
  const holder = h.check('slot-holder-token', { timeoutMs: 800 });
  await h.fake.waitForRequests(1);
  const started = performance.now();
  const queued = await h.check('queued-token', { timeoutMs: 300 });
  const ms = performance.now() - started;
  t.equal(queued.allowed, false);
  t.equal(queued.httpStatus, 401, 'an introspection error, answered');
  t.ok(ms < 300, `before Envoy's 300 ms deadline (${Math.round(ms)} ms)`);
  t.equal(h.fake.requests.length, 1, 'the queued call never went out');
  t.equal((await holder).httpStatus, 401);
});

t.test('clientIdHeader: the client id comes from the request; answers are per token and client id', async (t) => {
  const h = await start(t, { authMethod: 'client_secret_post', clientSecret: 'shared-s3cret', clientIdHeader: 'x-client-id' });
  // The endpoint answers only the token's own client (as IBM's does).
  h.fake.respond((req) => ({
    json: req.body.get('token') === GOOD && req.body.get('client_id') === 'app-one' ? { active: true, sub: 'alice' } : { active: false },
  }));
  const as = (client: string) => ({ headers: { 'x-client-id': client } });
  t.equal((await h.check(GOOD, as('app-one'))).allowed, true, 'app-one: allowed');
  t.equal((await h.check(GOOD, as('app-two'))).httpStatus, 401, 'the same token for app-two: inactive, not the cached answer');
  t.same(
    h.fake.requests.map((r) => [r.body.get('client_id'), r.body.get('client_secret')]),
    [
      ['app-one', 'shared-s3cret'],
      ['app-two', 'shared-s3cret'],
    ],
  );
  t.equal((await h.check(GOOD, as('app-one'))).allowed, true);
  t.equal(h.fake.requests.length, 2, 'served from the cache, per client id');

  const together = await Promise.all([...Array(10)].map((_, i) => h.check(`new-token-${i % 2}`, as(i < 5 ? 'x' : 'y'))));
  t.ok(together.every((r) => r.httpStatus === 401));
  t.equal(h.fake.requests.length, 6, 'concurrent Checks share a call only with the same token and client id');

  const missing = await h.check(GOOD);
  t.equal(missing.allowed, false, 'no client id header: denied');
  t.equal(missing.httpStatus, 401);
  t.equal(h.fake.requests.length, 6, 'without asking the endpoint');
});

t.test('staleIfError through the service: an outage after expiry serves the expired answer, the policy still judges it', async (t) => {
  const h = await start(
    t,
    { retries: 0, staleIfError: 120 },
    {
      cache: { validatedTokenTTL: 60 },
      policies: [{ name: 'p' }, { name: 'admin', scopes: 'admin' }],
      defaultPolicy: 'p',
    },
  );
  t.equal((await h.check(GOOD)).allowed, true, 'cached while the endpoint is up');
  h.clock.ms += 61_000;
  await h.fake.setAvailability('refuse');
  const stale = await h.check(GOOD);
  t.equal(stale.allowed, true, 'allowed from the expired answer while the endpoint is down');
  const route = await h.check(GOOD, { contextExtensions: { policy: 'admin' } });
  t.equal(route.httpStatus, 403, 'a route whose policy the stale claims do not satisfy is still denied');
  let m = await h.metrics();
  t.equal(m.get('authz_stale_answers_total{endpoint="idp"}'), 2);
  t.equal(m.get('authz_cache_lookups_total{result="stale"}'), 2);

  h.clock.ms += 120_000;
  const closed = await h.check(GOOD);
  t.equal(closed.allowed, false, 'denied once the window has passed');
  m = await h.metrics();
  t.equal(m.get('authz_check_decisions_total{decision="deny",reason="introspection_error",policy="p",transport="grpc"}'), 1);
});
