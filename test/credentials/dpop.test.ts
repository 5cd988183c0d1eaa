import t from 'tap';
import fc from 'fast-check';
import type { AuthRequest } from '../../src/auth-request.js';
import { DpopVerifier, extractProof, requestHtu, type ProofTarget } from '../../src/credentials/dpop.js';
import { DpopNonces } from '../../src/credentials/dpop-nonce.js';
import { MemoryReplayStore } from '../../src/credentials/replay-store.js';
import { decide, type DecideContext } from '../../src/decide.js';
import type { Endpoint } from '../../src/introspection/introspector.js';
import { compilePolicy, routeTable } from '../../src/policy/compile.js';
import { createDpopKey, makeProof } from '../support/dpop.js';
import { assertProperty } from '../support/property.js';
import { testPolicy } from '../support/policy.js';

const TOKEN = 'dpop-bound.Token_value-42';
const URL_ = 'https://api.example.com/orders/42';
const target: ProofTarget = { method: 'GET', scheme: 'https', host: 'api.example.com', path: '/orders/42?x=1', token: TOKEN };
const rules = { algorithms: ['ES256', 'RS256'], windowSeconds: 60 };

class Clock {
  ms: number;
  constructor(ms: number) {
    this.ms = ms;
  }
  now(): number {
    return this.ms;
  }
}

t.test('extractProof: one header, one compact JWS, within the size limit', async (t) => {
  t.same(extractProof([], 100), { kind: 'missing' });
  t.same(extractProof([' '], 100), { kind: 'missing' });
  t.same(extractProof(['a.b.c'], 100), { kind: 'proof', proof: 'a.b.c' });
  t.match(extractProof(['a.b.c', 'a.b.c'], 100), { kind: 'invalid', description: 'more than one DPoP header' });
  t.match(extractProof(['a.b.c,a.b.c'], 100), { kind: 'invalid', description: 'more than one DPoP proof' });
  t.match(extractProof(['a.b.c'], 4), { kind: 'invalid', description: 'the DPoP proof is longer than 4 characters' });
  t.match(extractProof(['a.b.'], 100), { kind: 'invalid', description: 'the DPoP proof is not a compact JWS' });
  t.match(extractProof(['a.b.c.d.e'], 100), { kind: 'invalid' }, 'a JWE is no proof');
});

t.test('requestHtu: normalised as RFC 9449 section 4.3 asks, without query or fragment', async (t) => {
  const htu = (scheme: string, host: string, path: string) => requestHtu({ ...target, scheme, host, path });
  t.equal(htu('https', 'API.Example.com:443', '/a/./b/../c?q#f'), 'https://api.example.com/a/c');
  t.equal(htu('http', 'h:8080', '/x'), 'http://h:8080/x');
  t.equal(htu('ftp', 'h', '/x'), null, 'only http(s)');
  t.equal(htu('https', '', '/x'), null, 'a host is needed');
  t.equal(htu('https', 'h', '*'), null, 'an origin-form path is needed');
  t.equal(htu('https', 'user@h', '/x'), null, 'no user info smuggled in the host');
});

t.test('the verifier takes a good proof, within the iat window either side', async (t) => {
  const key = await createDpopKey('ES256');
  // A whole second: iat has no fraction, and the window's edges are tried exactly.
  const clock = new Clock(Math.floor(Date.now() / 1000) * 1000);
  const verifier = new DpopVerifier({ clock });
  const now = Math.floor(clock.ms / 1000);
  for (const iat of [now, now - 60, now + 60]) {
    const checked = await verifier.verify(await makeProof(key, { token: TOKEN, url: URL_, iat }), target, rules);
    t.ok(checked.ok, `iat ${iat - now}`);
    if (checked.ok) {
      t.equal(checked.proof.thumbprint, key.thumbprint);
      t.equal(checked.proof.acceptableUntil, (iat + 60) * 1000);
    }
  }
  for (const iat of [now - 61, now + 61]) {
    t.notOk((await verifier.verify(await makeProof(key, { token: TOKEN, url: URL_, iat }), target, rules)).ok, `iat ${iat - now}`);
  }
  const rsa = await createDpopKey('RS256');
  t.ok((await verifier.verify(await makeProof(rsa, { token: TOKEN, url: URL_ }), target, rules)).ok, 'RS256');
  const ps = await createDpopKey('PS256');
  const refused = await verifier.verify(await makeProof(ps, { token: TOKEN, url: URL_ }), target, rules);
  t.same(refused, { ok: false, description: 'the DPoP proof uses an algorithm not allowed here' }, 'an algorithm off the list');
});

