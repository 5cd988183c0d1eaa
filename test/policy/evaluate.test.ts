import t, { type Test } from 'tap';
import fc from 'fast-check';
import type { HeaderToSet } from '../../src/decision.js';
import { evaluatePolicy, MAX_ATTRIBUTE_DEPTH, MAX_METADATA_BYTES, withinDepth, type Evaluation, type Granted } from '../../src/policy/evaluate.js';
import {
  byteLength,
  MAX_ATTRIBUTE_HEADERS,
  MAX_HEADER_VALUE_LENGTH,
  MAX_TOTAL_HEADER_BYTES,
} from '../../src/policy/upstream-headers.js';
import { testPolicy } from '../support/policy.js';
import { assertProperty } from '../support/property.js';

const TOKEN_CLAIMS = Object.freeze({
  active: true,
  client_id: 'app-one',
  scope: 'read write',
  exp: 1_900_000_000,
  iat: 1_800_000_000,
  iss: 'https://as.example',
  token_type: 'Bearer',
});

function granted(t: Test, evaluation: Evaluation): Granted {
  if (!evaluation.ok) throw new Error(`expected a grant, got ${JSON.stringify(evaluation)}`);
  t.ok(evaluation.ok);
  return evaluation;
}

function headerMap(headers: readonly HeaderToSet[]): Record<string, string> {
  return Object.fromEntries(headers.map((h) => [h.name, h.value]));
}

t.test('client enforcement (MuleSoft skipClientIdValidation, consumerBy)', async (t) => {
  const byClient = testPolicy({ skipClientIdValidation: false, allowedClients: ['app-one', 'app-three'] });
  const byUser = testPolicy({ skipClientIdValidation: false, consumerBy: 'username', allowedClients: ['alice'] });
  const cases: Array<[string, ReturnType<typeof testPolicy>, Record<string, unknown>, boolean, RegExp | null]> = [
    ['listed client', byClient, { client_id: 'app-one' }, true, null],
    ['another listed client', byClient, { client_id: 'app-three' }, true, null],
    ['unlisted client', byClient, { client_id: 'app-two' }, false, /client_id is not in allowedClients/],
    ['case matters', byClient, { client_id: 'APP-ONE' }, false, /not in allowedClients/],
    ['no client_id', byClient, { sub: 'alice' }, false, /has no string client_id claim/],
    ['numeric client_id', byClient, { client_id: 1, sub: 'x' }, false, /no string client_id/],
    ['array client_id', byClient, { client_id: ['app-one'], sub: 'x' }, false, /no string client_id/],
    ['by username', byUser, { username: 'alice', client_id: 'app-two' }, true, null],
    ['by username, client_id ignored', byUser, { username: 'bob', client_id: 'alice' }, false, /username is not in allowedClients/],
    ['by username, none', byUser, { client_id: 'alice' }, false, /no string username/],
    ['skipped by default', testPolicy(), { client_id: 'anyone' }, true, null],
  ];
  for (const [name, policy, claims, ok, log] of cases) {
    const evaluation = evaluatePolicy(policy, claims);
    t.equal(evaluation.ok, ok, name);
    if (!evaluation.ok) {
      t.same(
        { reason: evaluation.reason, bearerError: evaluation.bearerError, description: evaluation.description },
        { reason: 'client_not_allowed', bearerError: null, description: 'the client is not allowed to use this resource' },
        `${name}: a plain 403, no insufficient_scope challenge`,
      );
      t.match(evaluation.log, log!, `${name}: log`);
    }
  }
});

t.test('scopes: AND by default, OR on request; checked after the client', async (t) => {
  const and = testPolicy({ scopes: 'read write' });
  const or = testPolicy({ scopes: 'read write', scopeValidationCriteria: 'OR' });
  const cases: Array<[string, ReturnType<typeof testPolicy>, unknown, boolean]> = [
    ['AND, both', and, 'write read', true],
    ['AND, one', and, 'read', false],
    ['AND, array', and, ['read', 'write'], true],
    ['OR, one', or, 'write', true],
    ['OR, none', or, 'admin', false],
    ['OR, no claim', or, undefined, false],
  ];
  for (const [name, policy, scope, ok] of cases) {
    const evaluation = evaluatePolicy(policy, { client_id: 'c', ...(scope === undefined ? {} : { scope }) });
    t.equal(evaluation.ok, ok, name);
    if (!evaluation.ok) {
      t.equal(evaluation.reason, 'insufficient_scope');
      t.equal(evaluation.bearerError, 'insufficient_scope');
      t.match(evaluation.log, policy === and ? /\(AND\)/ : /\(OR\)/);
    }
  }
  const both = testPolicy({ scopes: 'admin', skipClientIdValidation: false, allowedClients: ['x'] });
  const refused = evaluatePolicy(both, { client_id: 'y', scope: 'read' });
  t.equal(refused.ok === false && refused.reason, 'client_not_allowed', 'an unlisted client learns nothing about scopes');
});

