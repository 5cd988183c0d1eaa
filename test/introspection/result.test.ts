import t from 'tap';
import { INACTIVE, MAX_ANSWER_DEPTH, readIntrospectionResponse, type IntrospectionResult } from '../../src/introspection/result.js';

const NOW = 1_700_000_000_000; // epoch ms, whole seconds
const NOW_S = NOW / 1000;
const at = (now = NOW, clockSkew = 0) => ({ now, clockSkew });

function outcome(result: IntrospectionResult): string {
  return result.outcome;
}

t.test('non-2xx statuses are bad responses', async (t) => {
  for (const status of [100, 199, 300, 302, 304, 400, 401, 403, 404, 429, 500, 502, 503]) {
    const result = readIntrospectionResponse(status, '{"active":true}', at());
    t.equal(result.outcome, 'bad_response', `HTTP ${status}`);
    if (result.outcome === 'bad_response') t.match(result.detail, String(status));
  }
  for (const status of [200, 201, 203, 299]) {
    t.equal(readIntrospectionResponse(status, '{"active":true}', at()).outcome, 'active', `HTTP ${status}`);
  }
});

t.test('bodies that are not an RFC 7662 object', async (t) => {
  const cases: Array<[string, string]> = [
    ['empty body', ''],
    ['not JSON', 'active=true'],
    ['HTML', '<html>error</html>'],
    ['truncated JSON', '{"active":true'],
    ['JSON array', '[{"active":true}]'],
    ['JSON string', '"active"'],
    ['JSON number', '1'],
    ['JSON true', 'true'],
    ['JSON null', 'null'],
    ['active missing', '{"sub":"alice"}'],
    ['active "true" string', '{"active":"true"}'],
    ['active "false" string', '{"active":"false"}'],
    ['active 1', '{"active":1}'],
    ['active 0', '{"active":0}'],
    ['active null', '{"active":null}'],
    ['active object', '{"active":{}}'],
    ['active only in the prototype', '{"__proto__":{"active":true}}'],
  ];
  for (const [name, body] of cases) {
    const result = readIntrospectionResponse(200, body, at());
    t.equal(result.outcome, 'bad_response', name);
    if (result.outcome === 'bad_response') t.type(result.detail, 'string');
  }
});

t.test('inactive answers', async (t) => {
  t.equal(readIntrospectionResponse(200, '{"active":false}', at()), INACTIVE, '{active:false}');
  t.same(readIntrospectionResponse(200, '{"active":false,"sub":"x"}', at()), { outcome: 'inactive' }, 'claims ignored');
  t.same(
    readIntrospectionResponse(200, '{"active":false,"exp":"soon"}', at()),
    { outcome: 'inactive' },
    'an inactive answer needs no valid exp',
  );
  t.ok(Object.isFrozen(INACTIVE), 'the shared inactive result is frozen');
});

