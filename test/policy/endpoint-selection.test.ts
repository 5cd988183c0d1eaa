/**
 * A policy with several endpoints: a JWT goes by its unverified iss to the
 * endpoint of that issuer (which then verifies it), an opaque token to the
 * first, a JWT of an unknown issuer nowhere (inactive, no call). Two real
 * authorization servers play two tenants.
 */
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import t from 'tap';
import type { AuthRequest } from '../../src/auth-request.js';
import { Authorizer } from '../../src/authorizer.js';
import { buildConfig } from '../../src/config/load.js';
import { unverifiedIssuer } from '../../src/policy/endpoint-selection.js';
import { startAuthorizationServer } from '../support/authorization-server.js';

const API = 'https://api.example';
const NO_DEADLINE = new AbortController().signal;
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

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

t.test('unverifiedIssuer reads a JWT-shaped token only', async (t) => {
  t.equal(unverifiedIssuer('opaque-token'), undefined);
  t.equal(unverifiedIssuer('a.b'), undefined);
  t.equal(unverifiedIssuer(`${b64({ alg: 'RS256' })}.${b64({ iss: 'https://a.example' })}.sig`), 'https://a.example');
  t.equal(unverifiedIssuer(`${b64({ alg: 'RS256' })}.${b64({ sub: 'x' })}.sig`), null, 'a JWT without iss');
  t.equal(unverifiedIssuer(`${b64({ alg: 'RS256' })}.${b64({ iss: 7 })}.sig`), null, 'an iss that is not a string');
  t.equal(unverifiedIssuer(`x.${b64([1])}.y`), undefined, 'a payload that is not an object');
  t.equal(unverifiedIssuer('x.!!!.y'), undefined);
});

t.test('two issuers, two endpoints, the right one picked', async (t) => {
  const tenantA = await startAuthorizationServer({ jwtResources: [API] });
  t.teardown(() => tenantA.close());
  const tenantB = await startAuthorizationServer({ jwtResources: [API] });
  t.teardown(() => tenantB.close());
  const config = buildConfig(
    {
      log: { level: 'silent' },
      endpoints: [
        {
          name: 'tenant-a',
          url: tenantA.introspectionUrl,
          issuer: tenantA.issuer,
          clientId: tenantA.introspectors.basic.clientId,
          clientSecret: tenantA.introspectors.basic.clientSecret,
        },
        { name: 'tenant-b', kind: 'jwt', issuer: tenantB.issuer, jwksUri: tenantB.jwksUrl, audience: API },
      ],
      policies: [{ name: 'p', endpoint: ['tenant-a', 'tenant-b'] }],
    },
    'test',
    { env: {} },
  );
  const authz = new Authorizer(config);
  t.teardown(() => authz.close());

  const opaque = await tenantA.issueToken({ scope: 'read' });
  const a = await authz.check(request(opaque), NO_DEADLINE);
  t.equal(a.allow, true, 'an opaque token goes to the first endpoint');
  t.equal(a.endpoint, 'tenant-a');
  t.equal(tenantA.introspectionCount(), 1);

  const jwtOfB = await tenantB.issueToken({ scope: 'read', resource: API });
  const b = await authz.check(request(jwtOfB), NO_DEADLINE);
  t.equal(b.allow, true, 'a JWT of tenant B is validated by its endpoint');
  t.equal(b.endpoint, 'tenant-b');
  t.equal(tenantA.introspectionCount(), 1, 'tenant A was not asked');

  // Claims of tenant B, signed by someone else: B's endpoint refuses it.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const claims = JSON.parse(Buffer.from(jwtOfB.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  const forged = await new SignJWT(claims as never).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' }).sign(privateKey);
  const f = await authz.check(request(forged), NO_DEADLINE);
  t.equal(f.allow ? 'allow' : f.reason, 'inactive');
  t.equal(f.endpoint, 'tenant-b');

  const stranger = await new SignJWT({ ...claims, iss: 'https://stranger.example' } as never)
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' })
    .sign(privateKey);
  const s = await authz.check(request(stranger), NO_DEADLINE);
  t.equal(s.allow ? 'allow' : s.reason, 'inactive', 'an issuer no endpoint has');
  t.equal(s.endpoint, null, 'no endpoint was asked');
  t.equal(s.cache, 'none');
  t.equal(tenantA.introspectionCount(), 1, 'and no call made');
});

t.test('a list of endpoints needs an issuer on each, all different', async (t) => {
  const endpoints = [
    { name: 'one', url: 'https://one.example/i', clientId: 'c', clientSecret: 's', issuer: 'https://one.example' },
    { name: 'two', url: 'https://two.example/i', clientId: 'c', clientSecret: 's', issuer: 'https://two.example' },
    { name: 'bare', url: 'https://two.example/i', clientId: 'c', clientSecret: 's', audience: 'x' },
    { name: 'same', url: 'https://one.example/j', clientId: 'c', clientSecret: 's', issuer: 'https://one.example' },
  ];
  const build = (endpoint: unknown) => buildConfig({ endpoints, policies: [{ name: 'p', endpoint }] }, 'test', { env: {} });
  t.ok(build(['one', 'two']));
  t.throws(() => build(['one', 'bare']), /policies\[0\]\.endpoint: endpoint bare has no issuer/);
  t.throws(() => build(['one', 'same']), /policies\[0\]\.endpoint: two endpoints of the list have the issuer of same/);
  t.throws(() => build(['one', 'nowhere']), /policies\[0\]\.endpoint: no endpoint is named "nowhere"/);
  t.throws(() => build([]), /policies\[0\]\.endpoint/);
});
