// Dependency faults, through the service as Envoy sees it (gRPC Check against
// the service started in-process): an endpoint whose host name does not
// resolve, a TLS certificate for another name, an endpoint that flaps up and
// down under steady load, and 5% random 500s under concurrent load. In each,
// the invariants are:
//   - every Check is an OK RPC carrying a well-formed CheckResponse, within
//     authenticationTimeout plus a margin; errors are denies with the
//     configured status (unreachableStatus 503, badResponseStatus 502);
//   - no Check is allowed unless the fake authorization server answered
//     active for its token;
//   - calls at the endpoint at once never exceed maxInFlight, and the
//     in-flight gauge goes back to 0;
//   - the heap does not grow beyond a generous bound;
//   - the circuit breaker opens and closes again as the endpoint goes and comes.
// Every loop is bounded in count and time. Loopback only, but for the
// resolver being asked about a name under .invalid (RFC 6761: never resolves).
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import type { CircuitState } from '../../src/introspection/circuit-breaker.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestPki, opensslAvailable } from '../support/certificates.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import {
  startFakeAuthorizationServer,
  type FakeHandler,
  type FakeRequest,
  type FakeServerOptions,
} from '../support/fake-authorization-server.js';
import { httpGet, samples, sleep, waitFor } from '../support/service-process.js';

const UNREACHABLE = 503;
const BAD_RESPONSE = 502;
/**
 * Slack on top of authenticationTimeout for a Check's answer: this machine is
 * shared and noisy. Client, service and fake share this process, so the
 * longest event-loop stall seen meanwhile (a timer can fire no earlier) is
 * added to it: a service that ignored authenticationTimeout would still take
 * Envoy's whole deadline.
 */
const MARGIN_MS = 250;
/** Envoy's deadline, well past authenticationTimeout: the endpoint's own bound must be what answers. */
const ENVOY_DEADLINE_MS = 5_000;
/**
 * Heap growth (after a full GC) tolerated over a test's load: the caches alone
 * take a few MiB. Generous, so it catches gross leaks (what every Check touched
 * kept alive), not small ones: `make soak` looks for a trend over minutes.
 */
const HEAP_BOUND_MIB = 32;

// A full GC before reading heapUsed, so that garbage not yet collected is not taken for growth.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function settledHeapMiB(): Promise<number> {
  for (let i = 0; i < 3; i += 1) {
    gc();
    await sleep(20);
  }
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** What the fake authorization server answered, per token: the ground truth for allows. */
type Answered = 'active' | 'inactive' | 'http_500';

class Ledger {
  readonly answers = new Map<string, Answered>();
  readonly asked = new Map<string, number>();
  activeAnswers = 0;

  record(token: string, answer: Answered): void {
    this.answers.set(token, answer);
    this.asked.set(token, (this.asked.get(token) ?? 0) + 1);
    if (answer === 'active') this.activeAnswers += 1;
  }
}

/** Tokens starting "ok" are active, every other one inactive; each answer is written in the ledger first. */
function answering(ledger: Ledger, fault: (request: FakeRequest) => boolean = () => false): FakeHandler {
  return (request) => {
    const token = request.body.get('token') ?? '';
    // A few milliseconds each, so that calls overlap and maxInFlight is reached.
    const delayMs = 1 + Math.floor(Math.random() * 5);
    if (fault(request)) {
      ledger.record(token, 'http_500');
      return { status: 500, body: 'internal error', delayMs };
    }
    if (token.startsWith('ok')) {
      ledger.record(token, 'active');
      return { json: { active: true, sub: `user-${token.slice(2, 8)}`, scope: 'read' }, delayMs };
    }
    ledger.record(token, 'inactive');
    return { json: { active: false }, delayMs };
  };
}

const newToken = (prefix: 'ok' | 'bad') => `${prefix}-${randomBytes(18).toString('base64url')}`;

/** One Check as Envoy saw it. Never holds the token's text in a message. */
interface Outcome {
  token: string;
  ms: number;
  /** The RPC failed (status name), or the answer could not be read: either breaks the contract with Envoy. */
  broken: string | null;
  allowed: boolean;
  httpStatus: number | null;
  error: string | null;
}

interface Service {
  app: App;
  envoy: EnvoyClient;
  check(token: string, policy?: string): Promise<Outcome>;
  metrics(): Promise<Map<string, number>>;
  circuit(endpoint?: string): CircuitState | undefined;
}

