// EndpointClient (the HTTP side of one introspection endpoint) against the
// fake authorization server: what it sends, and what every kind of bad
// answer or broken connection comes to. After each fault the same client
// must still answer a normal request (its pool is healthy).
import t, { type Test } from 'tap';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { buildConfig, type EndpointConfig } from '../../src/config/load.js';
import { Secret } from '../../src/config/secret.js';
import { EndpointClient, type EndpointClientOptions } from '../../src/introspection/endpoint-client.js';
import { DEADLINE_REACHED } from '../../src/introspection/introspector.js';
import type { IntrospectionResult } from '../../src/introspection/result.js';
import {
  answerByToken,
  startFakeAuthorizationServer,
  INTROSPECTION_PATH,
  type FakeAuthorizationServer,
  type FakeHandler,
} from '../support/fake-authorization-server.js';

const GOOD = 'good-token-AAAA';
const EXP = Math.floor(Date.now() / 1000) + 3600;
const CLAIMS = { sub: 'alice', client_id: 'app-one', scope: 'read write', exp: EXP };
const normal: FakeHandler = answerByToken({ [GOOD]: CLAIMS });

/**
 * The endpoint as the loader builds it, with the schema's defaults, then the
 * overrides. One attempt per call (retries: 0) unless a test says otherwise:
 * the faults below are each about what a single answer comes to.
 */
function endpointConfig(url: string, overrides: Partial<EndpointConfig> = {}): EndpointConfig {
  const raw = { name: 'main', url, clientId: 'authz-service', clientSecret: 's3cret', retries: 0 };
  const base = buildConfig({ endpoints: [raw] }, 'test', { env: {} }).endpoints[0]!;
  return { ...base, authenticationTimeout: 2_000, maxConnections: 1, maxResponseBytes: 256, ...overrides };
}

async function fakeServer(t: Test): Promise<FakeAuthorizationServer> {
  const fake = await startFakeAuthorizationServer(normal);
  t.teardown(() => fake.close());
  return fake;
}

function client(t: Test, config: EndpointConfig, options: EndpointClientOptions = {}): EndpointClient {
  const c = new EndpointClient(config, options);
  t.teardown(() => c.destroy());
  return c;
}

/** The same client, asked normally after a fault, still answers correctly. */
async function stillWorks(t: Test, fake: FakeAuthorizationServer, c: EndpointClient): Promise<void> {
  fake.respond(normal);
  const before = fake.requests.length;
  const started = Date.now();
  const result = await c.introspect(GOOD);
  t.equal(result.outcome, 'active', 'a normal request after the fault is answered active');
  if (result.outcome === 'active') t.equal(result.claims.sub, 'alice', 'with the claims of the answer');
  t.equal(fake.requests.length, before + 1, 'and reached the endpoint exactly once');
  t.ok(Date.now() - started < 1_000, 'promptly');
}

function detail(result: IntrospectionResult): string {
  return 'detail' in result ? result.detail : '';
}