t.test('identity and identityFallback', async (t) => {
  const plain = evaluatePolicy(testPolicy({ mappedIdentity: '{sub}' }), TOKEN_CLAIMS);
  t.equal(plain.ok === false && plain.reason, 'policy_error', 'no sub, no fallback: policy_error');
  t.equal(plain.ok === false && plain.description, 'the token does not identify its holder');

  const fallback = granted(t, evaluatePolicy(testPolicy({ mappedIdentity: '{sub}', identityFallback: 'service' }), TOKEN_CLAIMS));
  t.equal(fallback.identity, 'service');
  t.same(fallback.headers[0], { name: 'x-auth-subject', value: 'service' });
  t.match(fallback.note, /identityFallback used: none of the claims sub is present/);

  const present = granted(t, evaluatePolicy(testPolicy({ mappedIdentity: '{iss}/{client_id}', identityFallback: 'service' }), TOKEN_CLAIMS));
  t.equal(present.identity, 'https://as.example/app-one', 'the fallback only stands in for missing claims');
  t.equal(present.note, undefined);

  for (const sub of ['alice\r\nx-admin: 1', 'alice\u0085x-admin: 1', 'admin\u202eresu', 'alice\u2028x', 'a'.repeat(MAX_HEADER_VALUE_LENGTH + 1), 'é'.repeat(MAX_HEADER_VALUE_LENGTH / 2 + 1)]) {
    const evaluation = evaluatePolicy(testPolicy({ identityFallback: 'service' }), { sub });
    t.equal(evaluation.ok === false && evaluation.reason, 'policy_error', 'an unsafe identity is never replaced by the fallback');
  }
  t.ok(evaluatePolicy(testPolicy(), { sub: 'é'.repeat(MAX_HEADER_VALUE_LENGTH / 2) }).ok, 'the cap counts UTF-8 bytes');
});

t.test('the default policy sets only the identity header; metadata carries the kept attributes', async (t) => {
  const evaluation = granted(t, evaluatePolicy(testPolicy(), TOKEN_CLAIMS));
  t.same(evaluation.headers, [{ name: 'x-auth-subject', value: 'app-one' }]);
  t.same(evaluation.headers.map((header) => header.name), ['x-auth-subject']);
  t.same(evaluation.metadata, { policy: 'default', status: 'authenticated', identity: 'app-one', attributes: TOKEN_CLAIMS });
  t.ok(Object.isFrozen(evaluation) && Object.isFrozen(evaluation.headers) && Object.isFrozen(evaluation.metadata), 'frozen: shared by later Checks');
});

t.test('attribute rules select what is exposed (IBM Verify Access)', async (t) => {
  const policy = testPolicy({ attributes: ['+scope', '+client_id', '-exp', '-*_internal', '-active', '+*'], exposeHeaders: true });
  const evaluation = granted(t, evaluatePolicy(policy, { ...TOKEN_CLAIMS, roles_internal: 'x' }));
  t.same(Object.keys(evaluation.metadata.attributes as object), ['client_id', 'scope', 'iat', 'iss', 'token_type']);
  t.same(headerMap(evaluation.headers), {
    'x-auth-subject': 'app-one',
    'x-auth-client-id': 'app-one',
    'x-auth-scope': 'read write',
    'x-auth-iat': '1800000000',
    'x-auth-iss': 'https://as.example',
    'x-auth-token-type': 'Bearer',
  });
});

