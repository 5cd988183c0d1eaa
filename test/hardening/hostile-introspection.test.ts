// Hostile introspection answers, through the service: claims with CR/LF/NUL,
// very long strings, huge arrays, deep nesting, numbers where strings belong,
// __proto__/constructor/prototype keys, duplicate keys, active: "true", exp as
// a string, exp far in the future. The policy exposes every claim as a header
// and sends an attributes header, so every claim is pushed at the upstream.
// Invariants: headers stay valid (no control characters, only our names, caps
// respected), nothing reaches Object.prototype, and anything not a clean active
// answer is denied.
import t, { type Test } from 'tap';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { MAX_ANSWER_DEPTH } from '../../src/introspection/result.js';
import { createLogger } from '../../src/observability/logger.js';
import {
  MAX_ATTRIBUTE_HEADERS,
  MAX_HEADER_VALUE_LENGTH,
  MAX_TOTAL_HEADER_BYTES,
} from '../../src/policy/upstream-headers.js';
import { connectEnvoy, summarize, structToJson, type EnvoyClient, type UpstreamCheckResponse } from '../support/envoy.js';
import { startFakeAuthorizationServer, type FakeAuthorizationServer, type FakeResponse } from '../support/fake-authorization-server.js';

const TTL_SECONDS = 60;
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const IDENTITY = 'x-auth-subject';
const ATTRIBUTES = 'x-auth-attributes';

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
  /** Answers by token: raw body text (duplicate keys stay duplicate) or a JSON value. */
  answers: Map<string, FakeResponse>;
  check(token: string, policy?: string): Promise<UpstreamCheckResponse>;
}

async function start(t: Test): Promise<Harness> {
  const answers = new Map<string, FakeResponse>();
  const fake = await startFakeAuthorizationServer((request) => answers.get(request.body.get('token') ?? '') ?? { json: { active: false } });
  t.teardown(() => fake.close());
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 } },
      log: { level: 'silent' },
      cache: { validatedTokenTTL: TTL_SECONDS },
      endpoints: [{ name: 'idp', url: fake.url, authMethod: 'none', authenticationTimeout: 2000, maxResponseBytes: MAX_RESPONSE_BYTES }],
      policies: [
        { name: 'open', endpoint: 'idp', exposeHeaders: true, attributesHeader: ATTRIBUTES },
        { name: 'scoped', endpoint: 'idp', scopes: 'read', exposeHeaders: true, attributesHeader: ATTRIBUTES },
      ],
      defaultPolicy: 'open',
    },
    'hostile-introspection.yaml',
    { env: {} },
  );
  const clock = new TestClock();
  const app = await startApp(config, createLogger('silent'), { clock });
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return {
    app,
    envoy,
    fake,
    clock,
    answers,
    check: (token, policy = 'open') =>
      envoy.check({ headers: { authorization: `Bearer ${token}` }, contextExtensions: { policy }, timeoutMs: 5000 }),
  };
}

const raw = (body: string): FakeResponse => ({ body, headers: { 'content-type': 'application/json' } });
const json = (value: unknown): FakeResponse => ({ json: value });

/** Every rule an allow's headers must keep, whatever the claims were. */
function assertSafeAllow(t: Test, response: UpstreamCheckResponse, token: string): Record<string, string> {
  const ok = response.ok_response;
  t.equal(response.status?.code, 0, 'allowed');
  t.ok(ok, 'ok_response present');
  const headers: Record<string, string> = {};
  let total = 0;
  let attributeHeaders = 0;
  for (const { header } of ok?.headers ?? []) {
    const { key, value } = header;
    if (!/^x-auth-[a-z0-9-]+$/.test(key)) t.fail(`header name outside our prefix: ${JSON.stringify(key)}`);
    if (/[\x00-\x1f\x7f]/.test(value)) t.fail(`control character in ${key}: ${JSON.stringify(value.slice(0, 80))}`);
    if (Buffer.byteLength(value) > MAX_HEADER_VALUE_LENGTH) t.fail(`${key} is ${Buffer.byteLength(value)} bytes`);
    if (Object.hasOwn(headers, key)) t.fail(`${key} set twice`);
    if (value.includes(token)) t.fail(`the token appears in ${key}`);
    headers[key] = value;
    total += Buffer.byteLength(key) + Buffer.byteLength(value);
    if (key !== IDENTITY && key !== ATTRIBUTES) attributeHeaders += 1;
  }
  t.ok(total <= MAX_TOTAL_HEADER_BYTES, `added headers total ${total} bytes`);
  t.ok(attributeHeaders <= MAX_ATTRIBUTE_HEADERS, `${attributeHeaders} attribute headers`);
  t.ok(Buffer.byteLength(JSON.stringify(response.dynamic_metadata ?? {})) < 256 * 1024, 'metadata stays small');
  return headers;
}