async function startService(
  t: Test,
  endpoints: Array<Record<string, unknown>>,
  top: Record<string, unknown> = {},
): Promise<Service> {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 500 },
      log: { level: 'silent' },
      endpoints: endpoints.map((endpoint) => ({ authMethod: 'none', ...endpoint })),
      policies: endpoints.map((endpoint) => ({
        name: endpoint.name,
        endpoint: endpoint.name,
        unreachableStatus: UNREACHABLE,
        badResponseStatus: BAD_RESPONSE,
      })),
      defaultPolicy: endpoints[0]!.name,
      ...top,
    },
    'dependency-faults.yaml',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return {
    app,
    envoy,
    async check(token, policy) {
      const started = performance.now();
      const outcome: Outcome = { token, ms: 0, broken: null, allowed: false, httpStatus: null, error: null };
      try {
        const response = await envoy.check({
          headers: { authorization: `Bearer ${token}` },
          timeoutMs: ENVOY_DEADLINE_MS,
          ...(policy === undefined ? {} : { contextExtensions: { policy } }),
        });
        outcome.ms = performance.now() - started;
        const s = summarize(response);
        outcome.allowed = s.allowed;
        outcome.httpStatus = s.httpStatus;
        if (s.allowed) {
          if (!response.ok_response || response.denied_response) outcome.broken = 'an allow without ok_response';
        } else {
          if (s.httpStatus === null) outcome.broken = 'a deny without denied_response status';
          const body = JSON.parse(s.body ?? 'null') as { error?: unknown } | null;
          outcome.error = typeof body?.error === 'string' ? body.error : null;
          if (outcome.error === null) outcome.broken = 'a deny without an error code in its body';
          if (s.body?.includes(token)) outcome.broken = 'a deny body holding the token';
        }
      } catch (error) {
        outcome.ms = performance.now() - started;
        const e = error as { code?: unknown; name?: unknown };
        outcome.broken = typeof e.code === 'number' ? `RPC failed with gRPC status ${e.code}` : `unreadable answer (${String(e.name)})`;
      }
      return outcome;
    },
    async metrics() {
      const { status, body } = await httpGet(app.ops.port, '/metrics');
      if (status !== 200) throw new Error(`/metrics answered ${status}`);
      return samples(body);
    },
    circuit(endpoint) {
      const states = app.authorizer.circuitStates();
      return (endpoint === undefined ? states[0] : states.find(([name]) => name === endpoint))?.[1];
    },
  };
}

/** Deny statuses and error codes a Check may end with here, by cause. */
const DENIES: Record<string, [number, string]> = {
  inactive: [401, 'invalid_token'],
  unreachable: [UNREACHABLE, 'introspection_error'],
  bad_response: [BAD_RESPONSE, 'bad_response'],
};

interface Expectations {
  authenticationTimeout: number;
  /** The longest event-loop stall while the Checks ran (see stalls()). */
  stallMs: number;
  /** Deny causes allowed in this test (keys of DENIES). */
  denies: Array<keyof typeof DENIES>;
  ledger?: Ledger;
}

/**
 * The invariants every Check must keep, checked over all of them at once (one
 * assertion each, with a few examples, by index and never by token).
 */
function assertInvariants(t: Test, outcomes: Outcome[], expect: Expectations): void {
  const examples = (bad: Outcome[], show: (o: Outcome) => string) =>
    bad.slice(0, 3).map((o) => `#${outcomes.indexOf(o)} ${show(o)}`).join('; ');
  const broken = outcomes.filter((o) => o.broken !== null);
  t.equal(broken.length, 0, `every Check an OK RPC with a well-formed CheckResponse ${examples(broken, (o) => o.broken!)}`);
  const limit = expect.authenticationTimeout + MARGIN_MS + expect.stallMs;
  const slow = outcomes.filter((o) => o.ms > limit);
  const slowest = outcomes.reduce((max, o) => Math.max(max, o.ms), 0);
  t.equal(
    slow.length,
    0,
    `every Check answered within authenticationTimeout + ${MARGIN_MS} ms + the longest event-loop stall ` +
      `(${expect.authenticationTimeout} + ${MARGIN_MS} + ${Math.round(expect.stallMs)} ms; slowest ${Math.round(slowest)} ms) ${examples(slow, (o) => `${Math.round(o.ms)} ms`)}`,
  );
  const allowedDenies = expect.denies.map((cause) => DENIES[cause]!.join(' '));
  const odd = outcomes.filter((o) => !o.allowed && o.broken === null && !allowedDenies.includes(`${o.httpStatus} ${o.error}`));
  t.equal(odd.length, 0, `every deny is one of: ${allowedDenies.join(', ')} ${examples(odd, (o) => `${o.httpStatus} ${o.error}`)}`);
  if (expect.ledger) {
    const ledger = expect.ledger;
    const wrong = outcomes.filter((o) => o.allowed && ledger.answers.get(o.token) !== 'active');
    t.equal(wrong.length, 0, `no allow without an active answer for the token ${examples(wrong, (o) => String(ledger.answers.get(o.token)))}`);
  }
}