t.test('exp and nbf against the clock, with skew on both sides', async (t) => {
  const cases: Array<[string, Record<string, unknown>, number, string]> = [
    // exp: inactive once now >= exp + skew
    ['exp in the future', { exp: NOW_S + 60 }, 0, 'active'],
    ['exp one second ahead', { exp: NOW_S + 1 }, 0, 'active'],
    ['exp exactly now', { exp: NOW_S }, 0, 'inactive'],
    ['exp in the past', { exp: NOW_S - 1 }, 0, 'inactive'],
    ['exp long ago', { exp: 1 }, 0, 'inactive'],
    ['exp 0', { exp: 0 }, 0, 'inactive'],
    ['exp past, within skew', { exp: NOW_S - 29 }, 30, 'active'],
    ['exp past, exactly skew', { exp: NOW_S - 30 }, 30, 'inactive'],
    ['exp past, beyond skew', { exp: NOW_S - 31 }, 30, 'inactive'],
    ['fractional exp just ahead', { exp: NOW_S + 0.001 }, 0, 'active'],
    ['fractional exp just behind', { exp: NOW_S - 0.001 }, 0, 'inactive'],
    // nbf: inactive while now < nbf - skew
    ['nbf in the past', { nbf: NOW_S - 60 }, 0, 'active'],
    ['nbf exactly now', { nbf: NOW_S }, 0, 'active'],
    ['nbf one second ahead', { nbf: NOW_S + 1 }, 0, 'inactive'],
    ['nbf a millisecond ahead', { nbf: NOW_S + 0.001 }, 0, 'inactive'],
    ['nbf ahead, within skew', { nbf: NOW_S + 29 }, 30, 'active'],
    ['nbf ahead, exactly skew', { nbf: NOW_S + 30 }, 30, 'active'],
    ['nbf ahead, beyond skew', { nbf: NOW_S + 31 }, 30, 'inactive'],
    // both
    ['valid window', { nbf: NOW_S - 10, exp: NOW_S + 10 }, 0, 'active'],
    ['window not yet open', { nbf: NOW_S + 10, exp: NOW_S + 20 }, 0, 'inactive'],
    ['window closed', { nbf: NOW_S - 20, exp: NOW_S - 10 }, 0, 'inactive'],
    // iat: a token issued by a clock ahead of ours is not active yet, as with nbf
    ['iat in the past', { iat: NOW_S - 60 }, 0, 'active'],
    ['iat exactly now', { iat: NOW_S }, 0, 'active'],
    ['iat one second ahead', { iat: NOW_S + 1 }, 0, 'inactive'],
    ['iat an hour ahead', { iat: NOW_S + 3600 }, 0, 'inactive'],
    ['iat ahead, within skew', { iat: NOW_S + 29 }, 30, 'active'],
    ['iat ahead, beyond skew', { iat: NOW_S + 31 }, 30, 'inactive'],
  ];
  for (const [name, claims, skew, want] of cases) {
    const body = JSON.stringify({ active: true, ...claims });
    t.equal(outcome(readIntrospectionResponse(200, body, at(NOW, skew))), want, name);
  }
});

t.test('exp, nbf and iat must be numbers', async (t) => {
  const cases: Array<[string, string]> = [
    ['exp string', '{"active":true,"exp":"1700000600"}'],
    ['nbf string', '{"active":true,"nbf":"1"}'],
    ['iat string', '{"active":true,"iat":"1"}'],
    ['exp null', '{"active":true,"exp":null}'],
    ['exp boolean', '{"active":true,"exp":true}'],
    ['exp array', '{"active":true,"exp":[1700000600]}'],
    ['exp overflowing to Infinity', '{"active":true,"exp":1e400}'],
    ['nbf overflowing to -Infinity', '{"active":true,"nbf":-1e400}'],
  ];
  for (const [name, body] of cases) {
    const result = readIntrospectionResponse(200, body, at());
    t.equal(result.outcome, 'bad_response', name);
    if (result.outcome === 'bad_response') t.match(result.detail, /"(exp|nbf|iat)" is not a number/, `${name}: detail`);
  }
});

t.test('active answers carry frozen null-prototype claims', async (t) => {
  const body = JSON.stringify({ active: true, sub: 'alice', scope: 'read write', exp: NOW_S + 600, aud: ['a', 'b'] });
  const result = readIntrospectionResponse(200, body, at());
  if (result.outcome !== 'active') throw new Error(`expected active, got ${result.outcome}`);
  t.equal(Object.getPrototypeOf(result.claims), null, 'null prototype');
  t.ok(Object.isFrozen(result.claims), 'frozen');
  t.same({ ...result.claims }, { active: true, sub: 'alice', scope: 'read write', exp: NOW_S + 600, aud: ['a', 'b'] });
  t.equal(result.expiresAt, (NOW_S + 600) * 1000, 'expiresAt is exp in ms');
  t.equal(result.claims['constructor'], undefined, 'no inherited constructor');
  t.equal(result.claims['toString'], undefined, 'no inherited toString');
  t.throws(() => {
    (result.claims as Record<string, unknown>)['sub'] = 'mallory';
  }, TypeError);
  t.equal(result.claims['sub'], 'alice');
});

t.test('expiresAt is null without exp', async (t) => {
  const result = readIntrospectionResponse(200, '{"active":true,"sub":"alice"}', at());
  t.same(result.outcome === 'active' && result.expiresAt, null);
  const fractional = readIntrospectionResponse(200, `{"active":true,"exp":${NOW_S + 1.5}}`, at());
  t.equal(fractional.outcome === 'active' && fractional.expiresAt, NOW + 1500);
});

