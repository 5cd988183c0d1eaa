// Envoy's deadline (grpc-timeout) bounds every Check: when the authorization
// server does not answer, the service must still answer Envoy with an OK RPC
// carrying a deny before the deadline, not let the RPC fail with
// DEADLINE_EXCEEDED (which Envoy treats as an error, and with
// failure_mode_allow: true, lets the request through).
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, type EnvoyClient, type UpstreamCheckResponse } from '../support/envoy.js';
import {
  answerByToken,
  startFakeAuthorizationServer,
  type FakeAuthorizationServer,
  type FakeHandler,
} from '../support/fake-authorization-server.js';

const TOKEN = 'deadline-token-7Hk2';
const CLAIMS = { sub: 'carol', client_id: 'app-one', scope: 'read', exp: Math.floor(Date.now() / 1000) + 3600 };
const WARM_TOKEN = 'warm-up-token-3Jd8';
const normal: FakeHandler = answerByToken({ [TOKEN]: CLAIMS, [WARM_TOKEN]: { sub: 'warm' } });
const DEADLINE_MS = 300;

interface Service {
  app: App;
  envoy: EnvoyClient;
  fake: FakeAuthorizationServer;
}

async function startService(t: Test, policy: Record<string, unknown> = {}): Promise<Service> {
  const fake = await startFakeAuthorizationServer(normal);
  t.teardown(() => fake.close());
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 500 },
      log: { level: 'silent' },
      endpoints: [
        { name: 'main', url: fake.url, clientId: 'authz-service', clientSecret: 's3cret', authenticationTimeout: 10_000 },
      ],
      policies: [{ name: 'default', ...policy }],
    },
    'deadline test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  // Warm up, so that connection setup and the first use of each code path
  // (protobuf codec compilation, undici's abort path: 5-40 ms here, where
  // client and server share one event loop) do not eat into the measured
  // deadline: a deny, an allow and a timed-out call, of other tokens than the one measured.
  t.equal(await envoy.health(), 'SERVING', 'the service is up');
  t.equal((await envoy.check({ headers: {} })).denied_response?.status?.code, 'Unauthorized', 'warm-up deny');
  const warm = await envoy.check({ headers: { authorization: `Bearer ${WARM_TOKEN}` } });
  t.equal(warm.status?.code, 0, 'warm-up allow');
  fake.respond(() => ({ blackHole: true }));
  // 40 ms: a deadline that short never counts as the endpoint's failure, so the breaker starts every test at zero.
  await envoy.check({ headers: { authorization: 'Bearer warm-up-black-hole' }, timeoutMs: 40 }).catch(() => undefined);
  fake.respond(normal);
  fake.requests.length = 0;
  return { app, envoy, fake };
}

/** Send a Check with Envoy's deadline; resolve with the answer or the RPC error, and the time taken. */
async function timedCheck(
  envoy: EnvoyClient,
  timeoutMs: number,
): Promise<{ response: UpstreamCheckResponse | null; error: grpc.ServiceError | null; ms: number }> {
  const started = performance.now();
  try {
    const response = await envoy.check({ headers: { authorization: `Bearer ${TOKEN}` }, timeoutMs });
    return { response, error: null, ms: performance.now() - started };
  } catch (error) {
    return { response: null, error: error as grpc.ServiceError, ms: performance.now() - started };
  }
}

function headers(response: UpstreamCheckResponse): Record<string, string> {
  const map: Record<string, string> = {};
  for (const h of response.denied_response?.headers ?? response.ok_response?.headers ?? []) map[h.header.key] = h.header.value;
  return map;
}

/** The service is healthy and allows the token once the endpoint answers normally again. */
async function recovers(t: Test, { envoy, fake }: Service): Promise<void> {
  fake.respond(normal);
  const before = fake.requests.length;
  const { response, error, ms } = await timedCheck(envoy, 2_000);
  t.equal(error, null, 'the next Check is an OK RPC');
  t.equal(response?.status?.code, 0, 'and allows');
  t.equal(headers(response!)['x-auth-subject'], 'carol', 'with the identity');
  t.equal(fake.requests.length, before + 1, 'after asking the endpoint afresh (no stale call joined)');
  t.ok(ms < 1_000, `promptly (${Math.round(ms)} ms)`);
  t.equal(await envoy.health(), 'SERVING', 'health is still SERVING');
}

t.test('black hole: a 401 deny before the deadline, not DEADLINE_EXCEEDED', async (t) => {
  const service = await startService(t);
  service.fake.respond(() => ({ blackHole: true }));
  const { response, error, ms } = await timedCheck(service.envoy, DEADLINE_MS);
  t.equal(error?.code, undefined, `no RPC error (got ${error ? grpc.status[error.code] : 'none'})`);
  t.ok(ms < DEADLINE_MS, `answered in ${Math.round(ms)} ms, before the ${DEADLINE_MS} ms deadline`);
  // The deadline wheel answers early by twice the measured event-loop lag (up to 120 ms on a loaded
  // machine) plus the margin: the bound says only that it waited for the endpoint, not gave up at once.
  t.ok(ms >= DEADLINE_MS * 0.3, `after waiting for the endpoint a good part of the deadline (${Math.round(ms)} ms)`);
  t.not(response?.status?.code ?? 0, 0, 'status.code non-zero: a deny');
  t.equal(response?.status?.code, grpc.status.UNAUTHENTICATED);
  t.equal(response?.denied_response?.status?.code, 'Unauthorized', 'HTTP 401 (unreachableStatus default)');
  t.equal(
    headers(response!)['www-authenticate'],
    'Bearer realm="api"',
    'a realm-only challenge: the token itself may be fine',
  );
  t.same(JSON.parse(response!.denied_response!.body), {
    error: 'introspection_error',
    error_description: 'the token could not be verified',
  });
  t.equal(service.fake.requests.length, 1, 'the endpoint saw the request');
  t.equal(service.fake.requests[0]!.body.get('token'), TOKEN);
  await recovers(t, service);
});