/**
 * Run `task` from `workers` concurrent loops until `total` tasks have run or
 * `maxMs` has passed, each loop pausing `pauseMs` between tasks. Returns the tasks run.
 */
async function load(workers: number, total: number, maxMs: number, task: (i: number) => Promise<void>, pauseMs = 0): Promise<number> {
  let next = 0;
  const stopAt = Date.now() + maxMs;
  const worker = async () => {
    while (next < total && Date.now() < stopAt) {
      await task(next++);
      if (pauseMs > 0) await sleep(pauseMs);
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  return next;
}

/** Watches this process's event loop; stop() gives the longest delay of a 10 ms timer, in ms. */
function stalls(): { stop(): number } {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  return {
    stop() {
      histogram.disable();
      return histogram.max / 1e6;
    },
  };
}

/** Reads the service's in-flight gauge (calls under way, waiting for a slot included) every few ms. */
function sampleGauge(app: App, endpoint: string): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      const { values } = await app.metrics.introspectionsInFlight.get();
      for (const v of values) if (v.labels.endpoint === endpoint) peak = Math.max(peak, v.value);
      await sleep(5);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return peak;
    },
  };
}

t.test('a host name that does not resolve: fast 503 denies, then the breaker stops the lookups', async (t) => {
  const AUTH_TIMEOUT = 1_000;
  const FAILURES = 3;
  const s = await startService(t, [
    { name: 'idp', url: 'http://idp.invalid/oauth2/introspect', allowInsecure: true, authenticationTimeout: AUTH_TIMEOUT, circuitBreaker: { failures: FAILURES, resetTimeout: 60_000 } },
  ]);
  const outcomes: Outcome[] = [];
  const stall = stalls();
  for (let i = 0; i < FAILURES; i += 1) outcomes.push(await s.check(newToken('ok')));
  let m = await s.metrics();
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="error"}'), FAILURES, 'each lookup failed as an error (resolver said no), not by running out of time');
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="timeout"}') ?? 0, 0, 'no timeout: it failed fast');
  t.equal(s.circuit(), 'open', `the breaker opened after ${FAILURES} failures`);

  const burst = await Promise.all(Array.from({ length: 50 }, () => s.check(newToken('ok'))));
  outcomes.push(...burst);
  assertInvariants(t, outcomes, { authenticationTimeout: AUTH_TIMEOUT, stallMs: stall.stop(), denies: ['unreachable'] });
  t.equal(outcomes.filter((o) => o.allowed).length, 0, 'nothing allowed');
  m = await s.metrics();
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="circuit_open"}'), 50, 'the burst was denied by the open circuit, without a lookup');
  t.equal(m.get('authz_check_decisions_total{decision="deny",reason="introspection_error",policy="idp",transport="grpc"}'), FAILURES + 50, 'the service counted every deny as introspection_error');
  t.equal(m.get('authz_introspection_in_flight{endpoint="idp"}'), 0, 'nothing left in flight');
  t.equal(await s.envoy.health(), 'SERVING', 'the service stays healthy');
});