t.test('exposeHeaders (MuleSoft): names and values', async (t) => {
  const policy = testPolicy({ exposeHeaders: true, attributes: ['-active'] });
  const claims = {
    sub: 'alice',
    Email_Address: 'a@example.com',
    'urn:example:tier': 'gold',
    roles: ['admin', 'ops'],
    aud: ['api', 'has space'],
    mixed: [1, true, 'x'],
    nested: { a: [1, 2], b: 'c' },
    nothing: null,
    empty: '',
    emptyList: [],
    flag: false,
    ratio: 0.5,
    '': 'no name',
    '---': 'no letters',
    'ü': 'no ASCII letter',
    crlf: 'a\r\nx-admin: true',
    tab: 'a\tb',
    nel: 'a\u0085x-admin: true',
    bidi: 'admin\u202eresu',
  };
  const evaluation = granted(t, evaluatePolicy(policy, claims));
  t.same(headerMap(evaluation.headers), {
    'x-auth-subject': 'alice',
    'x-auth-sub': 'alice',
    'x-auth-email-address': 'a@example.com',
    'x-auth-urn-example-tier': 'gold',
    'x-auth-roles': 'admin ops',
    'x-auth-aud': '["api","has space"]',
    'x-auth-mixed': '1 true x',
    'x-auth-nested': '{"a":[1,2],"b":"c"}',
    'x-auth-emptylist': '[]',
    'x-auth-flag': 'false',
    'x-auth-ratio': '0.5',
  });
  t.match(evaluation.note, /left out: header for  \(no letter or digit.*header for --- .*header for ü .*header for crlf \(control characters\), header for tab \(control characters\) and 2 more$/);
  t.notOk(evaluation.headers.some((header) => /[\u0085\u202e]/.test(header.value)), 'a C1 or bidi control never reaches a header');
  t.same((evaluation.metadata.attributes as Record<string, unknown>).crlf, 'a\r\nx-admin: true', 'metadata keeps the value: a Struct carries any string');
});

t.test('attribute headers never collide with the identity, the marker or the attributes header', async (t) => {
  const policy = testPolicy({ exposeHeaders: true, attributesHeader: 'x-auth-attributes', attributes: ['-active'] });
  const claims = { sub: 'alice', subject: 'mallory', status: 'admin', attributes: 'forged', Sub: 'dup', SUB: 'dup2' };
  const evaluation = granted(t, evaluatePolicy(policy, claims));
  const map = headerMap(evaluation.headers);
  t.equal(map['x-auth-subject'], 'alice', 'the identity wins');
  t.equal(map['x-auth-status'], undefined, 'the marker is never set from a claim');
  t.equal(JSON.parse(Buffer.from(map['x-auth-attributes']!, 'base64url').toString()).attributes, 'forged', 'the attributes header is ours');
  t.equal(map['x-auth-sub'], 'alice', 'the first claim with a name wins');
  t.equal(evaluation.headers.filter((h) => h.name === 'x-auth-sub').length, 1);
  t.match(evaluation.note, /subject \(x-auth-subject is already set\)/);
  t.match(evaluation.note, /status \(x-auth-status is already set\)/);
  t.match(evaluation.note, /Sub \(x-auth-sub is already set\)/);
});

t.test('attributesHeader: one base64url JSON header', async (t) => {
  const policy = testPolicy({ attributesHeader: 'x-auth-attributes', attributes: ['+client_id', '+scope', '-*'] });
  const evaluation = granted(t, evaluatePolicy(policy, TOKEN_CLAIMS));
  const map = headerMap(evaluation.headers);
  t.same(Object.keys(map), ['x-auth-subject', 'x-auth-attributes'], 'identity first, then the attributes header');
  t.match(map['x-auth-attributes'], /^[A-Za-z0-9_-]+$/, 'base64url without padding');
  t.same(JSON.parse(Buffer.from(map['x-auth-attributes']!, 'base64url').toString('utf8')), { client_id: 'app-one', scope: 'read write' });
  t.ok(evaluation.headers.some((header) => header.name === 'x-auth-attributes'));

  const big = granted(t, evaluatePolicy(policy, { client_id: 'c', scope: 'x'.repeat(7000) }));
  t.same(Object.keys(headerMap(big.headers)), ['x-auth-subject'], 'too large: left out whole');
  t.match(big.note, /x-auth-attributes header \(over 8192 bytes\)/);
});

t.test('size caps: per header, in total, count; the identity always stays', async (t) => {
  const policy = testPolicy({ exposeHeaders: true, attributes: ['-active'] });
  const huge = granted(t, evaluatePolicy(policy, { sub: 'alice', big: 'x'.repeat(MAX_HEADER_VALUE_LENGTH + 1), ok: 'y' }));
  t.same(Object.keys(headerMap(huge.headers)), ['x-auth-subject', 'x-auth-sub', 'x-auth-ok']);
  t.match(huge.note, /header for big \(over 8192 bytes\)/);

  const many: Record<string, string> = { sub: 'a'.repeat(8000) };
  for (let i = 0; i < 10; i += 1) many[`c${i}`] = 'v'.repeat(4000);
  const total = granted(t, evaluatePolicy(policy, many));
  const size = total.headers.reduce((sum, h) => sum + h.name.length + byteLength(h.value), 0);
  t.ok(size <= MAX_TOTAL_HEADER_BYTES, `${size} bytes in all`);
  t.equal(total.headers[0]!.value, 'a'.repeat(8000), 'the identity is kept');
  t.match(total.note, /headers over 32768 bytes in all/);

  const count: Record<string, number> = { sub: 1 };
  for (let i = 0; i < 100; i += 1) count[`n${i}`] = i;
  const counted = granted(t, evaluatePolicy(policy, count));
  t.equal(counted.headers.length, 1 + MAX_ATTRIBUTE_HEADERS, `identity plus ${MAX_ATTRIBUTE_HEADERS} attribute headers`);
  t.match(counted.note, /more than 64 attribute headers/);
  t.match(counted.note, /and \d+ more$/, 'the note stays short');
});

t.test('metadata: deep values and the metadata budget', async (t) => {
  let deep: unknown = 'bottom';
  for (let i = 0; i < MAX_ATTRIBUTE_DEPTH + 5; i += 1) deep = [deep];
  let veryDeep: unknown = {};
  for (let i = 0; i < 20_000; i += 1) veryDeep = { a: veryDeep };
  const policy = testPolicy({ exposeHeaders: true, attributes: ['-active'] });
  const evaluation = granted(t, evaluatePolicy(policy, { sub: 'alice', deep, veryDeep, fine: [[['ok']]] }));
  t.same(Object.keys(evaluation.metadata.attributes as object), ['sub', 'fine']);
  t.match(evaluation.note, /deep \(nested too deeply\), veryDeep \(nested too deeply\)/);

  const budget: Record<string, string> = { sub: 'alice' };
  for (let i = 0; i < 10; i += 1) budget[`k${i}`] = 'z'.repeat(5000);
  const limited = granted(t, evaluatePolicy(testPolicy(), budget));
  const json = JSON.stringify(limited.metadata.attributes);
  t.ok(json.length <= MAX_METADATA_BYTES + 200, 'attributes in metadata stay within the budget');
  t.match(limited.note, /attributes over 32768 bytes/);
  t.same(withinDepth('x', 0), true);
  t.same(withinDepth([[1]], 2), true);
  t.same(withinDepth([[1]], 1), false);
});

t.test('a claim that JSON cannot hold is left out (undefined, bigint)', async (t) => {
  const evaluation = granted(t, evaluatePolicy(testPolicy({ attributes: ['-active'] }), { sub: 'a', gone: undefined, big: 10n }));
  t.same(Object.keys(evaluation.metadata.attributes as object), ['sub']);
});

/** Every header a grant emits is valid: the identity header first (README, "Headers the upstream receives"), names of [a-z0-9-], values without control characters, within the caps. */
function assertValidHeaders(evaluation: Evaluation, identityHeader: string): boolean {
  if (!evaluation.ok) return true;
  if (evaluation.headers[0]?.name !== identityHeader) throw new Error(`first header ${evaluation.headers[0]?.name}, not ${identityHeader}`);
  let total = 0;
  const names = new Set<string>();
  for (const { name, value } of evaluation.headers) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`bad name ${JSON.stringify(name)}`);
    if (names.has(name)) throw new Error(`duplicate ${name}`);
    names.add(name);
    if (/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(value)) throw new Error(`control character in ${name}`);
    if (value === '') throw new Error(`empty ${name}`);
    if (byteLength(value) > MAX_HEADER_VALUE_LENGTH) throw new Error(`${name} too long`);
    total += name.length + byteLength(value);
  }
  if (total > MAX_TOTAL_HEADER_BYTES) throw new Error(`total ${total}`);
  if (evaluation.headers.length > 2 + MAX_ATTRIBUTE_HEADERS) throw new Error('too many headers');
  return true;
}

