/**
 * kind: jwt against a real authorization server: oidc-provider issues RFC 9068
 * JWT access tokens (resource indicators) and publishes its keys; the service
 * validates them locally, with no introspection call, and denies every forgery
 * of RFC 9068 section 4 and RFC 8725 without asking anyone.
 */
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { SignJWT, decodeProtectedHeader } from 'jose';
import t from 'tap';
import type { AuthRequest } from '../../src/auth-request.js';
import { Authorizer } from '../../src/authorizer.js';
import { buildConfig } from '../../src/config/load.js';
import type { Decision } from '../../src/decision.js';
import { Metrics } from '../../src/observability/metrics.js';
import { startAuthorizationServer, type AuthorizationServer } from '../support/authorization-server.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';

const API = 'https://api.example';
const OTHER_API = 'https://other.example';

class TestClock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

function request(token: string): AuthRequest {
  return {
    headers: new Map([['authorization', [`Bearer ${token}`]]]),
    contextExtensions: new Map(),
    method: 'GET',
    host: 'api.example',
    path: '/',
    requestId: null,
  };
}

const NO_DEADLINE = new AbortController().signal;

function jwtEndpoint(as: AuthorizationServer, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'jwt', kind: 'jwt', issuer: as.issuer, jwksUri: as.jwksUrl, audience: API, ...overrides };
}