t.test(
  'a TLS certificate for another host name: refused, nothing sent, 503 denies, breaker opens',
  { skip: opensslAvailable() ? false : 'needs the openssl command (Debian package openssl) to make certificates' },
  async (t) => {
    const AUTH_TIMEOUT = 1_000;
    const FAILURES = 3;
    const pki = createTestPki();
    const ledger = new Ledger();
    const fake = async (options: FakeServerOptions) => {
      const server = await startFakeAuthorizationServer(answering(ledger), options);
      t.teardown(() => server.close());
      return server;
    };
    // The misnamed server's certificate is signed by the trusted CA, valid, but for idp.example.com:
    // https://127.0.0.1 must not accept it. The control endpoint differs only in its certificate.
    const misnamed = await fake({ tls: pki.misnamed });
    const control = await fake({ tls: pki.server });
    const endpoint = { ca: pki.ca, authenticationTimeout: AUTH_TIMEOUT, retries: 1, circuitBreaker: { failures: FAILURES, resetTimeout: 60_000 } };
    const s = await startService(t, [
      { name: 'misnamed', url: misnamed.url, ...endpoint },
      { name: 'control', url: control.url, ...endpoint },
    ]);

    const allowedControl = await s.check(newToken('ok'), 'control');
    t.equal(allowedControl.allowed, true, 'control: the same CA and settings with a matching certificate allow');

    const outcomes: Outcome[] = [];
    const stall = stalls();
    for (let i = 0; i < FAILURES; i += 1) outcomes.push(await s.check(newToken('ok'), 'misnamed'));
    t.equal(s.circuit('misnamed'), 'open', `the breaker opened after ${FAILURES} refused handshakes`);
    const handshakes = misnamed.connectionCount();
    t.equal(handshakes, FAILURES, 'one handshake per Check: a certificate failure is not retried');
    outcomes.push(...(await Promise.all(Array.from({ length: 30 }, () => s.check(newToken('ok'), 'misnamed')))));
    assertInvariants(t, outcomes, { authenticationTimeout: AUTH_TIMEOUT, stallMs: stall.stop(), denies: ['unreachable'], ledger });
    t.equal(outcomes.filter((o) => o.allowed).length, 0, 'nothing allowed through the misnamed endpoint');
    t.equal(misnamed.requests.length, 0, 'no request (no token) was ever sent over the unverified connection');
    t.equal(misnamed.connectionCount(), handshakes, 'no more handshakes once the circuit is open');

    const m = await s.metrics();
    t.equal(m.get('authz_introspection_requests_total{endpoint="misnamed",outcome="error"}'), FAILURES, 'each refused handshake an error');
    t.equal(m.get('authz_introspection_requests_total{endpoint="misnamed",outcome="circuit_open"}'), 30, 'the rest denied by the open circuit');
    t.equal(s.circuit('control'), 'closed', "one endpoint's breaker does not touch another's");
    t.equal((await s.check(newToken('ok'), 'control')).allowed, true, 'control: still allows');
  },
);