t.test('a __proto__ key stays an own data key and pollutes nothing', async (t) => {
  const result = readIntrospectionResponse(200, '{"active":true,"__proto__":{"polluted":1},"sub":"x"}', at());
  if (result.outcome !== 'active') throw new Error(`expected active, got ${result.outcome}`);
  t.equal(({} as Record<string, unknown>)['polluted'], undefined, 'Object.prototype untouched');
  t.equal((Object.prototype as Record<string, unknown>)['polluted'], undefined);
  t.equal(Object.getPrototypeOf(result.claims), null, 'prototype still null');
  t.ok(Object.hasOwn(result.claims, '__proto__'), '__proto__ is an own key');
  const descriptor = Object.getOwnPropertyDescriptor(result.claims, '__proto__');
  t.same(descriptor?.value, { polluted: 1 }, 'with the value from the answer');
  t.equal((result.claims as Record<string, unknown>)['polluted'], undefined, 'not reachable as an inherited key');
  t.same(Object.keys(result.claims), ['active', '__proto__', 'sub']);
});

t.test('constructor and prototype keys are plain claims', async (t) => {
  const result = readIntrospectionResponse(
    200,
    '{"active":true,"constructor":{"prototype":{"polluted":2}},"prototype":"p"}',
    at(),
  );
  if (result.outcome !== 'active') throw new Error(`expected active, got ${result.outcome}`);
  t.equal(({} as Record<string, unknown>)['polluted'], undefined);
  t.same(result.claims['constructor'], { prototype: { polluted: 2 } });
  t.equal(result.claims['prototype'], 'p');
});

t.test('claims are frozen all the way down, to the deepest nesting taken', async (t) => {
  // The answer object is level 1: 31 arrays inside a claim make 32 levels.
  const deepest = '['.repeat(MAX_ANSWER_DEPTH - 1) + ']'.repeat(MAX_ANSWER_DEPTH - 1);
  const result = readIntrospectionResponse(200, `{"active":true,"sub":"a","nested":{"roles":["x"]},"deep":${deepest}}`, {
    now: 0,
    clockSkew: 0,
  });
  if (result.outcome !== 'active') throw new Error(`expected active, got ${result.outcome}`);
  const nested = result.claims.nested as { roles: string[] };
  t.ok(Object.isFrozen(nested), 'a nested object is frozen');
  t.ok(Object.isFrozen(nested.roles), 'a nested array is frozen');
  t.throws(() => nested.roles.push('admin'), 'a cached claim cannot be changed by a later Check');
  let level = result.claims.deep as unknown[];
  let depth = 0;
  while (Array.isArray(level) && level.length > 0) {
    level = level[0] as unknown[];
    depth += 1;
  }
  t.equal(depth, MAX_ANSWER_DEPTH - 2);
  t.ok(Object.isFrozen(level), 'the innermost array is frozen');
});

t.test('an answer nested deeper than the limit is a bad response, however deep', async (t) => {
  t.equal(MAX_ANSWER_DEPTH, 32);
  const answer = (inner: string) => `{"active":true,"sub":"a","deep":${inner}}`;
  const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const objects = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
  for (const [what, inner] of [
    ['one level too deep (arrays)', arrays(MAX_ANSWER_DEPTH)],
    ['one level too deep (objects)', objects(MAX_ANSWER_DEPTH)],
    ['6,000 levels, 12 KB', objects(6000)],
    // Deeper than any recursive walk could go on the default stack.
    ['1,000,000 levels', arrays(1_000_000)],
  ] as const) {
    const result = readIntrospectionResponse(200, answer(inner), at());
    t.same(result, { outcome: 'bad_response', detail: `the answer is nested deeper than ${MAX_ANSWER_DEPTH} levels` }, what);
  }
  t.equal(outcome(readIntrospectionResponse(200, `{"active":false,"deep":${arrays(100)}}`, at())), 'bad_response', 'inactive or not');
  t.equal(outcome(readIntrospectionResponse(200, answer(objects(MAX_ANSWER_DEPTH - 1)), at())), 'active', 'at the limit: taken');
});

