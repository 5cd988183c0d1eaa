/**
 * End to end, RFC 9449: Envoy (a gRPC client built from the upstream protos)
 * -> this service -> oidc-provider, whose token endpoint binds tokens to a
 * DPoP key and whose introspection answers carry cnf.jkt. Proofs are made with
 * jose as a client would; every rule of the issue's item 2 is tried.
 */
import t from 'tap';
import { startApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startAuthorizationServer, type AuthorizationServer } from '../support/authorization-server.js';
import { createDpopKey, DEFAULT_URL, makeProof } from '../support/dpop.js';
import { connectEnvoy, structToJson, summarize, type CheckOptions, type UpstreamCheckResponse } from '../support/envoy.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];
type Raw = Record<string, unknown>;

const ALGS = 'ES256 ES384 PS256 RS256 EdDSA Ed25519';

const as = await startAuthorizationServer();
t.teardown(() => as.close());

function endpoint(server: AuthorizationServer): Raw {
  return {
    name: 'oidc',
    url: server.introspectionUrl,
    authMethod: 'client_secret_basic',
    clientId: server.introspectors.basic.clientId,
    clientSecret: server.introspectors.basic.clientSecret,
  };
}

async function startService(t: Test, policies: Raw[] = [{ name: 'p' }], extra: Raw = {}) {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 1000 },
      log: { level: 'silent' },
      cache: { validatedTokenTTL: 60 },
      endpoints: [endpoint(as)],
      policies,
      ...extra,
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'), {});
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy, check: (options: CheckOptions) => envoy.check({ path: '/orders/42?expand=items', ...options }) };
}

function dpopHeaders(token: string, proof: string): Record<string, string> {
  return { authorization: `DPoP ${token}`, dpop: proof };
}

function challenge(response: UpstreamCheckResponse): string | undefined {
  return summarize(response).headers['www-authenticate'];
}

/** A deny with this reason, HTTP 401, the error in body and challenge, and neither token nor proof echoed. */
function assertDenied(t: Test, response: UpstreamCheckResponse, reason: string, error: string, secrets: string[], scheme = 'DPoP'): void {
  const s = summarize(response);
  t.notOk(s.allowed, `denied (${reason})`);
  t.equal(response.status?.message, reason, 'reason');
  t.equal(s.httpStatus, 401, 'HTTP 401');
  t.equal((JSON.parse(s.body ?? '{}') as Raw).error, error, 'error code in the body');
  const www = challenge(response) ?? '';
  t.ok(www.startsWith(`${scheme} `), `a ${scheme} challenge`);
  t.match(www, `error="${error}"`, 'error code in the challenge');
  if (scheme === 'DPoP') t.match(www, `algs="${ALGS}"`, 'algorithms announced');
  for (const secret of secrets) {
    t.notOk((s.body ?? '').includes(secret) || www.includes(secret), 'neither token nor proof is echoed');
  }
}

const key = await createDpopKey('ES256');
const otherKey = await createDpopKey('ES256');

t.test('a DPoP-bound token from oidc-provider with a proof by its key is allowed; the binding goes upstream', async (t) => {
  const service = await startService(t, [{ name: 'p', bindingHeader: 'x-auth-binding', removeDpopHeader: true }]);
  const token = await as.issueToken({ scope: 'read', dpop: key });
  const proof = await makeProof(key, { token });
  const response = await service.check({ headers: dpopHeaders(token, proof) });
  const s = summarize(response);
  t.ok(s.allowed, 'allowed');
  t.equal(s.headers['x-auth-binding'], `dpop ${key.thumbprint}`, 'binding header');
  t.ok(s.headersToRemove.includes('dpop'), 'the DPoP header is removed upstream');
  t.same(structToJson(response.dynamic_metadata?.fields ?? {}).binding, { method: 'dpop', thumbprint: key.thumbprint }, 'metadata');

  // A second request with its own proof, against the cached answer.
  const before = as.introspectionCount();
  const again = await service.check({ headers: dpopHeaders(token, await makeProof(key, { token })), method: 'GET' });
  t.ok(summarize(again).allowed, 'a fresh proof passes against the cached answer');
  t.equal(as.introspectionCount(), before, 'the answer came from the cache');

  await t.test('the same proof again is a replay', async (t) => {
    assertDenied(t, await service.check({ headers: dpopHeaders(token, proof) }), 'dpop_replay', 'invalid_dpop_proof', [token, proof]);
  });
});