t.test('property: no generated claims yield an invalid header', async (t) => {
  const anyString = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: fc.constantFrom('\r', '\n', '\u0000', '\u007f', '\t', 'a', ' ', 'é', '\u2028', '\u0085', '\u009b', '\u202e', '\u2067'), maxLength: 20 }),
    fc.constantFrom('x'.repeat(9000), 'é'.repeat(4097), ''),
  );
  const value = fc.oneof(
    anyString,
    fc.jsonValue({ maxDepth: 3 }),
    fc.array(anyString, { maxLength: 4 }),
    fc.dictionary(anyString, anyString, { maxKeys: 3 }),
  );
  const claims = fc.dictionary(anyString, value, { maxKeys: 12 });
  const policy = fc.record({
    exposeHeaders: fc.boolean(),
    attributesHeader: fc.constantFrom(null, 'x-auth-attributes', 'x-claims'),
    identityFallback: fc.constantFrom(null, 'anonymous-client'),
    mappedIdentity: fc.constantFrom('{sub|username|client_id}', '{a}', '{iss}/{sub}'),
  });
  let grants = 0;
  assertProperty(
    fc.property(policy, claims, (options, generated) => {
      const resolved = testPolicy(options);
      const evaluation = evaluatePolicy(resolved, generated);
      if (evaluation.ok) grants += 1;
      return assertValidHeaders(evaluation, resolved.identityHeader);
    }),
    1500,
  );
  t.ok(grants > 0, `some evaluations grant (${grants}), so the header checks ran`);
});