/** A TCP port on loopback that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const formEncode = (v: string) => encodeURIComponent(v).replace(/%20/g, '+');

t.test('request shape: POST form to the configured path, JSON accepted, token and hint', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(`${fake.url}?tenant=acme`));
  const result = await c.introspect(GOOD);
  t.equal(result.outcome, 'active');
  if (result.outcome === 'active') {
    t.same({ ...result.claims }, { active: true, ...CLAIMS }, 'claims are the answer');
    t.equal(result.expiresAt, EXP * 1000, 'expiresAt is exp in ms');
  }
  t.equal(fake.requests.length, 1);
  const req = fake.requests[0]!;
  t.equal(req.method, 'POST');
  t.equal(req.path, `${INTROSPECTION_PATH}?tenant=acme`, 'path and query of the configured URL');
  t.equal(req.headers['content-type'], 'application/x-www-form-urlencoded');
  t.equal(req.headers.accept, 'application/json');
  t.equal(req.rawBody, `token=${GOOD}&token_type_hint=access_token`, 'exact body');
  t.same([...req.body.keys()], ['token', 'token_type_hint']);

  const inactive = await c.introspect('unknown-token');
  t.same(inactive, { outcome: 'inactive' }, 'an unknown token is inactive, not an error');
});

t.test('a token with form-special characters is form-encoded', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url));
  const token = 'ab+c/d==';
  await c.introspect(token);
  t.equal(fake.requests[0]!.rawBody, `token=ab%2Bc%2Fd%3D%3D&token_type_hint=access_token`);
  t.equal(fake.requests[0]!.body.get('token'), token, 'decodes back to the token');
});

t.test('tokenTypeHint "" omits token_type_hint', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { tokenTypeHint: '' }));
  t.equal((await c.introspect(GOOD)).outcome, 'active');
  t.equal(fake.requests[0]!.rawBody, `token=${GOOD}`);
  t.equal(fake.requests[0]!.body.has('token_type_hint'), false);
});

t.test('client_secret_basic: Basic base64(formencode(id):formencode(secret))', async (t) => {
  const fake = await fakeServer(t);
  const id = 'authz:svc one';
  const secret = 'p:ss+word with space/=';
  const c = client(t, endpointConfig(fake.url, { clientId: id, clientSecret: new Secret(secret) }));
  t.equal((await c.introspect(GOOD)).outcome, 'active');
  const req = fake.requests[0]!;
  const expected = `Basic ${Buffer.from(`${formEncode(id)}:${formEncode(secret)}`).toString('base64')}`;
  t.equal(req.headers.authorization, expected);
  // Decode the way an RFC 6749 server does: split at the first ':' of the decoded pair, then form-decode.
  const pair = Buffer.from(req.headers.authorization!.slice('Basic '.length), 'base64').toString('utf8');
  t.equal(pair, 'authz%3Asvc+one:p%3Ass%2Bword+with+space%2F%3D', 'both parts form-encoded');
  const colon = pair.indexOf(':');
  const decode = (v: string) => decodeURIComponent(v.replace(/\+/g, ' '));
  t.equal(decode(pair.slice(0, colon)), id);
  t.equal(decode(pair.slice(colon + 1)), secret);
  t.equal(req.body.has('client_id'), false, 'no client_id in the body');
  t.equal(req.body.has('client_secret'), false, 'no client_secret in the body');
});

t.test('client_secret_post: id and secret in the body, no Authorization header', async (t) => {
  const fake = await fakeServer(t);
  const secret = 'p:ss+word with space&x=y';
  const c = client(
    t,
    endpointConfig(fake.url, { authMethod: 'client_secret_post', clientId: 'authz svc', clientSecret: new Secret(secret) }),
  );
  t.equal((await c.introspect(GOOD)).outcome, 'active');
  const req = fake.requests[0]!;
  t.equal(req.headers.authorization, undefined, 'no Authorization header');
  t.equal(req.body.get('token'), GOOD);
  t.equal(req.body.get('token_type_hint'), 'access_token');
  t.equal(req.body.get('client_id'), 'authz svc');
  t.equal(req.body.get('client_secret'), secret, 'secret survives form encoding');
  t.same([...req.body.keys()], ['token', 'token_type_hint', 'client_id', 'client_secret'], 'no other parameter');
});

t.test('authorization_value: sent verbatim', async (t) => {
  const fake = await fakeServer(t);
  const value = 'Bearer abc.DEF+/== x:y';
  const c = client(
    t,
    endpointConfig(fake.url, {
      authMethod: 'authorization_value',
      clientId: null,
      clientSecret: null,
      authorizationValue: new Secret(value),
    }),
  );
  t.equal((await c.introspect(GOOD)).outcome, 'active');
  const req = fake.requests[0]!;
  t.equal(req.headers.authorization, value);
  t.equal(req.rawBody, `token=${GOOD}&token_type_hint=access_token`, 'nothing else in the body');
});

t.test('authMethod none: no credentials; client_id sent when configured', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { authMethod: 'none', clientId: 'public-client', clientSecret: null }));
  await c.introspect(GOOD);
  const req = fake.requests[0]!;
  t.equal(req.headers.authorization, undefined);
  t.equal(req.rawBody, `token=${GOOD}&token_type_hint=access_token&client_id=public-client`);
});

t.test('answer slower than authenticationTimeout: timeout within timeout + margin', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { authenticationTimeout: 300 }));
  fake.respond(() => ({ delayMs: 3_000, json: { active: true, sub: 'late' } }));
  let started = Date.now();
  let result = await c.introspect(GOOD);
  let elapsed = Date.now() - started;
  t.equal(result.outcome, 'timeout', `slow headers: ${detail(result)}`);
  t.ok(elapsed >= 280 && elapsed < 800, `gave up after ${elapsed} ms`);

  // Headers in time, but the body dripped slower than the timeout allows in total.
  fake.respond(() => ({
    json: { active: true, sub: 'late', padding: 'x'.repeat(100) },
    drip: { bytes: 4, intervalMs: 50 },
  }));
  const c2 = client(t, endpointConfig(fake.url, { authenticationTimeout: 300, maxResponseBytes: 4096 }));
  started = Date.now();
  result = await c2.introspect(GOOD);
  elapsed = Date.now() - started;
  t.equal(result.outcome, 'timeout', `dripped body: ${detail(result)}`);
  t.ok(elapsed >= 280 && elapsed < 800, `gave up after ${elapsed} ms`);

  await stillWorks(t, fake, c);
  await stillWorks(t, fake, c2);
});

t.test('never answering (black hole): timeout', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { authenticationTimeout: 250 }));
  fake.respond(() => ({ blackHole: true }));
  const started = Date.now();
  const result = await c.introspect(GOOD);
  const elapsed = Date.now() - started;
  t.equal(result.outcome, 'timeout');
  t.ok(elapsed >= 230 && elapsed < 750, `gave up after ${elapsed} ms`);
  t.equal(fake.requests.length, 1, 'the request did reach the endpoint');
  await stillWorks(t, fake, c);
});

t.test('connection refused: error', async (t) => {
  const port = await closedPort();
  const c = client(t, endpointConfig(`http://127.0.0.1:${port}/introspect`));
  const started = Date.now();
  const result = await c.introspect(GOOD);
  t.equal(result.outcome, 'error');
  t.match(detail(result), /ECONNREFUSED/);
  t.notMatch(detail(result), GOOD, 'the detail does not carry the token');
  t.ok(Date.now() - started < 1_000, 'promptly');
});

t.test('connection reset mid-body: error', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url));
  fake.respond(() => ({ json: { active: true, sub: 'alice', note: 'y'.repeat(100) }, destroyAfterBytes: 20 }));
  const result = await c.introspect(GOOD);
  t.equal(result.outcome, 'error', detail(result));
  t.notMatch(detail(result), GOOD);
  t.equal(fake.requests.length, 1, 'not retried');
  await stillWorks(t, fake, c);
});

t.test('connection closed before any answer: error', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url));
  fake.respond(() => ({ json: { active: true }, destroyAfterBytes: 0 }));
  const result = await c.introspect(GOOD);
  t.equal(result.outcome, 'error', detail(result));
  await stillWorks(t, fake, c);
});

// 429 is not among them: it pauses calls (below), and so does a 503 that carries Retry-After.
for (const status of [500, 502, 503, 401, 404]) {
  t.test(`HTTP ${status}: bad_response`, async (t) => {
    const fake = await fakeServer(t);
    const c = client(t, endpointConfig(fake.url));
    // Even with a body that would read as active: a non-2xx answer is never trusted. Retry-After means nothing but on a 503.
    const headers: Record<string, string> = status === 503 ? {} : { 'retry-after': '1' };
    fake.respond(() => ({ status, json: { active: true, sub: 'alice' }, headers }));
    const result = await c.introspect(GOOD);
    t.equal(result.outcome, 'bad_response');
    t.equal(detail(result), `the endpoint answered HTTP ${status}`);
    await stillWorks(t, fake, c);
  });
}

const badBodies: Array<[string, string]> = [
  ['invalid JSON', '{"active": tru'],
  ['empty body', ''],
  ['JSON array', '[{"active": true}]'],
  ['JSON string', '"active"'],
  ['JSON null', 'null'],
  ['active "true" (a string)', '{"active": "true", "sub": "alice"}'],
  ['active 1', '{"active": 1, "sub": "alice"}'],
  ['active missing', '{"sub": "alice"}'],
  ['exp a string', `{"active": true, "sub": "alice", "exp": "${EXP}"}`],
];
for (const [name, body] of badBodies) {
  t.test(`${name}: bad_response`, async (t) => {
    const fake = await fakeServer(t);
    const c = client(t, endpointConfig(fake.url));
    fake.respond(() => ({ body, headers: { 'content-type': 'application/json' } }));
    const result = await c.introspect(GOOD);
    t.equal(result.outcome, 'bad_response', detail(result));
    await stillWorks(t, fake, c);
  });
}

t.test('an expired answer (active but exp in the past) is inactive', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url));
  fake.respond(() => ({ json: { active: true, sub: 'alice', exp: Math.floor(Date.now() / 1000) - 10 } }));
  t.same(await c.introspect(GOOD), { outcome: 'inactive' });
});

for (const framing of ['content-length', 'chunked', 'close'] as const) {
  t.test(`body over maxResponseBytes (${framing}): bad_response`, async (t) => {
    const fake = await fakeServer(t);
    const c = client(t, endpointConfig(fake.url, { maxResponseBytes: 256 }));
    const big = { active: true, sub: 'alice', padding: 'z'.repeat(2_000) };
    fake.respond(() => ({ json: big, framing, drip: framing === 'content-length' ? undefined : { bytes: 128, intervalMs: 1 } }));
    const result = await c.introspect(GOOD);
    t.equal(result.outcome, 'bad_response');
    t.equal(detail(result), 'the answer is larger than 256 bytes');
    await stillWorks(t, fake, c);
  });
}

t.test('a body of exactly maxResponseBytes is accepted (chunked)', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { maxResponseBytes: 256 }));
  const base = JSON.stringify({ active: true, sub: 'alice', pad: '' });
  const body = JSON.stringify({ active: true, sub: 'alice', pad: 'p'.repeat(256 - base.length) });
  t.equal(Buffer.byteLength(body), 256);
  fake.respond(() => ({ body, framing: 'chunked', drip: { bytes: 100, intervalMs: 1 } }));
  const result = await c.introspect(GOOD);
  t.equal(result.outcome, 'active', detail(result));
});

t.test('302 redirect: bad_response, and the Location is never requested', async (t) => {
  const fake = await fakeServer(t);
  const target = await startFakeAuthorizationServer(() => ({ json: { active: true, sub: 'mallory' } }));
  t.teardown(() => target.close());
  for (const status of [302, 307, 308]) {
    const c = client(t, endpointConfig(fake.url));
    fake.respond(() => ({ redirect: target.url, status }));
    const result = await c.introspect(GOOD);
    t.equal(result.outcome, 'bad_response', `HTTP ${status}`);
    t.equal(detail(result), `the endpoint answered HTTP ${status}`);
    await stillWorks(t, fake, c);
  }
  // Give a (wrongly) following client time to reach the target.
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(target.requests.length, 0, 'the redirect target saw no request');
  t.equal(target.connectionCount(), 0, 'nor a connection');
});

t.test('caller signal aborted: timeout promptly, well before authenticationTimeout', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { authenticationTimeout: 5_000 }));
  fake.respond(() => ({ blackHole: true }));
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(), 100);
  const result = await c.introspect(GOOD, controller.signal);
  const elapsed = Date.now() - started;
  t.equal(result.outcome, 'timeout');
  t.ok(elapsed >= 90 && elapsed < 600, `returned ${elapsed} ms after the call (abort at 100 ms)`);
  await stillWorks(t, fake, c);

  // A signal already aborted: nothing is sent at all.
  fake.respond(() => ({ blackHole: true }));
  const before = fake.requests.length;
  const t0 = Date.now();
  const early = await c.introspect(GOOD, AbortSignal.abort());
  t.equal(early.outcome, 'timeout');
  t.ok(Date.now() - t0 < 200, 'at once');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(fake.requests.length, before, 'no request was made');
  await stillWorks(t, fake, c);
});

t.test('concurrent requests beyond maxConnections queue and all complete', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { maxConnections: 2 }));
  fake.respond(() => ({ delayMs: 20, json: { active: true, sub: 'alice' } }));
  const results = await Promise.all(Array.from({ length: 6 }, () => c.introspect(GOOD)));
  t.same(
    results.map((r) => r.outcome),
    Array(6).fill('active'),
  );
  t.equal(fake.requests.length, 6);
  t.ok(fake.connectionCount() <= 2, `used ${fake.connectionCount()} connections (max 2)`);
});

t.test('client_secret_bearer: the secret alone, as a bearer token (IBM)', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { authMethod: 'client_secret_bearer', clientId: null, clientSecret: new Secret('b34rer-s3cret') }));
  t.equal((await c.introspect(GOOD)).outcome, 'active');
  const req = fake.requests[0]!;
  t.equal(req.headers.authorization, 'Bearer b34rer-s3cret');
  t.equal(req.rawBody, `token=${GOOD}&token_type_hint=access_token`, 'nothing else in the body');
});

t.test('method GET with tokenParameter: an Axway-style token-info request', async (t) => {
  const fake = await fakeServer(t);
  fake.respond((req) => {
    const token = new URL(req.path, fake.origin).searchParams.get('access_token');
    return { json: token === GOOD ? { active: true, sub: 'alice' } : { active: false } };
  });
  const c = client(
    t,
    endpointConfig(`${fake.url}?realm=a%20b`, {
      method: 'GET',
      tokenParameter: 'access_token',
      tokenTypeHint: '',
      authMethod: 'authorization_value',
      clientId: null,
      clientSecret: null,
      authorizationValue: new Secret('Basic YXBpOmtleQ=='),
    }),
  );
  t.equal((await c.introspect(GOOD)).outcome, 'active');
  const req = fake.requests[0]!;
  t.equal(req.method, 'GET');
  t.equal(req.path, `${INTROSPECTION_PATH}?realm=a%20b&access_token=${GOOD}`, 'the URL\'s query kept, the token appended');
  t.equal(req.rawBody, '', 'no body');
  t.equal(req.headers['content-type'], undefined, 'no content type without a body');
  t.equal(req.headers.accept, 'application/json');
  t.equal(req.headers.authorization, 'Basic YXBpOmtleQ==');
  t.same(await c.introspect('ab+c/d=='), { outcome: 'inactive' });
  t.equal(fake.requests[1]!.path, `${INTROSPECTION_PATH}?realm=a%20b&access_token=ab%2Bc%2Fd%3D%3D`, 'the token is encoded');

  const basic = client(t, endpointConfig(fake.url, { method: 'GET' }));
  await basic.introspect(GOOD);
  t.equal(fake.requests[2]!.path, `${INTROSPECTION_PATH}?token=${GOOD}&token_type_hint=access_token`, 'default parameter names');
});

t.test('tokenParameter with POST', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { tokenParameter: 'access_token', authMethod: 'none', clientId: null }));
  await c.introspect(GOOD);
  t.equal(fake.requests[0]!.rawBody, `access_token=${GOOD}&token_type_hint=access_token`);
});

t.test('static headers are sent on every call; the protocol\'s own headers stay ours', async (t) => {
  const fake = await fakeServer(t);
  const c = client(
    t,
    endpointConfig(fake.url, { headers: { 'x-tenant': new Secret('acme'), 'x-api-key': new Secret('k3y value') } }),
  );
  await c.introspect(GOOD);
  await c.introspect(GOOD);
  for (const req of fake.requests) {
    t.equal(req.headers['x-tenant'], 'acme');
    t.equal(req.headers['x-api-key'], 'k3y value');
    t.equal(req.headers['content-type'], 'application/x-www-form-urlencoded');
    t.match(req.headers.authorization, /^Basic /);
  }
});

t.test('clientIdHeader: the client id given per call is the one sent', async (t) => {
  const fake = await fakeServer(t);
  const basic = client(t, endpointConfig(fake.url, { clientId: null, clientIdHeader: 'x-client-id' }));
  t.equal((await basic.introspect(GOOD, undefined, 'caller one')).outcome, 'active');
  t.equal((await basic.introspect(GOOD, undefined, 'caller:two')).outcome, 'active');
  const decode = (header: string | undefined) => Buffer.from(header!.slice('Basic '.length), 'base64').toString();
  t.equal(decode(fake.requests[0]!.headers.authorization), 'caller+one:s3cret');
  t.equal(decode(fake.requests[1]!.headers.authorization), 'caller%3Atwo:s3cret');

  const post = client(t, endpointConfig(fake.url, { authMethod: 'client_secret_post', clientId: null, clientIdHeader: 'x-client-id' }));
  await post.introspect(GOOD, undefined, 'caller-three');
  t.equal(fake.requests[2]!.body.get('client_id'), 'caller-three');
  t.equal(fake.requests[2]!.body.get('client_secret'), 's3cret');

  const none = client(t, endpointConfig(fake.url, { authMethod: 'none', clientId: null, clientSecret: null, clientIdHeader: 'x-client-id' }));
  await none.introspect(GOOD, undefined, 'public-four');
  t.equal(fake.requests[3]!.rawBody, `token=${GOOD}&token_type_hint=access_token&client_id=public-four`);

  const missing = await none.introspect(GOOD);
  t.equal(missing.outcome, 'error', 'no client id: not asked');
  t.equal(fake.requests.length, 4);
});

t.test('429 Too Many Requests: not retried, no failure of the endpoint, calls pause for Retry-After', async (t) => {
  const fake = await fakeServer(t);
  let now = Date.now();
  const clock = { now: () => now };
  const pauses: Array<[number, number]> = [];
  const c = new EndpointClient(
    endpointConfig(fake.url, { retries: 3, rateLimitPause: 3_000, circuitBreaker: { failures: 2, resetTimeout: 60_000 } }),
    { clock, onPause: (status, ms) => pauses.push([status, ms]) },
  );
  t.teardown(() => c.destroy());
  fake.respond(() => ({ status: 429, headers: { 'retry-after': '2' }, json: { error: 'slow_down' } }));
  const limited = await c.introspect(GOOD);
  t.equal(limited.outcome, 'error', 'the endpoint is not available to us: unreachable, not a bad answer');
  t.equal(detail(limited), 'the endpoint answered HTTP 429 (rate limited)');
  t.equal(fake.requests.length, 1, 'never retried: retrying would only add to the load');

  fake.respond(normal);
  for (let i = 0; i < 5; i += 1) {
    const paused = await c.introspect(GOOD);
    t.equal(paused.outcome, 'error');
    t.match(detail(paused), /^not asked: the endpoint answered HTTP 429; calls pause for \d+ ms more$/);
  }
  t.equal(fake.requests.length, 1, 'not asked during the pause');
  t.equal(c.circuitState, 'closed', 'a 429 and the calls it paused are no failures: the circuit stays closed');
  t.same(pauses, [[429, 2_000]], 'the pause is told once (counted and logged by the authorizer)');

  now += 2_000;
  t.equal((await c.introspect(GOOD)).outcome, 'active', 'asked again once Retry-After has passed');
  t.equal(fake.requests.length, 2);
});

t.test('503 with Retry-After: calls pause for it (bounded by rateLimitPause), not retried, and it counts against the endpoint', async (t) => {
  const fake = await fakeServer(t);
  let now = Date.now();
  const clock = { now: () => now };
  const c = new EndpointClient(
    endpointConfig(fake.url, { retries: 2, rateLimitPause: 5_000, circuitBreaker: { failures: 1, resetTimeout: 60_000 } }),
    { clock },
  );
  t.teardown(() => c.destroy());
  fake.respond(() => ({ status: 503, headers: { 'retry-after': '2' }, body: 'maintenance' }));
  const first = await c.introspect(GOOD);
  t.equal(first.outcome, 'bad_response');
  t.equal(detail(first), 'the endpoint answered HTTP 503 with Retry-After');
  t.equal(fake.requests.length, 1, 'not retried: the endpoint said when to come back');
  t.equal(c.circuitState, 'open', 'a server error: it counts against the endpoint');

  const told: Array<[number, number]> = [];
  const plain = new EndpointClient(endpointConfig(fake.url, { retries: 0, rateLimitPause: 5_000 }), {
    clock,
    onPause: (status, ms) => told.push([status, ms]),
  });
  t.teardown(() => plain.destroy());
  fake.respond(() => ({ status: 503, headers: { 'retry-after': '2' } }));
  await plain.introspect(GOOD);
  fake.respond(normal);
  const paused = await plain.introspect(GOOD);
  t.equal(paused.outcome, 'error');
  t.match(detail(paused), /^not asked: the endpoint answered HTTP 503; calls pause for \d+ ms more$/);
  t.equal(fake.requests.length, 2, 'not asked during the pause');
  t.same(told, [[503, 2_000]], 'the pause is told, with the status that asked for it');
  now += 2_000;
  t.equal((await plain.introspect(GOOD)).outcome, 'active', 'asked again once Retry-After has passed');

  fake.respond(() => ({ status: 503 }));
  const bare = new EndpointClient(endpointConfig(fake.url, { retries: 1, rateLimitPause: 5_000 }), { clock });
  t.teardown(() => bare.destroy());
  const before = fake.requests.length;
  await bare.introspect(GOOD);
  t.equal(fake.requests.length, before + 2, 'a 503 without Retry-After is retried as before, and pauses nothing');
  fake.respond(normal);
  t.equal((await bare.introspect(GOOD)).outcome, 'active');
});

t.test('429: Retry-After is honoured only up to rateLimitPause; without one the pause is rateLimitPause', async (t) => {
  const fake = await fakeServer(t);
  let now = Date.now();
  const clock = { now: () => now };
  const c = new EndpointClient(endpointConfig(fake.url, { rateLimitPause: 1_000 }), { clock });
  t.teardown(() => c.destroy());
  for (const [header, pausedFor] of [
    [{ 'retry-after': '3600' }, 1_000],
    [{ 'retry-after': new Date(now + 86_400_000).toUTCString() }, 1_000],
    [{}, 1_000],
    [{ 'retry-after': 'soon' }, 1_000],
    [{ 'retry-after': '0' }, 0],
  ] as Array<[Record<string, string>, number]>) {
    fake.respond(() => ({ status: 429, headers: header }));
    t.equal((await c.introspect(GOOD)).outcome, 'error');
    fake.respond(normal);
    const before = fake.requests.length;
    if (pausedFor > 0) {
      now += pausedFor - 1;
      t.equal((await c.introspect(GOOD)).outcome, 'error', `${JSON.stringify(header)}: still paused ${pausedFor - 1} ms later`);
      t.equal(fake.requests.length, before, 'and not asked');
      now += 1;
    }
    t.equal((await c.introspect(GOOD)).outcome, 'active', `${JSON.stringify(header)}: asked again after ${pausedFor} ms`);
    t.equal(fake.requests.length, before + 1);
  }

  const never = new EndpointClient(endpointConfig(fake.url, { rateLimitPause: 0 }), { clock });
  t.teardown(() => never.destroy());
  fake.respond(() => ({ status: 429, headers: { 'retry-after': '60' } }));
  await never.introspect(GOOD);
  fake.respond(normal);
  t.equal((await never.introspect(GOOD)).outcome, 'active', 'rateLimitPause 0: no pause');
});

t.test('the caller\'s deadline on an overdue answer is a failure; a short wait or a cancel is not', async (t) => {
  const fake = await fakeServer(t);
  fake.respond(() => ({ blackHole: true }));
  const c = client(t, endpointConfig(fake.url, { authenticationTimeout: 5_000, circuitBreaker: { failures: 2, resetTimeout: 60_000 } }));
  /** A caller signal that fires after `ms`, as a Check's deadline (or, with no reason, Envoy's cancel) does. */
  const leaving = (ms: number, reason?: symbol) => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), ms);
    return controller.signal;
  };
  for (let i = 0; i < 3; i += 1) t.equal((await c.introspect(GOOD, leaving(10, DEADLINE_REACHED))).outcome, 'timeout');
  t.equal(c.circuitState, 'closed', 'deadlines of 10 ms give the endpoint no fair chance: no failure');
  for (let i = 0; i < 3; i += 1) t.equal((await c.introspect(GOOD, leaving(120))).outcome, 'timeout');
  t.equal(c.circuitState, 'closed', 'Envoy cancelling after 120 ms says nothing about the endpoint');
  t.equal((await c.introspect(GOOD, leaving(120, DEADLINE_REACHED))).outcome, 'timeout');
  t.equal(c.circuitState, 'closed', 'one overdue answer');
  t.equal((await c.introspect(GOOD, leaving(120, DEADLINE_REACHED))).outcome, 'timeout');
  t.equal(c.circuitState, 'open', 'two answers still missing at the callers\' deadlines open a circuit of failures 2');
});