t.test('each broken proof is denied with invalid_dpop_proof', async (t) => {
  const service = await startService(t);
  const token = await as.issueToken({ scope: 'read', dpop: key });
  const now = Math.floor(Date.now() / 1000);
  // Each with the sentence it must be refused for: a deny for another reason would hide a missing check.
  const cases: Array<[string, () => Promise<string>, string]> = [
    ['another key', () => makeProof(otherKey, { token }), 'not signed by the key the token is bound to'],
    ['another method', () => makeProof(key, { token, method: 'POST' }), 'another HTTP method'],
    ['another URL', () => makeProof(key, { token, url: 'https://api.example.com/orders/43' }), 'another URI'],
    ['another host', () => makeProof(key, { token, url: 'https://evil.example.com/orders/42' }), 'another URI'],
    ['http instead of https', () => makeProof(key, { token, url: 'http://api.example.com/orders/42' }), 'another URI'],
    ['a stale iat', () => makeProof(key, { token, iat: now - 3600 }), 'too old'],
    ['an iat in the future', () => makeProof(key, { token, iat: now + 3600 }), 'in the future'],
    ['no ath', () => makeProof(key, { token: null }), 'has no ath'],
    ['an ath of another token', () => makeProof(key, { token: `${token}x` }), 'another access token'],
    ['typ JWT', () => makeProof(key, { token, header: { typ: 'JWT' } }), 'not of type dpop+jwt'],
    ['a private key in jwk', () => makeProof(key, { token, header: { jwk: key.privateJwk } }), 'not a public key'],
    ['no jwk', () => makeProof(key, { token, header: { jwk: undefined } }), 'carries no jwk'],
    ['no jti', () => makeProof(key, { token, claims: { jti: undefined } }), 'no usable jti'],
    [
      'alg none',
      async () => {
        const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
        const payload = { jti: 'x1', htm: 'GET', htu: DEFAULT_URL, iat: now, ath: 'a' };
        return `${encode({ alg: 'none', typ: 'dpop+jwt', jwk: key.publicJwk })}.${encode(payload)}.AA`;
      },
      'algorithm not allowed',
    ],
    ['a forged signature', async () => `${(await makeProof(key, { token })).slice(0, -4)}AAAA`, 'signature is not valid'],
    ['two proofs', async () => `${await makeProof(key, { token })},${await makeProof(key, { token })}`, 'more than one DPoP proof'],
    ['an oversized proof', () => makeProof(key, { token, claims: { pad: 'x'.repeat(5000) } }), 'longer than 4096'],
  ];
  for (const [name, make, why] of cases) {
    const proof = await make();
    await t.test(name, async (t) => {
      const response = await service.check({ headers: dpopHeaders(token, proof) });
      assertDenied(t, response, 'invalid_dpop_proof', 'invalid_dpop_proof', [token, proof]);
      t.match((JSON.parse(summarize(response).body ?? '{}') as Raw).error_description, why, 'for the right reason');
    });
  }

  await t.test('the DPoP scheme without a proof', async (t) => {
    assertDenied(t, await service.check({ headers: { authorization: `DPoP ${token}` } }), 'invalid_dpop_proof', 'invalid_dpop_proof', [token]);
  });

  await t.test('two DPoP header lines (encode_raw_headers)', async (t) => {
    const proof = await makeProof(key, { token });
    const response = await service.check({
      rawHeaders: [
        ['authorization', `DPoP ${token}`],
        ['dpop', proof],
        ['dpop', proof],
      ],
    });
    assertDenied(t, response, 'invalid_dpop_proof', 'invalid_dpop_proof', [token, proof]);
  });

  await t.test('the broken proofs never reached the endpoint', async (t) => {
    const before = as.introspectionCount();
    await service.check({ headers: dpopHeaders(token, await makeProof(key, { token, method: 'PUT' })) });
    t.equal(as.introspectionCount(), before, 'checked before introspection');
  });
});