t.test('property: even large answers stay within the caps', async () => {
  const big = fc.string({ unit: 'grapheme', minLength: 0, maxLength: 3000 });
  const claims = fc.dictionary(fc.string({ minLength: 1, maxLength: 30 }), fc.oneof(big, fc.array(big, { maxLength: 5 })), {
    minKeys: 10,
    maxKeys: 80,
  });
  const resolved = testPolicy({ exposeHeaders: true, attributesHeader: 'x-auth-attributes' });
  assertProperty(
    fc.property(claims, fc.string({ minLength: 1, maxLength: 8000 }), (generated, sub) =>
      assertValidHeaders(evaluatePolicy(resolved, { ...generated, sub }), resolved.identityHeader),
    ),
    150,
  );
});

t.test('attribute headers: one object per policy, name and value, whatever the number of tokens', async (t) => {
  const policy = testPolicy({ exposeHeaders: true, attributes: ['+iss', '+jti', '-*'] });
  const first = granted(t, evaluatePolicy(policy, { ...TOKEN_CLAIMS, sub: 'a', jti: 'j-0' }));
  const second = granted(t, evaluatePolicy(policy, { ...TOKEN_CLAIMS, sub: 'b', jti: 'j-1' }));
  const iss = (evaluation: Granted) => evaluation.headers.find((header) => header.name === 'x-auth-iss');
  t.equal(iss(second), iss(first), 'the same iss header object in both evaluations');
  t.ok(Object.isFrozen(iss(first)));
  // Far more distinct values than the table holds: each evaluation still carries its own.
  for (let i = 0; i < 3000; i += 1) {
    const evaluation = granted(t, evaluatePolicy(policy, { ...TOKEN_CLAIMS, sub: 'c', jti: `j-${i}`, iss: `https://as-${i % 7}.example` }));
    const headers = headerMap(evaluation.headers);
    if (headers['x-auth-jti'] !== `j-${i}` || headers['x-auth-iss'] !== `https://as-${i % 7}.example`) {
      t.fail(`evaluation ${i}: ${JSON.stringify(headers)}`);
      break;
    }
  }
  const other = testPolicy({ exposeHeaders: true, attributes: ['+iss', '-*'], headerPrefix: 'x-other-' });
  t.equal(headerMap(granted(t, evaluatePolicy(other, TOKEN_CLAIMS)).headers)['x-other-iss'], TOKEN_CLAIMS.iss, 'each policy its own names');
});