function authorizer(t: Tap, endpoints: Record<string, unknown>[], clock = new TestClock(), metrics = new Metrics({ cacheEntries: () => 0 })): Authorizer {
  const config = buildConfig(
    { log: { level: 'silent' }, cache: { validatedTokenTTL: 600 }, endpoints, policies: [{ name: 'p', endpoint: endpoints[0]!.name }] },
    'test',
    { env: {} },
  );
  const built = new Authorizer(config, { clock, metrics });
  t.teardown(() => built.close());
  return built;
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

function reasonOf(decision: Decision): string {
  return decision.allow ? 'allow' : decision.reason;
}

const b64 = (value: object | string) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

t.test('JWT access tokens of a real server, validated locally', async (t) => {
  const as = await startAuthorizationServer({ jwtResources: [API, OTHER_API] });
  t.teardown(() => as.close());
  const token = await as.issueToken({ scope: 'read', resource: API });
  t.equal(decodeProtectedHeader(token).typ, 'at+jwt', 'oidc-provider issued an RFC 9068 token');
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;

  t.test('a valid token is allowed without any introspection call, and checked once', async (t) => {
    const clock = new TestClock();
    const metrics = new Metrics({ cacheEntries: () => 0 });
    const authz = authorizer(t, [jwtEndpoint(as)], clock, metrics);
    const first = await authz.check(request(token), NO_DEADLINE);
    t.equal(reasonOf(first), 'allow');
    t.equal(first.cache, 'miss');
    if (first.allow) t.match(first.identity, claims.sub as string);
    const again = await authz.check(request(token), NO_DEADLINE);
    t.equal(again.cache, 'hit', 'the verified claims are cached by token');
    t.equal(as.introspectionCount(), 0, 'nobody was asked');
    t.same(authz.keysMissing(), [], 'keys are loaded');
    t.match(await metrics.registry.metrics(), /authz_jwks_fetches_total\{endpoint="jwt",result="success"\} 1/);
  });

  t.test('every forgery is an inactive deny, with no call', async (t) => {
    const clock = new TestClock();
    const authz = authorizer(t, [jwtEndpoint(as)], clock);
    const deny = async (forged: string, what: string) => {
      const decision = await authz.check(request(forged), NO_DEADLINE);
      t.equal(reasonOf(decision), 'inactive', what);
      if (!decision.allow) t.equal(decision.status, 401, `${what}: 401`);
    };
    // Claims changed, signature kept.
    await deny(`${header}.${b64({ ...claims, scope: 'read write admin' })}.${signature}`, 'forged claims');
    // The signature of another token.
    const other = await as.issueToken({ scope: 'write', resource: API });
    await deny(`${header}.${payload}.${other.split('.')[2]}`, 'a signature that is not this token\'s');
    await deny(`${b64({ alg: 'none', typ: 'at+jwt' })}.${payload}.`, 'alg none (empty signature)');
    await deny(`${b64({ alg: 'none', typ: 'at+jwt' })}.${payload}.${signature}`, 'alg none with a signature');
    // The classic: the server's public key, which anyone may fetch, as an HMAC secret.
    const jwks = (await (await fetch(as.jwksUrl)).json()) as { keys: Array<Record<string, unknown>> };
    const publicPem = createPublicKey({ key: jwks.keys[0]!, format: 'jwk' } as never).export({ type: 'spki', format: 'pem' });
    for (const secret of [Buffer.from(publicPem as string), Buffer.from(JSON.stringify(jwks.keys[0]))]) {
      const hs = await new SignJWT(claims as never)
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: jwks.keys[0]!.kid as string })
        .sign(secret);
      await deny(hs, 'HS256 signed with the public key');
    }
    // A real token for another resource server.
    await deny(await as.issueToken({ scope: 'read', resource: OTHER_API }), 'wrong aud');
    // A key of our own, under the server's kid.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const selfSigned = await new SignJWT(claims as never)
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: jwks.keys[0]!.kid as string })
      .sign(privateKey);
    await deny(selfSigned, 'signed by another key under the server\'s kid');
    await deny('not-a-jwt', 'an opaque token');
    t.equal(as.introspectionCount(), 0);
  });

  t.test('an expired token is denied', async (t) => {
    const clock = new TestClock();
    const authz = authorizer(t, [jwtEndpoint(as)], clock);
    clock.offsetMs = ((claims.exp as number) - Date.now() / 1000 + 1) * 1000;
    const decision = await authz.check(request(token), NO_DEADLINE);
    t.equal(reasonOf(decision), 'inactive');
  });

  t.test('a typ outside tokenTypes is denied, a configured one taken', async (t) => {
    const strict = authorizer(t, [jwtEndpoint(as, { tokenTypes: ['JWT'] })]);
    t.equal(reasonOf(await strict.check(request(token), NO_DEADLINE)), 'inactive', 'at+jwt refused where only JWT is accepted');
    const both = authorizer(t, [jwtEndpoint(as, { tokenTypes: ['JWT', 'application/at+JWT'] })]);
    t.equal(reasonOf(await both.check(request(token), NO_DEADLINE)), 'allow', 'compared without case or application/');
  });

  t.test('1,000 unknown kids fetch the key set a bounded number of times', async (t) => {
    const clock = new TestClock();
    const metrics = new Metrics({ cacheEntries: () => 0 });
    const authz = authorizer(t, [jwtEndpoint(as)], clock, metrics);
    t.equal(reasonOf(await authz.check(request(token), NO_DEADLINE)), 'allow', 'keys loaded');
    const before = as.jwksCount();
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const sprayed: string[] = [];
    for (let i = 0; i < 1000; i += 1) {
      sprayed.push(
        await new SignJWT(claims as never)
          .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: randomBytes(8).toString('hex') })
          .sign(privateKey),
      );
    }
    // Half at once, half one after another.
    const together = await Promise.all(sprayed.slice(0, 500).map((forged) => authz.check(request(forged), NO_DEADLINE)));
    for (const decision of together) if (decision.allow || decision.reason !== 'inactive') t.fail('a sprayed kid was not denied');
    for (const forged of sprayed.slice(500)) {
      const decision = await authz.check(request(forged), NO_DEADLINE);
      if (decision.allow || decision.reason !== 'inactive') t.fail('a sprayed kid was not denied');
    }
    t.ok(as.jwksCount() - before <= 1, `fetched ${as.jwksCount() - before} more times within the cooldown`);
    clock.offsetMs += 31_000;
    // Past the cooldown: the next unknown kids fetch once more, together, and no more.
    const later = await Promise.all(sprayed.slice(0, 100).map((forged) => authz.check(request(forged), NO_DEADLINE)));
    t.ok(later.every((decision) => !decision.allow && decision.reason === 'inactive'), 'still denied');
    t.equal(as.jwksCount() - before, 1, 'one more fetch once the cooldown passed');
    t.equal(reasonOf(await authz.check(request(token), NO_DEADLINE)), 'allow', 'the real key still works');
  });
});