t.test('a DPoP-bound token presented as Bearer is refused (RFC 9449 section 7.2)', async (t) => {
  const service = await startService(t);
  const token = await as.issueToken({ scope: 'read', dpop: key });
  const proof = await makeProof(key, { token });
  const response = await service.check({ headers: { authorization: `Bearer ${token}`, dpop: proof } });
  assertDenied(t, response, 'bound_token_as_bearer', 'invalid_token', [token, proof], 'Bearer');
});

t.test('an unbound token under the DPoP scheme is refused', async (t) => {
  const service = await startService(t);
  const token = await as.issueToken({ scope: 'read' });
  assertDenied(t, await service.check({ headers: dpopHeaders(token, await makeProof(key, { token })) }), 'unbound_token', 'invalid_token', [token]);
});

t.test('senderConstraint', async (t) => {
  const bound = await as.issueToken({ scope: 'read', dpop: key });
  const plain = await as.issueToken({ scope: 'read' });

  await t.test('required: an unbound bearer token is refused, a bound one with its proof passes', async (t) => {
    const service = await startService(t, [{ name: 'p', senderConstraint: 'required' }]);
    const response = await service.check({ headers: { authorization: `Bearer ${plain}` } });
    assertDenied(t, response, 'unbound_token', 'invalid_token', [plain], 'Bearer');
    t.ok(summarize(await service.check({ headers: dpopHeaders(bound, await makeProof(key, { token: bound })) })).allowed);
  });

  await t.test('ifBound: an unbound bearer token passes', async (t) => {
    const service = await startService(t);
    t.ok(summarize(await service.check({ headers: { authorization: `Bearer ${plain}` } })).allowed);
  });

  await t.test('off: cnf is ignored and the DPoP scheme is not read', async (t) => {
    const service = await startService(t, [{ name: 'p', senderConstraint: 'off' }]);
    t.ok(summarize(await service.check({ headers: { authorization: `Bearer ${bound}` } })).allowed, 'bound token as bearer');
    const response = await service.check({ headers: dpopHeaders(bound, await makeProof(key, { token: bound })) });
    t.equal(response.status?.message, 'missing_token', 'the DPoP scheme is no bearer credential');
  });
});

t.test('dpopNonce: proofs must carry a nonce this service supplied (RFC 9449 section 9)', async (t) => {
  const service = await startService(t, [{ name: 'p', dpopNonce: true }]);
  const token = await as.issueToken({ scope: 'read', dpop: key });

  const first = await service.check({ headers: dpopHeaders(token, await makeProof(key, { token })) });
  assertDenied(t, first, 'use_dpop_nonce', 'use_dpop_nonce', [token]);
  const nonce = summarize(first).headers['dpop-nonce'];
  t.match(nonce, /^[A-Za-z0-9_-]{43}$/, 'the deny hands out a nonce');

  const made = await service.check({ headers: dpopHeaders(token, await makeProof(key, { token, claims: { nonce: 'made-up' } })) });
  assertDenied(t, made, 'use_dpop_nonce', 'use_dpop_nonce', [token]);

  const allowed = await service.check({ headers: dpopHeaders(token, await makeProof(key, { token, claims: { nonce } })) });
  t.ok(summarize(allowed).allowed, 'a proof with the nonce passes');
  const added = (allowed.ok_response?.response_headers_to_add ?? []) as Array<{ header: { key: string; value: string } }>;
  t.same(added.map((option) => [option.header.key, option.header.value]), [['dpop-nonce', nonce]], 'and the allow hands out the current nonce to the client');
});