function assertDeny(t: Test, response: UpstreamCheckResponse, status: number, error: string, token: string): void {
  const s = summarize(response);
  t.not(response.status?.code, 0, 'denied');
  t.equal(s.httpStatus, status, `HTTP ${status}`);
  t.equal(JSON.parse(s.body ?? '{}').error, error, `error ${error}`);
  t.notOk(s.body?.includes(token), 'the token is not in the body');
}

function attributesOf(headers: Record<string, string>): Record<string, unknown> {
  return JSON.parse(Buffer.from(headers[ATTRIBUTES]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

t.test('control characters in claims never reach a header', async (t) => {
  const h = await start(t);
  h.answers.set('crlf-token-1', json({ active: true, sub: 'alice', note: 'a\r\nx-injected: 1', nul: 'a\0b', tab: 'a\tb', del: 'a\x7fb', ok: 'plain', 'x\r\ny': 'name with CRLF' }));
  const headers = assertSafeAllow(t, await h.check('crlf-token-1'), 'crlf-token-1');
  t.equal(headers[IDENTITY], 'alice');
  t.equal(headers['x-auth-ok'], 'plain');
  for (const dropped of ['x-auth-note', 'x-auth-nul', 'x-auth-tab', 'x-auth-del', 'x-injected']) t.notOk(dropped in headers, `no ${dropped}`);
  t.equal(attributesOf(headers).note, 'a\r\nx-injected: 1', 'kept exactly, and encoded, in the attributes header');

  h.answers.set('crlf-token-2', json({ active: true, sub: 'alice\r\nx-evil: 1' }));
  assertDeny(t, await h.check('crlf-token-2'), 403, 'policy_error', 'crlf-token-2');
  h.answers.set('crlf-token-3', json({ active: true, sub: 'al\0ice' }));
  assertDeny(t, await h.check('crlf-token-3'), 403, 'policy_error', 'crlf-token-3');
});

t.test('very long strings, huge arrays, many claims, deep nesting: caps hold', async (t) => {
  const h = await start(t);
  h.answers.set('long-1', json({ active: true, sub: 'bob', big: 'x'.repeat(200_000), small: 'y' }));
  let headers = assertSafeAllow(t, await h.check('long-1'), 'long-1');
  t.equal(headers['x-auth-small'], 'y');
  t.notOk('x-auth-big' in headers, 'an over-long value is left out, not cut');

  h.answers.set('long-2', json({ active: true, sub: 'bob', groups: Array.from({ length: 50_000 }, (_, i) => `g${i}`) }));
  assertSafeAllow(t, await h.check('long-2'), 'long-2');

  const many: Record<string, unknown> = { active: true, sub: 'bob' };
  for (let i = 0; i < 5000; i += 1) many[`claim${i}`] = `value-${i}-${'z'.repeat(50)}`;
  h.answers.set('long-3', json(many));
  assertSafeAllow(t, await h.check('long-3'), 'long-3');

  // Nesting up to MAX_ANSWER_DEPTH is taken; deeper is a bad response (JSON.stringify, templates and the
  // shared tier recurse, and a few thousand levels overflow the stack).
  const depth = MAX_ANSWER_DEPTH - 1;
  h.answers.set('deep-1', raw(`{"active":true,"sub":"deep","nest":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`));
  headers = assertSafeAllow(t, await h.check('deep-1'), 'deep-1');
  t.equal(headers[IDENTITY], 'deep');
  h.answers.set('deep-2', raw(`{"active":true,"sub":"deep","nest":${'['.repeat(depth)}${']'.repeat(depth)}}`));
  assertSafeAllow(t, await h.check('deep-2'), 'deep-2');
  const tooDeep = 5000;
  h.answers.set('deep-4', raw(`{"active":true,"sub":"deep","nest":${'{"a":'.repeat(tooDeep)}1${'}'.repeat(tooDeep)}}`));
  assertDeny(t, await h.check('deep-4'), 500, 'bad_response', 'deep-4');
  h.answers.set('deep-5', raw(`{"active":true,"sub":"deep","nest":${'['.repeat(depth + 1)}${']'.repeat(depth + 1)}}`));
  assertDeny(t, await h.check('deep-5'), 500, 'bad_response', 'deep-5');

  h.answers.set('long-4', json({ active: true, sub: 'bob', big: 'x'.repeat(MAX_RESPONSE_BYTES) }));
  assertDeny(t, await h.check('long-4'), 500, 'bad_response', 'long-4');

  // Far deeper than any parser should be asked to go: whatever happens, a well-formed answer in time.
  const abyss = 200_000;
  h.answers.set('deep-3', raw(`{"active":true,"sub":"deep","nest":${'['.repeat(abyss)}${']'.repeat(abyss)}}`));
  assertDeny(t, await h.check('deep-3'), 500, 'bad_response', 'deep-3');
});

t.test('numbers, booleans and objects where strings belong', async (t) => {
  const h = await start(t);
  h.answers.set('num-1', json({ active: true, sub: 42, client_id: 7, flag: true, obj: { a: 1 } }));
  const headers = assertSafeAllow(t, await h.check('num-1'), 'num-1');
  t.equal(headers[IDENTITY], '42', 'a number renders as the identity');
  t.equal(headers['x-auth-flag'], 'true');
  t.equal(headers['x-auth-obj'], '{"a":1}');

  for (const [token, sub] of [['num-2', { a: 'alice' }], ['num-3', ['alice']], ['num-4', null], ['num-5', ''], ['num-6', Number.MAX_VALUE * 0]] as const) {
    h.answers.set(token, json({ active: true, sub, username: false }));
    const r = await h.check(token);
    if (typeof sub === 'number') assertSafeAllow(t, r, token);
    else assertDeny(t, r, 403, 'policy_error', token);
  }
  h.answers.set('num-7', json({ active: true, sub: 'carol', scope: 5 }));
  assertDeny(t, await h.check('num-7', 'scoped'), 403, 'insufficient_scope', 'num-7');
  h.answers.set('num-8', json({ active: true, sub: 'carol', scope: ['read', 5, null] }));
  assertSafeAllow(t, await h.check('num-8', 'scoped'), 'num-8');
  h.answers.set('num-9', json({ active: true, sub: 'carol', scope: { read: true } }));
  assertDeny(t, await h.check('num-9', 'scoped'), 403, 'insufficient_scope', 'num-9');
});

t.test('__proto__, constructor and prototype keys pollute nothing', async (t) => {
  const h = await start(t);
  h.answers.set(
    'proto-1',
    raw('{"active":true,"sub":"p","__proto__":{"polluted":"yes","active":false,"sub":"admin"},"constructor":{"prototype":{"polluted":"yes"}},"prototype":{"polluted":"yes"},"toString":"x","hasOwnProperty":1}'),
  );
  const r1 = await h.check('proto-1');
  const headers = assertSafeAllow(t, r1, 'proto-1');
  t.equal(headers[IDENTITY], 'p', 'identity from the own "sub", not from a __proto__ member');
  t.notOk('x-auth-polluted' in headers, 'no header from a prototype');
  const fields = r1.dynamic_metadata!.fields;
  t.equal(fields.identity?.stringValue, 'p', 'metadata identity from the own "sub"');
  const attributeFields = fields.attributes!.structValue!.fields;
  t.ok(Object.keys(attributeFields).includes('constructor'), 'hostile names travel as plain metadata keys');
  t.equal(attributeFields.sub?.stringValue, 'p');
  // (structToJson would turn a "__proto__" member into its result's prototype: read the wire fields.)
  t.notOk(Object.hasOwn(structToJson(fields), 'polluted'));
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is clean in the test process');
  // Again from the cache, where the same claims object is reused.
  assertSafeAllow(t, await h.check('proto-1'), 'proto-1');
  h.answers.set('proto-2', raw('{"__proto__":{"active":true},"sub":"x"}'));
  assertDeny(t, await h.check('proto-2'), 500, 'bad_response', 'proto-2');
  h.answers.set('proto-3', raw('{"constructor":{"prototype":{"active":true}},"sub":"x"}'));
  assertDeny(t, await h.check('proto-3'), 500, 'bad_response', 'proto-3');
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.equal(({} as Record<string, unknown>).active, undefined);
});

t.test('duplicate keys: the last one wins, as JSON.parse reads them', async (t) => {
  // RFC 8259 leaves duplicate names undefined; we take JSON.parse's reading (the last).
  // The authorization server produced the bytes, so it has said what the last member says.
  const h = await start(t);
  h.answers.set('dup-1', raw('{"active":false,"active":true,"sub":"first","sub":"last"}'));
  const headers = assertSafeAllow(t, await h.check('dup-1'), 'dup-1');
  t.equal(headers[IDENTITY], 'last');
  h.answers.set('dup-2', raw('{"active":true,"sub":"a","active":false}'));
  assertDeny(t, await h.check('dup-2'), 401, 'invalid_token', 'dup-2');
});

t.test('active and exp of the wrong type fail closed', async (t) => {
  const h = await start(t);
  const future = Math.floor(Date.now() / 1000) + 3600;
  const cases: Array<[string, FakeResponse]> = [
    ['type-1', json({ active: 'true', sub: 's' })],
    ['type-2', json({ active: 1, sub: 's' })],
    ['type-3', json({ active: [true], sub: 's' })],
    ['type-4', json({ active: null, sub: 's' })],
    ['type-5', json({ sub: 's' })],
    ['type-6', json({ active: true, sub: 's', exp: String(future) })],
    ['type-7', json({ active: true, sub: 's', exp: null })],
    ['type-8', raw('{"active":true,"sub":"s","exp":1e400}')],
    ['type-9', json({ active: true, sub: 's', nbf: 'now' })],
    ['type-10', json({ active: true, sub: 's', iat: { t: 1 } })],
    ['type-11', json([{ active: true, sub: 's' }])],
    ['type-12', raw('"active"')],
    ['type-13', raw('{"active":true,"sub":"s"')],
  ];
  for (const [token, answer] of cases) {
    h.answers.set(token, answer);
    assertDeny(t, await h.check(token), 500, 'bad_response', token);
  }
  t.equal(h.fake.requests.length, cases.length, 'each asked once');
  // Never cached: asked again.
  await h.check('type-1');
  t.equal(h.fake.requests.length, cases.length + 1, 'a bad answer is not cached');
});

t.test('exp far in the future: the cache still ends after validatedTokenTTL', async (t) => {
  const h = await start(t);
  h.answers.set('far-1', json({ active: true, sub: 'f', exp: 32503680000 /* year 3000 */ }));
  h.answers.set('far-2', json({ active: true, sub: 'f', exp: 1e300 }));
  for (const token of ['far-1', 'far-2']) {
    const before = h.fake.requests.length;
    assertSafeAllow(t, await h.check(token), token);
    assertSafeAllow(t, await h.check(token), token);
    t.equal(h.fake.requests.length, before + 1, `${token}: second Check from the cache`);
    h.clock.ms += (TTL_SECONDS - 1) * 1000;
    await h.check(token);
    t.equal(h.fake.requests.length, before + 1, `${token}: still cached just before the TTL`);
    h.clock.ms += 2000;
    assertSafeAllow(t, await h.check(token), token);
    t.equal(h.fake.requests.length, before + 2, `${token}: asked again once validatedTokenTTL has passed`);
  }
  h.answers.set('far-3', json({ active: true, sub: 'f', exp: Math.floor(h.clock.ms / 1000) - 1 }));
  assertDeny(t, await h.check('far-3'), 401, 'invalid_token', 'far-3');
});

t.test('claim names that look like HTTP or Envoy headers stay under our prefix', async (t) => {
  const h = await start(t);
  h.answers.set(
    'names-1',
    json({ active: true, sub: 's', host: 'evil', ':authority': 'evil', authorization: 'Bearer other', 'x-envoy-original-path': '/admin', 'X-Auth-Subject': 'mallory', '': 'empty', '\u00e9\u00e8': 'accents', [`n${'a'.repeat(300)}`]: 'long name' }),
  );
  const headers = assertSafeAllow(t, await h.check('names-1'), 'names-1');
  t.equal(headers[IDENTITY], 's', 'a claim never replaces the identity header');
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});
