// EndpointClient (the HTTP side of one introspection endpoint) against the
// fake authorization server: what it sends, and what every kind of bad
// answer or broken connection comes to. After each fault the same client
// must still answer a normal request (its pool is healthy).
import t, { type Test } from 'tap';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { EndpointConfig } from '../../src/config/load.js';
import { Secret } from '../../src/config/secret.js';
import { EndpointClient } from '../../src/introspection/endpoint-client.js';
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

function endpointConfig(url: string, overrides: Partial<EndpointConfig> = {}): EndpointConfig {
  return {
    name: 'main',
    url,
    authMethod: 'client_secret_basic',
    clientId: 'authz-service',
    clientSecret: new Secret('s3cret'),
    authorizationValue: null,
    tokenTypeHint: 'access_token',
    authenticationTimeout: 2_000,
    maxConnections: 1,
    maxResponseBytes: 256,
    clockSkew: 0,
    restricted: false,
    ...overrides,
  };
}

async function fakeServer(t: Test): Promise<FakeAuthorizationServer> {
  const fake = await startFakeAuthorizationServer(normal);
  t.teardown(() => fake.close());
  return fake;
}

function client(t: Test, config: EndpointConfig): EndpointClient {
  const c = new EndpointClient(config);
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

for (const status of [500, 502, 503, 429, 401, 404]) {
  t.test(`HTTP ${status}: bad_response`, async (t) => {
    const fake = await fakeServer(t);
    const c = client(t, endpointConfig(fake.url));
    // Even with a body that would read as active: a non-2xx answer is never trusted.
    fake.respond(() => ({ status, json: { active: true, sub: 'alice' }, headers: { 'retry-after': '1' } }));
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