for (const status of [502, 503, 504]) {
  t.test(`HTTP ${status}: retried once by default, then bad_response`, async (t) => {
    const fake = await fakeServer(t);
    let retries = 0;
    const c = new EndpointClient(endpointConfig(fake.url, { retries: 1 }), { onRetry: () => (retries += 1) });
    t.teardown(() => c.destroy());
    fake.respond(() => ({ status, body: 'try later' }));
    const result = await c.introspect(GOOD);
    t.equal(result.outcome, 'bad_response');
    t.equal(detail(result), `the endpoint answered HTTP ${status}`);
    t.equal(fake.requests.length, 2, 'two attempts');
    t.equal(retries, 1, 'one retry reported');

    // A transient failure: the retry gets the answer.
    let calls = 0;
    fake.respond((req) => (++calls === 1 ? { status } : normal(req)));
    const recovered = await c.introspect(GOOD);
    t.equal(recovered.outcome, 'active', 'the retry succeeded');
    t.equal(calls, 2);
    await stillWorks(t, fake, c);
  });
}

t.test('500 and other statuses are not retried', async (t) => {
  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { retries: 3 }));
  for (const status of [500, 501, 400, 401, 404]) {
    fake.respond(() => ({ status }));
    await c.introspect(GOOD);
  }
  t.equal(fake.requests.length, 5, 'one attempt each');
});