t.test('the replay store: a key once per window, bounded, expired records reused', async (t) => {
  const clock = new Clock(1_000_000);
  let overflows = 0;
  const store = new MemoryReplayStore({ maxEntries: 3, clock, onOverflow: () => (overflows += 1) });
  t.ok(await store.claim('a', clock.ms + 1000), 'first use');
  t.notOk(await store.claim('a', clock.ms + 1000), 'second use');
  clock.ms += 1001;
  t.ok(await store.claim('a', clock.ms + 1000), 'after its window the record is gone');
  for (const name of ['b', 'c', 'd']) await store.claim(name, clock.ms + 1000);
  t.equal(store.size, 3, 'never more than maxEntries');
  t.equal(overflows, 1, 'a live record pushed out is counted');
  t.ok(await store.claim('a', clock.ms + 1000), 'the oldest went first');
  t.equal(overflows, 2);
  clock.ms += 5000;
  await store.claim('e', clock.ms + 1000);
  t.equal(overflows, 2, 'expired records make room without an overflow');
});

/**
 * Whatever is done to a good proof, the pipeline never allows it unless what
 * it decodes to is the very same header, payload and signature (base64url
 * has spare bits in a last character, so some spellings differ and decode
 * alike). A fresh replay store each run, so a replay is not what refuses it.
 */