t.test('introspect: always verifies first, then makes exactly one call per token', async (t) => {
  // oidc-provider will not introspect its own JWT access tokens: a fake plays the introspection half.
  const as = await startAuthorizationServer({ jwtResources: [API] });
  t.teardown(() => as.close());
  const revoked = new Set<string>();
  const fake = await startFakeAuthorizationServer((incoming) => {
    const token = incoming.body.get('token') ?? '';
    if (revoked.has(token)) return { json: { active: false } };
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString() || '{}') as Record<string, unknown>;
    return { json: { active: true, ...claims } };
  });
  t.teardown(() => fake.close());
  const authz = authorizer(t, [jwtEndpoint(as, { introspect: 'always', url: fake.url, clientId: 'rs', clientSecret: 'secret' })]);

  const first = await as.issueToken({ scope: 'read', resource: API });
  const second = await as.issueToken({ scope: 'read', resource: API });
  for (let i = 0; i < 3; i += 1) {
    t.equal(reasonOf(await authz.check(request(first), NO_DEADLINE)), 'allow');
    t.equal(reasonOf(await authz.check(request(second), NO_DEADLINE)), 'allow');
  }
  t.equal(fake.requests.length, 2, 'one introspection per token, the rest from the cache');
  t.equal(fake.requests[0]!.body.get('token'), first);

  const [header, payload] = first.split('.') as [string, string];
  const forged = `${header}.${b64({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'admin' })}.${first.split('.')[2]}`;
  t.equal(reasonOf(await authz.check(request(forged), NO_DEADLINE)), 'inactive');
  t.equal(fake.requests.length, 2, 'a forged token costs no call');

  const third = await as.issueToken({ scope: 'read', resource: API });
  revoked.add(third);
  t.equal(reasonOf(await authz.check(request(third), NO_DEADLINE)), 'inactive', 'a revoked token with a good signature is denied');
  t.equal(fake.requests.length, 3);

  await fake.setAvailability('refuse');
  const fourth = await as.issueToken({ scope: 'read', resource: API });
  t.equal(reasonOf(await authz.check(request(fourth), NO_DEADLINE)), 'introspection_error', 'no introspection, no allow');
});

t.test('configuration of kind jwt', async (t) => {
  const base = { name: 'jwt', kind: 'jwt', issuer: 'https://as.example', audience: API };
  const build = (endpoint: Record<string, unknown>) => buildConfig({ endpoints: [endpoint] }, 'test', { env: {} });
  t.throws(() => build({ ...base, issuer: null }), /endpoints\[0\]\.issuer: required by kind jwt/);
  t.throws(() => build({ ...base, audience: null }), /endpoints\[0\]\.audience: required by kind jwt/);
  t.throws(() => build({ ...base, algorithms: ['HS256'] }), /endpoints\[0\]\.algorithms/);
  t.throws(() => build({ ...base, algorithms: ['none'] }), /endpoints\[0\]\.algorithms/);
  t.throws(() => build({ ...base, url: 'https://as.example/introspect' }), /endpoints\[0\]\.url: not used by kind jwt/);
  t.throws(() => build({ ...base, introspect: 'always' }), /endpoints\[0\]\.url: required by introspect: always/);
  t.throws(() => build({ ...base, jwksUri: 'http://keys.example/jwks' }), /endpoints\[0\]\.jwksUri: http lets anyone/);
  t.throws(() => build({ ...base, issuer: 'http://as.example' }), /endpoints\[0\]\.issuer: http lets anyone/);
  t.ok(build(base), 'issuer and audience are enough');
});