t.test('5% random 500s under concurrent load: exact answers, bounded calls, closed breaker', async (t) => {
  const AUTH_TIMEOUT = 2_000;
  const MAX_IN_FLIGHT = 8;
  const WORKERS = 32;
  const TOTAL = 2_000;
  /** On a loaded machine fewer may run within the time cap; enough for the shares below to mean something. */
  const AT_LEAST = 800;
  const ledger = new Ledger();
  const fake = await startFakeAuthorizationServer(answering(ledger, () => Math.random() < 0.05));
  t.teardown(() => fake.close());
  const s = await startService(
    t,
    [
      {
        name: 'idp',
        url: fake.url,
        authenticationTimeout: AUTH_TIMEOUT,
        maxInFlight: MAX_IN_FLIGHT,
        queueTimeout: 1_000,
        // Opening needs 8 500s in a row: about one chance in 10^7 over this run at 5%.
        circuitBreaker: { failures: 8, resetTimeout: 60_000 },
      },
    ],
    { cache: { maxCacheEntries: 1_000, maxNegativeEntries: 1_000 } },
  );
  // Warm-up: code paths compiled and pools connected before the heap is first read.
  await load(WORKERS, 100, 5_000, async () => void (await s.check(newToken('ok'))));
  const heapBefore = await settledHeapMiB();
  fake.resetPeak();

  const gauge = sampleGauge(s.app, 'idp');
  const stall = stalls();
  const outcomes: Outcome[] = [];
  const started = performance.now();
  const ran = await load(WORKERS, TOTAL, 15_000, async (i) => {
    outcomes.push(await s.check(newToken(i % 5 === 0 ? 'bad' : 'ok')));
  });
  const seconds = (performance.now() - started) / 1000;
  const stallMs = stall.stop();
  const gaugePeak = await gauge.stop();
  t.ok(ran >= AT_LEAST, `${ran} of ${TOTAL} Checks ran within the time cap (${seconds.toFixed(1)} s, ${Math.round(ran / seconds)}/s)`);

  assertInvariants(t, outcomes, { authenticationTimeout: AUTH_TIMEOUT, stallMs, denies: ['inactive', 'bad_response', 'unreachable'], ledger });
  // Each Check has its own token, so what the endpoint answered for it decides it exactly.
  const expected = (o: Outcome) => {
    const answer = ledger.answers.get(o.token);
    return answer === 'active' ? 'allow' : answer === 'inactive' ? '401 invalid_token' : answer === 'http_500' ? `${BAD_RESPONSE} bad_response` : `${UNREACHABLE} introspection_error`;
  };
  const got = (o: Outcome) => (o.allowed ? 'allow' : `${o.httpStatus} ${o.error}`);
  const mismatched = outcomes.filter((o) => expected(o) !== got(o));
  t.equal(mismatched.length, 0, `each Check decided by what the endpoint answered for its token ${mismatched.slice(0, 3).map((o) => `${expected(o)} -> ${got(o)}`).join('; ')}`);
  const count = (what: string) => outcomes.filter((o) => got(o) === what).length;
  const http500 = count(`${BAD_RESPONSE} bad_response`);
  const active = outcomes.filter((o) => ledger.answers.get(o.token) === 'active').length;
  t.equal(count('allow'), active, `allows (${count('allow')}) = active answers for these Checks' tokens`);
  t.ok(http500 >= ran * 0.02 && http500 <= ran * 0.09, `about 5% were 500s, each a ${BAD_RESPONSE} deny (${http500})`);
  t.comment(`${count('allow')} allowed, ${count('401 invalid_token')} inactive, ${http500} bad_response, ${count(`${UNREACHABLE} introspection_error`)} no slot in time`);
  t.ok([...ledger.asked.values()].every((n) => n === 1), 'each token asked once: a 500 is not retried');

  const { peak } = fake.concurrency();
  t.ok(peak <= MAX_IN_FLIGHT, `calls at the endpoint at once: at most maxInFlight (${peak} <= ${MAX_IN_FLIGHT})`);
  t.ok(peak >= MAX_IN_FLIGHT / 2, `and the load pressed on that bound (${peak})`);
  t.ok(gaugePeak <= WORKERS, `in-flight gauge (slot waiters included) at most the concurrent Checks (${gaugePeak} <= ${WORKERS})`);
  const m = await s.metrics();
  t.equal(m.get('authz_introspection_in_flight{endpoint="idp"}'), 0, 'in-flight gauge back to 0');
  t.equal(s.circuit(), 'closed', 'scattered 500s between answers never opened the breaker');
  t.equal(m.get('authz_introspection_requests_total{endpoint="idp",outcome="circuit_open"}') ?? 0, 0, 'no Check denied by the breaker');

  const heapAfter = await settledHeapMiB();
  t.ok(heapAfter - heapBefore < HEAP_BOUND_MIB, `heap after a GC: ${heapBefore.toFixed(1)} -> ${heapAfter.toFixed(1)} MiB (bound +${HEAP_BOUND_MIB})`);
});

