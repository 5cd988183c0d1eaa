/**
 * End to end, RFC 8705 section 3: oidc-provider binds a token to a client
 * certificate made with the openssl CLI (its introspection answers carry
 * cnf["x5t#S256"]); the service must see that certificate, from the source
 * the policy names and no other, before it allows the token.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { startApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startAuthorizationServer } from '../support/authorization-server.js';
import { createTestPki, opensslAvailable } from '../support/certificates.js';
import { connectEnvoy, structToJson, summarize, type CheckOptions, type UpstreamCheckResponse } from '../support/envoy.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];
type Raw = Record<string, unknown>;

if (!opensslAvailable()) {
  t.fail('the openssl command is needed to make the client certificates (Debian package openssl)');
  process.exit(1);
}

const pki = createTestPki();
const as = await startAuthorizationServer({ certificateBound: true });
t.teardown(() => as.close());
const token = await as.issueToken({ scope: 'read', certificate: pki.client.cert });

/** The thumbprint as openssl computes it, not as the code under test does: SHA-256 of the DER, base64url. */
const opensslThumbprint = (() => {
  const der = execFileSync('openssl', ['x509', '-outform', 'DER'], { input: pki.client.cert });
  const hex = execFileSync('openssl', ['dgst', '-sha256', '-hex', '-r'], { input: der }).toString().split(' ')[0]!;
  return { hex, base64url: Buffer.from(hex, 'hex').toString('base64url') };
})();

const clientDer = new X509Certificate(pki.client.cert).raw;
const otherDer = new X509Certificate(pki.server.cert).raw;

async function startService(t: Test, policy: Raw) {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 1000 },
      log: { level: 'silent' },
      endpoints: [
        {
          name: 'oidc',
          url: as.introspectionUrl,
          authMethod: 'client_secret_basic',
          clientId: as.introspectors.basic.clientId,
          clientSecret: as.introspectors.basic.clientSecret,
        },
      ],
      policies: [{ name: 'p', ...policy }],
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'), {});
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return (options: CheckOptions = {}) =>
    envoy.check({ ...options, headers: { authorization: `Bearer ${token}`, ...options.headers } });
}

function assertAllowed(t: Test, response: UpstreamCheckResponse): void {
  t.ok(summarize(response).allowed, 'allowed');
  t.same(
    structToJson(response.dynamic_metadata?.fields ?? {}).binding,
    { method: 'mtls', thumbprint: opensslThumbprint.base64url },
    'the confirmed binding in dynamic_metadata, as openssl computes the thumbprint',
  );
}

function assertMismatch(t: Test, response: UpstreamCheckResponse, why: string | RegExp): void {
  const s = summarize(response);
  t.notOk(s.allowed, 'denied');
  t.equal(response.status?.message, 'certificate_mismatch', 'reason');
  t.equal(s.httpStatus, 401, 'HTTP 401');
  t.match(s.headers['www-authenticate'], /^Bearer realm="api", error="invalid_token", error_description="[^"]+"$/, 'RFC 8705 invalid_token');
  t.match((JSON.parse(s.body ?? '{}') as Raw).error_description, why, 'for the right reason');
  t.notOk((s.body ?? '').includes(token), 'the token is not echoed');
}

const pem = (text: string) => encodeURIComponent(text);
const xfccHash = (hex: string) => `By=spiffe://cluster.local/ns/default/sa/api;Hash=${hex};Subject="CN=authz-client";URI=`;

t.test('source peer: attributes.source.certificate (include_peer_certificate)', async (t) => {
  const check = await startService(t, {});
  assertAllowed(t, await check({ peerCertificate: pem(pki.client.cert) }));
  assertMismatch(t, await check({ peerCertificate: pem(pki.server.cert) }), 'not the one the token is bound to');
  assertMismatch(t, await check(), 'does not present');
  assertMismatch(t, await check({ peerCertificate: 'not%20a%20certificate' }), 'not one PEM certificate');
  assertMismatch(
    t,
    await check({ headers: { 'x-forwarded-client-cert': xfccHash(opensslThumbprint.hex), 'client-cert': `:${clientDer.toString('base64')}:` } }),
    'does not present',
  );
});

t.test('source xfcc: x-forwarded-client-cert Hash or Cert', async (t) => {
  const check = await startService(t, { certificateSource: 'xfcc' });
  assertAllowed(t, await check({ headers: { 'x-forwarded-client-cert': xfccHash(opensslThumbprint.hex) } }));
  assertAllowed(t, await check({ headers: { 'x-forwarded-client-cert': xfccHash(opensslThumbprint.hex.toUpperCase()) } }));
  assertAllowed(t, await check({ headers: { 'x-forwarded-client-cert': `Hash=${opensslThumbprint.hex};Cert="${pem(pki.client.cert)}"` } }));
  assertAllowed(t, await check({ headers: { 'x-forwarded-client-cert': `Cert="${pem(pki.client.cert)}";Subject="CN=a,O=b"` } }));
  const otherHex = hashHex(otherDer);
  assertMismatch(t, await check({ headers: { 'x-forwarded-client-cert': xfccHash(otherHex) } }), 'not the one the token is bound to');
  assertMismatch(
    t,
    await check({ headers: { 'x-forwarded-client-cert': `Hash=${otherHex};Cert="${pem(pki.client.cert)}"` } }),
    'disagree',
  );
  assertMismatch(
    t,
    await check({ headers: { 'x-forwarded-client-cert': `${xfccHash(opensslThumbprint.hex)},${xfccHash(otherHex)}` } }),
    'more than one element',
  );
  assertMismatch(t, await check({ headers: { 'x-forwarded-client-cert': 'Hash=abc' } }), 'not a hex SHA-256');
  assertMismatch(t, await check({ peerCertificate: pem(pki.client.cert) }), 'does not present');
});

t.test('source clientCert: the RFC 9440 Client-Cert header', async (t) => {
  const check = await startService(t, { certificateSource: 'clientCert' });
  assertAllowed(t, await check({ headers: { 'client-cert': `:${clientDer.toString('base64')}:` } }));
  assertMismatch(t, await check({ headers: { 'client-cert': `:${otherDer.toString('base64')}:` } }), 'not the one the token is bound to');
  assertMismatch(t, await check({ headers: { 'client-cert': clientDer.toString('base64') } }), 'byte sequence');
  assertMismatch(t, await check({ headers: { 'client-cert': ':AAAA:' } }), 'not a valid certificate');
});

t.test('senderConstraint off ignores the binding', async (t) => {
  const check = await startService(t, { senderConstraint: 'off' });
  t.ok(summarize(await check()).allowed);
});

t.test('a certificate-bound token under the DPoP scheme is refused', async (t) => {
  const check = await startService(t, {});
  const response = await check({ headers: { authorization: `DPoP ${token}`, dpop: 'a.b.c' } });
  t.notOk(summarize(response).allowed);
  t.equal(response.status?.message, 'invalid_dpop_proof', 'the proof is checked first');
});

function hashHex(der: Buffer): string {
  return execFileSync('openssl', ['dgst', '-sha256', '-hex', '-r'], { input: der }).toString().split(' ')[0]!;
}