t.test('not active yet (nbf or iat ahead): validFrom says when that ends', async (t) => {
  const body = (claims: object) => JSON.stringify({ active: true, ...claims });
  t.same(readIntrospectionResponse(200, body({ nbf: NOW_S + 5 }), at()), { outcome: 'inactive', validFrom: NOW + 5000 });
  t.same(readIntrospectionResponse(200, body({ iat: NOW_S + 40 }), at(NOW, 30)), { outcome: 'inactive', validFrom: NOW + 10_000 }, 'less the skew');
  t.same(
    readIntrospectionResponse(200, body({ nbf: NOW_S + 5, iat: NOW_S + 9 }), at()),
    { outcome: 'inactive', validFrom: NOW + 9000 },
    'the later of the two',
  );
  t.equal(readIntrospectionResponse(200, body({ exp: NOW_S - 1, nbf: NOW_S + 5 }), at()), INACTIVE, 'expired: for good, no validFrom');
});

t.test('issuer: exact match of iss, else inactive', async (t) => {
  const options = { ...at(), issuer: 'https://idp.example.com' };
  const read = (claims: object) => readIntrospectionResponse(200, JSON.stringify({ active: true, ...claims }), options);
  t.equal(read({ iss: 'https://idp.example.com' }).outcome, 'active');
  t.equal(read({ iss: 'https://idp.example.com/' }), INACTIVE, 'a trailing slash is another issuer');
  t.equal(read({ iss: 'https://IDP.example.com' }), INACTIVE, 'case matters');
  t.equal(read({}), INACTIVE, 'no iss');
  t.equal(read({ iss: ['https://idp.example.com'] }), INACTIVE, 'not a string');
  t.equal(readIntrospectionResponse(200, '{"active":true}', { ...at(), issuer: null }).outcome, 'active', 'null: not checked');
});

t.test('audience: aud (string or array) must hold one of the configured ones', async (t) => {
  const options = { ...at(), audience: ['orders', 'billing'] };
  const read = (claims: object) => readIntrospectionResponse(200, JSON.stringify({ active: true, ...claims }), options);
  t.equal(read({ aud: 'orders' }).outcome, 'active', 'string');
  t.equal(read({ aud: ['x', 'billing'] }).outcome, 'active', 'array holding one');
  t.equal(read({ aud: 'other' }), INACTIVE, 'another audience');
  t.equal(read({ aud: ['x', 'y'] }), INACTIVE, 'array without one');
  t.equal(read({ aud: [] }), INACTIVE, 'empty array');
  t.equal(read({}), INACTIVE, 'no aud');
  t.equal(read({ aud: { orders: true } }), INACTIVE, 'an object');
  t.equal(read({ aud: [['orders']] }), INACTIVE, 'nested');
  t.equal(readIntrospectionResponse(200, '{"active":true}', { ...at(), audience: [] }).outcome, 'active', '[]: not checked');
});

t.test('multiValuedScope turns the scope string into an array', async (t) => {
  const read = (scope: unknown, multiValuedScope: boolean) => {
    const result = readIntrospectionResponse(200, JSON.stringify({ active: true, scope }), { ...at(), multiValuedScope });
    if (result.outcome !== 'active') throw new Error(`expected active, got ${result.outcome}`);
    return result.claims.scope;
  };
  t.same(read('read write', true), ['read', 'write']);
  t.same(read(' read  write ', true), ['read', 'write'], 'extra spaces make no empty scopes');
  t.same(read('', true), [], 'an empty scope is no scopes');
  t.ok(Object.isFrozen(read('a b', true)), 'frozen like every claim');
  t.same(read(['a', 'b'], true), ['a', 'b'], 'an array stays as it is');
  t.equal(read('read write', false), 'read write', 'off: the RFC 7662 string');
  const noScope = readIntrospectionResponse(200, '{"active":true}', { ...at(), multiValuedScope: true });
  t.equal(noScope.outcome === 'active' && 'scope' in noScope.claims, false, 'no scope, none added');
});

t.test('claim values shared between answers stay each answer\'s own, past the bound of the shared table', async (t) => {
  for (let i = 0; i < 10_000; i += 1) {
    const body = JSON.stringify({ active: true, iss: 'https://as.example', sub: `user-${i}`, scope: i % 2 === 0 ? 'read' : 'write' });
    const result = readIntrospectionResponse(200, body, at());
    if (result.outcome !== 'active' || result.claims.sub !== `user-${i}` || result.claims.scope !== (i % 2 === 0 ? 'read' : 'write')) {
      t.fail(`answer ${i}: ${JSON.stringify(result)}`);
      return;
    }
  }
  t.pass('every answer read as sent');
});