t.test('connection refused and reset are retried; each retry after a 10-50 ms pause', async (t) => {
  const port = await closedPort();
  let retries = 0;
  const refused = new EndpointClient(endpointConfig(`http://127.0.0.1:${port}/introspect`, { retries: 2 }), {
    onRetry: () => (retries += 1),
    random: () => 0.999,
  });
  t.teardown(() => refused.destroy());
  const started = Date.now();
  const result = await refused.introspect(GOOD);
  const elapsed = Date.now() - started;
  t.equal(result.outcome, 'error');
  t.match(detail(result), /ECONNREFUSED/);
  t.equal(retries, 2, 'retried twice');
  t.ok(elapsed >= 90 && elapsed < 1_000, `two pauses of ~50 ms: ${elapsed} ms in all`);

  const fake = await fakeServer(t);
  const c = client(t, endpointConfig(fake.url, { retries: 1 }));
  let calls = 0;
  fake.respond((req) => (++calls === 1 ? { json: { active: true, pad: 'x'.repeat(100) }, destroyAfterBytes: 10 } : normal(req)));
  const recovered = await c.introspect(GOOD);
  t.equal(recovered.outcome, 'active', 'a reset mid-body, then the retry answers');
  t.equal(fake.requests.length, 2);
});

t.test('retries stay within authenticationTimeout and stop when the caller leaves', async (t) => {
  const fake = await fakeServer(t);
  fake.respond(() => ({ status: 503, delayMs: 150 }));
  const c = client(t, endpointConfig(fake.url, { retries: 5, authenticationTimeout: 400 }));
  let started = Date.now();
  const result = await c.introspect(GOOD);
  let elapsed = Date.now() - started;
  t.equal(result.outcome, 'timeout', 'the overall timeout ends the retries');
  t.ok(elapsed >= 380 && elapsed < 900, `after ${elapsed} ms`);
  t.ok(fake.requests.length >= 2 && fake.requests.length <= 3, `${fake.requests.length} attempts fit in 400 ms`);

  const before = fake.requests.length;
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  const c2 = client(t, endpointConfig(fake.url, { retries: 5, authenticationTimeout: 5_000 }));
  started = Date.now();
  const left = await c2.introspect(GOOD, controller.signal);
  elapsed = Date.now() - started;
  t.equal(left.outcome, 'timeout');
  t.ok(elapsed < 500, `the caller left at 100 ms; returned at ${elapsed} ms`);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(fake.requests.length, before + 1, 'no retry after the caller left');
});