t.test('an endpoint flapping up and down under steady load: the breaker opens and closes, nothing leaks', async (t) => {
  // Down phases fail fast (reset, refused); the bound is checked all the same.
  const AUTH_TIMEOUT = 2_000;
  const MAX_IN_FLIGHT = 8;
  const WORKERS = 16;
  const PHASE_MS = 300;
  const CYCLES = 6;
  const RESET_TIMEOUT = 100;
  const ledger = new Ledger();
  const fake = await startFakeAuthorizationServer(answering(ledger));
  t.teardown(() => fake.close());
  const s = await startService(t, [
    {
      name: 'idp',
      url: fake.url,
      authenticationTimeout: AUTH_TIMEOUT,
      maxInFlight: MAX_IN_FLIGHT,
      queueTimeout: 500,
      retries: 1,
      circuitBreaker: { failures: 5, resetTimeout: RESET_TIMEOUT },
    },
  ], { cache: { maxCacheEntries: 20_000 } });
  // Tokens cached while the endpoint is up: allowed from the cache even while it is down.
  const cached = Array.from({ length: 20 }, () => newToken('ok'));
  const warm = await Promise.all(cached.map((token) => s.check(token)));
  t.ok(warm.every((o) => o.allowed), 'tokens cached before the flapping');
  await load(WORKERS, 100, 5_000, async () => void (await s.check(newToken('ok'))));
  const heapBefore = await settledHeapMiB();
  fake.resetPeak();
  const activeBefore = ledger.activeAnswers;

  // The circuit as a caller finds it, every few ms; its changes in order.
  const states: CircuitState[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const state = s.circuit()!;
      if (states.at(-1) !== state) states.push(state);
      await sleep(5);
    }
  })();
  const gauge = sampleGauge(s.app, 'idp');
  const stall = stalls();
  // Up for a phase, then down for a phase: reset connections and refused ones, in turn.
  let flapping = true;
  const flapper = (async () => {
    for (let cycle = 0; cycle < CYCLES && flapping; cycle += 1) {
      await fake.setAvailability('up');
      await sleep(PHASE_MS);
      await fake.setAvailability(cycle % 2 === 0 ? 'reset' : 'refuse');
      await sleep(PHASE_MS);
    }
    await fake.setAvailability('up');
  })();

  const outcomes: Outcome[] = [];
  const kinds = ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'bad', 'bad', 'cached', 'cached'] as const;
  const ran = await load(
    WORKERS,
    20_000,
    CYCLES * 2 * PHASE_MS,
    async (i) => {
      const kind = kinds[i % kinds.length]!;
      outcomes.push(await s.check(kind === 'cached' ? cached[i % cached.length]! : newToken(kind)));
    },
    3,
  );
  flapping = false;
  await flapper;
  const stallMs = stall.stop();
  const gaugePeak = await gauge.stop();
  const activeAnswers = ledger.activeAnswers - activeBefore;

  t.comment(`${ran} Checks over ${CYCLES} up/down cycles of ${PHASE_MS} ms; circuit: ${states.join(' > ')}`);
  assertInvariants(t, outcomes, { authenticationTimeout: AUTH_TIMEOUT, stallMs, denies: ['inactive', 'unreachable'], ledger });
  const allows = outcomes.filter((o) => o.allowed).length;
  const fresh = outcomes.filter((o) => o.allowed && !cached.includes(o.token)).length;
  t.ok(fresh > 0 && fresh <= activeAnswers, `fresh tokens allowed (${fresh}) at most as often as the endpoint answered active (${activeAnswers})`);
  t.ok(outcomes.filter((o) => cached.includes(o.token)).every((o) => o.allowed), 'cached tokens allowed throughout, down phases included');
  t.ok(outcomes.some((o) => o.httpStatus === UNREACHABLE), `down phases gave ${UNREACHABLE} denies`);
  t.comment(`${allows} allowed (${fresh} fresh), ${outcomes.length - allows} denied`);

  const opened = states.filter((state) => state === 'open').length;
  const closedAgain = states.filter((state, i) => state === 'closed' && i > 0).length;
  t.ok(opened >= 2, `the breaker opened in down phases (${opened} times)`);
  t.ok(closedAgain >= 2, `and closed again in up phases (${closedAgain} times)`);
  let m = await s.metrics();
  const outcomeCounts = ['active', 'inactive', 'error', 'timeout', 'circuit_open']
    .map((outcome) => `${outcome} ${m.get(`authz_introspection_requests_total{endpoint="idp",outcome="${outcome}"}`) ?? 0}`)
    .join(', ');
  t.comment(`introspections (warm-up included): ${outcomeCounts}; longest event-loop stall ${Math.round(stallMs)} ms`);
  t.ok((m.get('authz_introspection_requests_total{endpoint="idp",outcome="circuit_open"}') ?? 0) > 0, 'Checks were denied by the open circuit at once');

  const { peak } = fake.concurrency();
  t.ok(peak <= MAX_IN_FLIGHT, `calls at the endpoint at once: at most maxInFlight (${peak} <= ${MAX_IN_FLIGHT})`);
  t.ok(gaugePeak <= WORKERS, `in-flight gauge at most the concurrent Checks (${gaugePeak} <= ${WORKERS})`);

  // Up for good: the next probe closes the circuit and fresh tokens are allowed again.
  const recovered = await waitFor(
    async () => ((await s.check(newToken('ok'))).allowed ? true : undefined),
    RESET_TIMEOUT + 2_000,
    'an allow once the endpoint is back',
  );
  t.ok(recovered, 'recovers once the endpoint stays up');
  t.equal(s.circuit(), 'closed', 'the circuit is closed');
  sampling = false;
  await sampler;
  m = await s.metrics();
  t.equal(m.get('authz_introspection_in_flight{endpoint="idp"}'), 0, 'in-flight gauge back to 0');
  t.equal(await s.envoy.health(), 'SERVING', 'healthy throughout');

  const heapAfter = await settledHeapMiB();
  t.ok(heapAfter - heapBefore < HEAP_BOUND_MIB, `heap after a GC: ${heapBefore.toFixed(1)} -> ${heapAfter.toFixed(1)} MiB (bound +${HEAP_BOUND_MIB})`);
});