t.test('black hole with unreachableStatus 503: a 503 deny before the deadline', async (t) => {
  const service = await startService(t, { unreachableStatus: 503 });
  service.fake.respond(() => ({ blackHole: true }));
  const { response, error, ms } = await timedCheck(service.envoy, DEADLINE_MS);
  t.equal(error, null, 'no RPC error');
  t.ok(ms < DEADLINE_MS, `answered in ${Math.round(ms)} ms`);
  t.equal(response?.status?.code, grpc.status.UNAVAILABLE);
  t.equal(response?.denied_response?.status?.code, 'ServiceUnavailable', 'HTTP 503');
  t.notOk('www-authenticate' in headers(response!), 'no challenge on a 503');
  t.same(JSON.parse(response!.denied_response!.body), {
    error: 'introspection_error',
    error_description: 'the token could not be verified',
  });
  t.equal(service.fake.requests.length, 1, 'the endpoint saw the request');
  await recovers(t, service);
});

t.test('headers that come too slowly count like a black hole', async (t) => {
  const service = await startService(t);
  service.fake.respond(() => ({ delayMs: 2_000, json: { active: true, ...CLAIMS } }));
  const { response, error, ms } = await timedCheck(service.envoy, DEADLINE_MS);
  t.equal(error, null, 'no RPC error');
  t.ok(ms < DEADLINE_MS, `answered in ${Math.round(ms)} ms`);
  t.equal(response?.denied_response?.status?.code, 'Unauthorized', 'a 401 deny, not an allow from the late answer');
  await recovers(t, service);
});

t.test('several concurrent Checks of the same token against a black hole all get the deny in time', async (t) => {
  const service = await startService(t);
  service.fake.respond(() => ({ blackHole: true }));
  const results = await Promise.all(Array.from({ length: 5 }, () => timedCheck(service.envoy, DEADLINE_MS)));
  for (const [i, { response, error, ms }] of results.entries()) {
    t.equal(error, null, `#${i}: no RPC error`);
    t.ok(ms < DEADLINE_MS, `#${i}: answered in ${Math.round(ms)} ms`);
    t.equal(response?.denied_response?.status?.code, 'Unauthorized', `#${i}: 401`);
  }
  t.equal(service.fake.requests.length, 1, 'the concurrent Checks shared one introspection call');
  await recovers(t, service);
});

t.test('garbage answer: badResponseStatus', async (t) => {
  for (const [name, policy, http, rpc] of [
    ['default 500', {}, 'InternalServerError', grpc.status.INTERNAL],
    ['configured 502', { badResponseStatus: 502 }, 'BadGateway', grpc.status.UNAVAILABLE],
  ] as Array<[string, Record<string, unknown>, string, number]>) {
    await t.test(name, async (t) => {
      const service = await startService(t, policy);
      for (const garbage of [
        { body: '<html>oops</html>', headers: { 'content-type': 'text/html' } },
        { status: 502, body: 'Bad Gateway' },
        { json: { active: 'true', sub: 'carol' } },
      ]) {
        service.fake.respond(() => garbage);
        const { response, error } = await timedCheck(service.envoy, 2_000);
        t.equal(error, null, 'no RPC error');
        t.equal(response?.status?.code, rpc);
        t.equal(response?.denied_response?.status?.code, http);
        t.notOk('www-authenticate' in headers(response!), 'no challenge');
        t.same(JSON.parse(response!.denied_response!.body), {
          error: 'bad_response',
          error_description: 'the token could not be verified',
        });
      }
      // The 502 is asked twice: a 502 is retried once (the endpoint's retries default).
      t.equal(service.fake.requests.length, 4, 'each garbage answer came from the endpoint');
      await recovers(t, service);
    });
  }
});

t.test('an endpoint that hangs opens its circuit through Envoy\'s deadlines alone (authenticationTimeout above them)', async (t) => {
  const service = await startService(t);
  service.fake.respond(() => ({ blackHole: true }));
  // Five Checks whose deadlines pass with the answer overdue: the breaker's default of 5 failures.
  for (let i = 0; i < 5; i += 1) {
    const { response, error } = await timedCheck(service.envoy, DEADLINE_MS);
    t.equal(error, null, `#${i}: no RPC error`);
    t.equal(response?.denied_response?.status?.code, 'Unauthorized', `#${i}: 401`);
  }
  t.equal(service.fake.requests.length, 5, 'each of them asked the endpoint');
  const { response, error, ms } = await timedCheck(service.envoy, DEADLINE_MS);
  t.equal(error, null);
  t.equal(response?.denied_response?.status?.code, 'Unauthorized', 'the same deny');
  t.equal(service.fake.requests.length, 5, 'but without asking: the circuit is open');
  t.ok(ms < DEADLINE_MS / 2, `and at once (${Math.round(ms)} ms)`);
});