t.test('the circuit breaker: opens after consecutive failures, fails fast, a probe closes it', async (t) => {
  const fake = await fakeServer(t);
  let now = Date.now();
  const clock = { now: () => now };
  const c = new EndpointClient(endpointConfig(fake.url, { retries: 0, circuitBreaker: { failures: 3, resetTimeout: 5_000 } }), { clock });
  t.teardown(() => c.destroy());
  fake.respond(() => ({ status: 500 }));
  for (let i = 0; i < 3; i += 1) t.equal((await c.introspect(GOOD)).outcome, 'bad_response');
  t.equal(c.circuitState, 'open');
  const fast = await c.introspect(GOOD);
  t.equal(fast.outcome, 'circuit_open');
  t.match(detail(fast), /circuit breaker is open/);
  t.equal(fake.requests.length, 3, 'not asked while open');

  now += 5_000;
  t.equal(c.circuitState, 'half_open');
  fake.respond(normal);
  t.equal((await c.introspect(GOOD)).outcome, 'active', 'the probe');
  t.equal(c.circuitState, 'closed');
  t.equal(fake.requests.length, 4);

  // Answers that are not server failures keep it closed: inactive, 4xx, garbage.
  fake.respond(() => ({ status: 401 }));
  for (let i = 0; i < 5; i += 1) await c.introspect(GOOD);
  fake.respond(() => ({ body: 'not json' }));
  for (let i = 0; i < 5; i += 1) await c.introspect(GOOD);
  t.equal(c.circuitState, 'closed', 'the endpoint answers: it is up');
});