t.test('key rotation at the server', async (t) => {
  const as = await startAuthorizationServer({ jwtResources: [API] });
  t.teardown(() => as.close());
  const clock = new TestClock();
  const authz = authorizer(t, [jwtEndpoint(as, { jwksCooldown: 30_000, jwksMaxAge: 300_000 })], clock);
  const before = await as.issueToken({ scope: 'read', resource: API });
  const beforeUnchecked = await as.issueToken({ scope: 'read', resource: API });
  t.equal(reasonOf(await authz.check(request(before), NO_DEADLINE)), 'allow');
  const fetches = as.jwksCount();

  await as.rotateKeys();
  const after = await as.issueToken({ scope: 'read', resource: API });
  t.equal(decodeProtectedHeader(after).kid, as.currentKid(), 'new tokens carry the new kid');
  t.not(decodeProtectedHeader(after).kid, decodeProtectedHeader(before).kid);
  t.equal(reasonOf(await authz.check(request(beforeUnchecked), NO_DEADLINE)), 'allow', 'an old token, still published key');
  t.equal(reasonOf(await authz.check(request(after), NO_DEADLINE)), 'inactive', 'fetched just before the rotation: the new kid waits for the cooldown');
  t.equal(as.jwksCount(), fetches, 'and costs no fetch');

  clock.offsetMs += 31_000;
  const later = await as.issueToken({ scope: 'read', resource: API });
  t.equal(reasonOf(await authz.check(request(later), NO_DEADLINE)), 'allow', 'after the cooldown: one refresh, then valid');
  t.equal(as.jwksCount(), fetches + 1);
  const oldAgain = await as.issueToken({ scope: 'read', resource: API });
  t.equal(reasonOf(await authz.check(request(oldAgain), NO_DEADLINE)), 'allow');

  // The old key withdrawn: within jwksMaxAge the set is fetched again and old tokens stop passing.
  const signedByOld = beforeUnchecked;
  await as.rotateKeys({ dropOld: true });
  clock.offsetMs += 301_000;
  // This Check still sees the set it has (the refresh runs beside it); the next one sees the new set.
  await authz.check(request(await as.issueToken({ scope: 'read', resource: API })), NO_DEADLINE);
  for (let i = 0; i < 100 && as.jwksCount() < fetches + 2; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(as.jwksCount(), fetches + 2, 'an aged set is fetched again by itself');
  authz.evictAll();
  // Evicted to check the signature again; a wait for the background fetch bounded in count.
  let verdict = '';
  for (let i = 0; i < 50; i += 1) {
    verdict = reasonOf(await authz.check(request(signedByOld), NO_DEADLINE));
    if (verdict === 'inactive') break;
    authz.evictAll();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.equal(verdict, 'inactive', 'a withdrawn key verifies nothing once the set was fetched again');
});

t.test('a reload keeps the keys: no refetch, never unready', async (t) => {
  const as = await startAuthorizationServer({ jwtResources: [API] });
  t.teardown(() => as.close());
  const first = authorizer(t, [jwtEndpoint(as)]);
  const token = await as.issueToken({ scope: 'read', resource: API });
  t.equal(reasonOf(await first.check(request(token), NO_DEADLINE)), 'allow');
  const fetches = as.jwksCount();
  const config = buildConfig({ log: { level: 'silent' }, endpoints: [jwtEndpoint(as, { jwksCooldown: 1000 })] }, 'test', { env: {} });
  const next = new Authorizer(config, { previous: first });
  t.teardown(() => next.close());
  t.same(next.keysMissing(), [], 'ready at once');
  t.equal(reasonOf(await next.check(request(await as.issueToken({ scope: 'read', resource: API })), NO_DEADLINE)), 'allow');
  t.equal(as.jwksCount(), fetches, 'no fetch');
  const moved = new Authorizer(buildConfig({ log: { level: 'silent' }, endpoints: [jwtEndpoint(as, { jwksUri: `${as.jwksUrl}?v=2` })] }, 'test', { env: {} }), { previous: next });
  t.teardown(() => moved.close());
  t.equal(reasonOf(await moved.check(request(token), NO_DEADLINE)), 'allow');
  t.equal(as.jwksCount(), fetches + 1, 'another jwksUri: fetched afresh');
});