t.test('property: a mangled proof is never allowed', async (t) => {
  const key = await createDpopKey('ES256');
  const other = await createDpopKey('ES256');
  const now = Math.floor(Date.now() / 1000);
  const frozen = new Clock(now * 1000);
  const good = await makeProof(key, { token: TOKEN, url: URL_, iat: now, jti: 'j1' });
  const [h, p, s] = good.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const decoded = (proof: string) => proof.split('.').map((part) => Buffer.from(part, 'base64url').toString('hex')).join('.');

  const endpoint: Endpoint = { name: 'as', cacheId: 'as', clientIdHeader: null, introspect: () => Promise.reject(new Error('unused')) } as Endpoint;
  const policy = compilePolicy(testPolicy(), endpoint);
  const claims = Object.freeze(Object.setPrototypeOf({ active: true, sub: 'alice', cnf: { jkt: key.thumbprint } }, null));
  const contextFor = (): DecideContext => ({
    policies: new Map([['default', policy]]),
    defaultPolicy: policy,
    policySelector: 'policy',
    routes: routeTable([policy.config]),
    maxTokenLength: 4096,
    // Frozen at the proofs' iat: a run that takes seconds must not move the window's edges.
    sender: { verifier: new DpopVerifier({ clock: frozen }), replay: new MemoryReplayStore({ maxEntries: 1000, clock: frozen }), maxProofLength: 4096, nonces: new DpopNonces({ secret: Buffer.alloc(32, 7), lifetimeSeconds: 300 }) },
    introspect: async () => ({ result: { outcome: 'active', claims, expiresAt: null }, cache: 'hit' }),
  });
  const requestWith = (proof: string): AuthRequest => ({
    headers: new Map([
      ['authorization', [`DPoP ${TOKEN}`]],
      ['dpop', [proof]],
    ]),
    contextExtensions: new Map(),
    method: 'GET',
    scheme: 'https',
    host: 'api.example.com',
    path: '/orders/42',
    requestId: null,
  });
  t.ok((await decide(requestWith(good), contextFor(), new AbortController().signal)).allow, 'the good proof itself passes');

  const b64char = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.,= '.split(''));
  const jsonValue = fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.constant(null), fc.boolean(), fc.constant(undefined));
  const mangle = fc.oneof(
    fc.tuple(fc.nat(good.length - 1), b64char).map(([at, c]) => good.slice(0, at) + c + good.slice(at + 1)),
    fc.tuple(fc.nat(good.length - 1), b64char).map(([at, c]) => good.slice(0, at) + c + good.slice(at)),
    fc.nat(good.length - 1).map((at) => good.slice(0, at) + good.slice(at + 1)),
    fc.nat(good.length - 1).map((at) => good.slice(0, at)),
    fc.tuple(fc.constantFrom('typ', 'alg', 'jwk', 'crit', 'b64', 'kid'), jsonValue).map(
      ([name, value]) => `${encode({ ...header, [name]: value })}.${p}.${s}`,
    ),
    fc.tuple(fc.constantFrom('x', 'y', 'crv', 'kty', 'd'), jsonValue).map(
      ([name, value]) => `${encode({ ...header, jwk: { ...(header.jwk as object), [name]: value } })}.${p}.${s}`,
    ),
    fc.tuple(fc.constantFrom('htm', 'htu', 'iat', 'ath', 'jti', 'nonce'), jsonValue).map(
      ([name, value]) => `${h}.${encode({ ...payload, [name]: value })}.${s}`,
    ),
    fc.constantFrom(`${p}.${h}.${s}`, `${h}.${p}.${h}`, `${h}.${h}.${s}`, `${h}.${p}.${s}.${s}`, `${h}..${s}`),
  );
  // Well signed, but by another key or for another request (one thing wrong at a time, so each is tried often).
  const right = { signer: key, method: 'GET', url: URL_, token: TOKEN as string | null, age: 0, typ: 'dpop+jwt' };
  const wrong = fc.oneof(
    fc.constant({ signer: other }),
    fc.constantFrom('POST', 'get', 'HEAD').map((method) => ({ method })),
    fc
      .constantFrom(`${URL_}/`, 'https://api.example.com/orders/43', 'http://api.example.com/orders/42', 'https://api.example.com:8443/orders/42')
      .map((url) => ({ url })),
    fc.constantFrom<string | null>(`${TOKEN}x`, null).map((token) => ({ token })),
    fc.constantFrom(61, -61, 3600).map((age) => ({ age })),
    fc.constantFrom('JWT', 'at+jwt', 'DPoP+JWT').map((typ) => ({ typ })),
  );
  const resigned = wrong.map((change) => {
    const { signer, method, url, token, age, typ } = { ...right, ...change };
    return makeProof(signer, { method, url, token, iat: now - age, header: { typ } });
  });

  await assertProperty(
    fc.asyncProperty(fc.oneof(mangle.map((proof) => Promise.resolve(proof)), resigned), async (made) => {
      const proof = await made;
      const decision = await decide(requestWith(proof), contextFor(), new AbortController().signal);
      // Allowed only as the good proof spelt otherwise.
      return !decision.allow || decoded(proof) === decoded(good);
    }),
    300,
  );
});

t.test('DPoP nonces: this slot and the one before, from this secret only', async (t) => {
  const clock = new Clock(1_000_000_000);
  const nonces = new DpopNonces({ secret: Buffer.alloc(32, 1), lifetimeSeconds: 10, clock });
  const first = nonces.current();
  t.ok(nonces.accepts(first));
  t.equal(nonces.current(), first, 'stable within a slot');
  clock.ms += 10_000;
  const second = nonces.current();
  t.not(second, first, 'a new nonce each slot');
  t.ok(nonces.accepts(first), 'the previous slot\'s nonce still passes');
  clock.ms += 10_000;
  t.notOk(nonces.accepts(first), 'two slots old: refused');
  t.ok(nonces.accepts(second));
  const other = new DpopNonces({ secret: Buffer.alloc(32, 2), lifetimeSeconds: 10, clock });
  t.notOk(nonces.accepts(other.current()), 'another secret\'s nonce is refused');
  const twin = new DpopNonces({ secret: Buffer.alloc(32, 1), lifetimeSeconds: 10, clock });
  t.ok(nonces.accepts(twin.current()), 'replicas sharing the secret agree');
  t.notOk(nonces.accepts(undefined), 'no nonce');
  clock.ms += 100_000;
  t.notOk(nonces.accepts(second), 'after a long pause nothing old passes');
});