t.test('the caller leaving is no failure of the endpoint; our own timeout is', async (t) => {
  const fake = await fakeServer(t);
  fake.respond(() => ({ blackHole: true }));
  const c = client(t, endpointConfig(fake.url, { authenticationTimeout: 100, circuitBreaker: { failures: 2, resetTimeout: 60_000 } }));
  for (let i = 0; i < 4; i += 1) {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    t.equal((await c.introspect(GOOD, controller.signal)).outcome, 'timeout');
  }
  t.equal(c.circuitState, 'closed', 'four callers that left did not open it');
  t.equal((await c.introspect(GOOD)).outcome, 'timeout');
  t.equal((await c.introspect(GOOD)).outcome, 'timeout');
  t.equal(c.circuitState, 'open', 'two authenticationTimeouts did');
});

t.test('maxInFlight: calls beyond it wait up to queueTimeout, then fail', async (t) => {
  const fake = await fakeServer(t);
  fake.respond((req) => ({ delayMs: 150, ...(normal(req) as object) }));
  const c = client(t, endpointConfig(fake.url, { maxInFlight: 2, queueTimeout: 50, maxConnections: 4 }));
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: 4 }, () => c.introspect(GOOD)));
  t.same(
    results.map((r) => r.outcome),
    ['active', 'active', 'error', 'error'],
  );
  t.match(detail(results[2]!), /2 introspections already in flight/);
  t.equal(fake.requests.length, 2, 'only two reached the endpoint');
  t.ok(Date.now() - started < 1_000);

  const patient = client(t, endpointConfig(fake.url, { maxInFlight: 1, queueTimeout: 1_000 }));
  const queued = await Promise.all(Array.from({ length: 3 }, () => patient.introspect(GOOD)));
  t.same(
    queued.map((r) => r.outcome),
    ['active', 'active', 'active'],
    'a long enough queueTimeout: each waits its turn',
  );
  t.equal(c.circuitState, 'closed', 'refusals are no failures of the endpoint');
});

t.test('cache id: the settings that shape answers, under a key, so it can be neither guessed at nor told apart without it', async (t) => {
  const base = endpointConfig('http://127.0.0.1:1/introspect');
  const key = Buffer.alloc(32, 1);
  const id = (config: EndpointConfig, fingerprintKey: Buffer | null = key) =>
    client(t, config, fingerprintKey === null ? {} : { fingerprintKey }).cacheId;
  const same = id(base);
  t.ok(same.startsWith('main\0'), 'the name, then the fingerprint');
  t.equal(id(base), same, 'the same key and settings: the same id (replicas sharing a tier agree)');
  t.not(id(base, Buffer.alloc(32, 2)), same, 'another key (redis.keySecret): another id');
  t.not(id(base, null), same, 'no key given: this process keeps its own');
  t.equal(id(base, null), id(base, null), 'stable within the process');
  t.not(id({ ...base, clientSecret: new Secret('other') }), same, 'another client secret');
  t.not(id({ ...base, tls: { ca: null, cert: 'another client certificate', key: new Secret('k') } }), same, 'another client certificate');
  t.equal(id({ ...base, authenticationTimeout: 1234 }), same, 'timeouts do not shape answers');
});
