/**
 * RFC 9701 signed introspection answers: a real oidc-provider answering with
 * token-introspection+jwt, and a hostile endpoint answering everything a
 * signed answer must not be (each a bad_response deny, never an allow).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import t from 'tap';
import type { AuthRequest } from '../../src/auth-request.js';
import { Authorizer } from '../../src/authorizer.js';
import { buildConfig } from '../../src/config/load.js';
import { startAuthorizationServer } from '../support/authorization-server.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';

const NO_DEADLINE = new AbortController().signal;

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

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

function authorizer(t: Tap, endpoint: Record<string, unknown>): Authorizer {
  const config = buildConfig({ log: { level: 'silent' }, endpoints: [{ name: 'as', responseFormat: 'jwt', ...endpoint }] }, 'test', { env: {} });
  const authz = new Authorizer(config);
  t.teardown(() => authz.close());
  return authz;
}

t.test('a real server\'s signed answer is verified and read', async (t) => {
  const as = await startAuthorizationServer();
  t.teardown(() => as.close());
  const authz = authorizer(t, {
    url: as.introspectionUrl,
    issuer: as.issuer,
    jwksUri: as.jwksUrl,
    clientId: as.introspectors.basic.clientId,
    clientSecret: as.introspectors.basic.clientSecret,
  });
  const token = await as.issueToken({ scope: 'read' });
  const decision = await authz.check(request(token), NO_DEADLINE);
  t.equal(decision.allow, true, decision.allow ? 'allowed' : `${decision.reason}`);
  t.equal(as.introspectionCount(), 1);
  const unknown = await authz.check(request('unknown-token'), NO_DEADLINE);
  t.equal(unknown.allow ? 'allow' : unknown.reason, 'inactive', 'a signed active: false is inactive');
});

t.test('everything a signed answer must not be is a bad response', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const issuer = 'http://127.0.0.1';
  let answer: () => Promise<{ body?: string; json?: unknown }> = async () => ({ json: { active: true } });
  const fake = await startFakeAuthorizationServer(async (incoming) => {
    if (incoming.path === '/jwks') return { json: { keys: [jwk] } };
    return { headers: { 'content-type': 'application/token-introspection+jwt' }, ...(await answer()) };
  });
  t.teardown(() => fake.close());
  const authz = authorizer(t, { url: fake.url, issuer, jwksUri: `${fake.origin}/jwks`, clientId: 'rs', clientSecret: 's', jwksCooldown: 60_000 });
  const signed = (claims: Record<string, unknown>, header: Record<string, unknown> = {}, key: Parameters<SignJWT['sign']>[0] = privateKey) =>
    new SignJWT({ iss: issuer, aud: 'rs', iat: Math.floor(Date.now() / 1000), token_introspection: { active: true, sub: 'alice', iss: issuer }, ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: 'token-introspection+jwt', kid: 'k1', ...header })
      .sign(key);

  const outcome = async (make: () => Promise<string> | string, what: string) => {
    answer = async () => ({ body: await make() });
    const note: { detail?: string } = {};
    const decision = await authz.check(request(randomBytes(8).toString('hex')), NO_DEADLINE, note);
    t.comment(`${what}: ${note.detail ?? ''}`);
    return decision.allow ? 'allow' : decision.reason;
  };
  t.equal(await outcome(() => signed({}), 'good'), 'allow', 'a good answer');
  t.match(fake.requests.at(-1)!.headers.accept, 'application/token-introspection+jwt', 'asked for a signed answer');
  answer = async () => ({ json: { active: true, sub: 'alice' } });
  const json = await authz.check(request('json-answer'), NO_DEADLINE);
  t.equal(json.allow ? 'allow' : json.reason, 'bad_response', 'a JSON answer where a JWT is required');
  const jwksBefore = fake.requests.filter((r) => r.path === '/jwks').length;
  const cases: Array<[string, () => Promise<string>]> = [
    ['wrong iss', () => signed({ iss: 'http://127.0.0.2' })],
    ['wrong aud', () => signed({ aud: 'someone-else' })],
    ['stale iat', () => signed({ iat: Math.floor(Date.now() / 1000) - 3600 })],
    ['no iat', () => signed({ iat: undefined })],
    ['wrong typ', () => signed({}, { typ: 'JWT' })],
    ['unknown kid', () => signed({}, { kid: 'k2' })],
    ['another key', () => signed({}, {}, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)],
    ['alg none', async () => `${Buffer.from('{"alg":"none","typ":"token-introspection+jwt"}').toString('base64url')}.${(await signed({})).split('.')[1]}.`],
    ['HS256 with the public key', () => signed({}, { alg: 'HS256' }, Buffer.from(JSON.stringify(jwk)))],
    ['no token_introspection', () => signed({ token_introspection: undefined })],
  ];
  for (const [what, make] of cases) t.equal(await outcome(make, what), 'bad_response', what);
  t.ok(fake.requests.filter((r) => r.path === '/jwks').length - jwksBefore <= 1, 'the unknown kid fetched the key set at most once');
});
