// The way to the endpoint: TLS with a private CA, mutual TLS, and a forward
// proxy in between (CONNECT for https, absolute-URI requests for http), each
// against the fake authorization server on loopback. Certificates are made
// for the test with the openssl command line.
import t, { type Test } from 'tap';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApp } from '../../src/app.js';
import { buildConfig, ConfigError, type EndpointConfig } from '../../src/config/load.js';
import { EndpointClient } from '../../src/introspection/endpoint-client.js';
import type { IntrospectionResult } from '../../src/introspection/result.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestPki, opensslAvailable } from '../support/certificates.js';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer, type FakeAuthorizationServer, type FakeServerOptions } from '../support/fake-authorization-server.js';
import { startForwardProxy, type ForwardProxy, type ForwardProxyOptions } from '../support/forward-proxy.js';

if (!opensslAvailable()) {
  // Not a skip that hides itself: the suite fails, saying what is missing.
  throw new Error('these tests need the openssl command (Debian package openssl) to make their certificates');
}

const TOKEN = 'transport-token-9Qm2';
const normal = answerByToken({ [TOKEN]: { sub: 'alice', client_id: 'app-one' } });
const pki = createTestPki();

function endpoint(url: string, options: Record<string, unknown> = {}): EndpointConfig {
  const raw = { name: 'idp', url, authMethod: 'none', authenticationTimeout: 2_000, retries: 0, ...options };
  return buildConfig({ endpoints: [raw] }, 'test', { env: {} }).endpoints[0]!;
}

function configError(options: Record<string, unknown>): string {
  try {
    endpoint('https://127.0.0.1:1/introspect', options);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

async function fake(t: Test, options: FakeServerOptions = {}): Promise<FakeAuthorizationServer> {
  const server = await startFakeAuthorizationServer(normal, options);
  t.teardown(() => server.close());
  return server;
}

async function proxy(t: Test, options: ForwardProxyOptions = {}): Promise<ForwardProxy> {
  const server = await startForwardProxy(options);
  t.teardown(() => server.close());
  return server;
}

function client(t: Test, config: EndpointConfig): EndpointClient {
  const c = new EndpointClient(config);
  t.teardown(() => c.destroy());
  return c;
}

const detail = (result: IntrospectionResult) => ('detail' in result ? result.detail : '');

const httpsServer: FakeServerOptions = { tls: pki.server };
const mutualTls: FakeServerOptions = { tls: { ...pki.server, ca: pki.ca, requestCert: true } };

t.test('TLS with a private CA: trusted through `ca`, and only then', async (t) => {
  const server = await fake(t, httpsServer);
  t.match(server.url, /^https:/);

  const trusting = client(t, endpoint(server.url, { ca: pki.ca }));
  const ok = await trusting.introspect(TOKEN);
  t.equal(ok.outcome, 'active', detail(ok));
  t.equal(server.requests.length, 1);

  for (const [name, options] of [
    ['the system trust store', {}],
    ['another CA', { ca: pki.otherCa }],
  ] as const) {
    const refusing = client(t, endpoint(server.url, options));
    const result = await refusing.introspect(TOKEN);
    t.equal(result.outcome, 'error', `${name}: the certificate is refused`);
    t.match(detail(result), /request failed: \w+/, `${name}: ${detail(result)}`);
    t.notMatch(detail(result), TOKEN);
  }
  t.equal(server.requests.length, 1, 'no request was sent over an unverified connection');

  // The endpoint's certificate from another CA, although we trust ours: refused too.
  const impostor = await fake(t, { tls: pki.otherServer });
  t.equal((await client(t, endpoint(impostor.url, { ca: pki.ca })).introspect(TOKEN)).outcome, 'error');
  t.equal(impostor.requests.length, 0);

  t.equal((await trusting.introspect(TOKEN)).outcome, 'active', 'the trusting client still works');
});

t.test('ca, cert and key from files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authz-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'client.pem'), keyFile: join(dir, 'client.key') };
  writeFileSync(files.caFile, pki.ca);
  writeFileSync(files.certFile, pki.client.cert);
  writeFileSync(files.keyFile, pki.client.key);
  const server = await fake(t, mutualTls);
  const config = endpoint(server.url, files);
  t.equal(config.tls.ca, pki.ca);
  t.equal(config.tls.key?.reveal(), pki.client.key.trim(), 'the key is a secret');
  t.notMatch(JSON.stringify(config), /PRIVATE KEY/, 'and never printed');
  const result = await client(t, config).introspect(TOKEN);
  t.equal(result.outcome, 'active', detail(result));
  t.equal(server.requests[0]?.clientCertificate, 'authz-client');
});

t.test('mutual TLS: the client certificate is presented; without it the endpoint refuses', async (t) => {
  const server = await fake(t, mutualTls);
  const withCert = client(t, endpoint(server.url, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }));
  const ok = await withCert.introspect(TOKEN);
  t.equal(ok.outcome, 'active', detail(ok));
  t.equal(server.requests[0]?.clientCertificate, 'authz-client', 'the server verified our certificate');

  const without = client(t, endpoint(server.url, { ca: pki.ca }));
  const refused = await without.introspect(TOKEN);
  t.equal(refused.outcome, 'error', `no client certificate: ${detail(refused)}`);
  t.equal(server.requests.length, 1, 'the refused client got no request through');
  t.equal((await withCert.introspect(TOKEN)).outcome, 'active', 'the other client still works');
});

t.test('TLS settings are checked when the configuration loads; errors never quote PEM', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['no PEM in ca', { ca: 'not a certificate' }, 'endpoints[0].ca: holds no PEM certificate'],
    [
      'a broken certificate',
      { ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' },
      'endpoints[0].ca: holds a PEM certificate that cannot be read',
    ],
    ['ca inline and as a file', { ca: pki.ca, caFile: '/nonexistent' }, 'endpoints[0].ca: give it inline or as caFile, not both'],
    ['an unreadable caFile', { caFile: '/nonexistent/ca.pem' }, 'endpoints[0].caFile: cannot read /nonexistent/ca.pem: ENOENT'],
    ['an empty ca', { ca: '  ' }, 'endpoints[0].ca: is empty'],
    ['cert without key', { cert: pki.client.cert }, 'endpoints[0].key: cert and key go together: give both or neither'],
    ['key without cert', { key: pki.client.key }, 'endpoints[0].cert: cert and key go together: give both or neither'],
  ];
  for (const [name, options, message] of cases) t.equal(configError(options), `test: ${message}`, name);

  const mismatch = configError({ cert: pki.client.cert, key: pki.server.key });
  t.match(mismatch, /^test: endpoints\[0\]\.key: cannot be used with cert \(.+\)$/, `a key of another certificate: ${mismatch}`);
  t.notMatch(mismatch, /BEGIN|PRIVATE/);
  const garbageKey = configError({ cert: pki.client.cert, key: 'garbage' });
  t.match(garbageKey, /^test: endpoints\[0\]\.key: cannot be used with cert/);
  t.notMatch(garbageKey, /garbage/, 'the key is never quoted');

  let error: unknown;
  try {
    endpoint('http://127.0.0.1:1/introspect', { ca: pki.ca });
  } catch (e) {
    error = e;
  }
  t.equal((error as Error).message, 'test: endpoints[0].ca: only used with an https url');
});

t.test('proxy, http endpoint: absolute-URI requests through the proxy', async (t) => {
  const server = await fake(t);
  const forward = await proxy(t);
  const c = client(t, endpoint(server.url, { proxy: forward.url }));
  const result = await c.introspect(TOKEN);
  t.equal(result.outcome, 'active', detail(result));
  t.same(forward.requests.map((r) => [r.method, r.target]), [['POST', server.url]], 'the request went through the proxy');
  t.equal(server.requests.length, 1);
  t.equal(server.requests[0]!.body.get('token'), TOKEN);
});

t.test('proxy, https endpoint: a CONNECT tunnel, TLS verified end to end', async (t) => {
  const server = await fake(t, mutualTls);
  const forward = await proxy(t);
  const c = client(t, endpoint(server.url, { proxy: forward.url, ca: pki.ca, cert: pki.client.cert, key: pki.client.key }));
  const result = await c.introspect(TOKEN);
  t.equal(result.outcome, 'active', detail(result));
  t.same(forward.requests.map((r) => [r.method, r.target]), [['CONNECT', `127.0.0.1:${server.port}`]]);
  t.equal(server.requests[0]?.clientCertificate, 'authz-client', 'mTLS inside the tunnel');

  const untrusting = client(t, endpoint(server.url, { proxy: forward.url }));
  t.equal((await untrusting.introspect(TOKEN)).outcome, 'error', 'the tunnel changes nothing about verification');
});

t.test('proxy credentials: sent as Proxy-Authorization, never printed', async (t) => {
  const server = await fake(t);
  const forward = await proxy(t, { credentials: { user: 'svc', password: 'pa:ss@word' } });
  const url = `http://svc:${encodeURIComponent('pa:ss@word')}@127.0.0.1:${forward.port}`;
  const config = endpoint(server.url, { proxy: url });
  t.equal(config.proxy?.url, forward.url, 'the credentials left the URL');
  t.notMatch(JSON.stringify(config), /ss@word|pa%3Ass/, 'not in the printed configuration');
  const result = await client(t, config).introspect(TOKEN);
  t.equal(result.outcome, 'active', detail(result));
  t.equal(forward.requests[0]?.proxyAuthorization, `Basic ${Buffer.from('svc:pa:ss@word').toString('base64')}`);
  t.equal(server.requests[0]?.headers['proxy-authorization'], undefined, 'not passed on to the endpoint');

  const wrong = client(t, endpoint(server.url, { proxy: `http://svc:nope@127.0.0.1:${forward.port}` }));
  const refused = await wrong.introspect(TOKEN);
  t.equal(refused.outcome, 'error', 'wrong proxy credentials: an error');
  t.equal(detail(refused), 'request failed: UND_ERR_INVALID_ARG (Proxy Authentication Required (407))', 'that says why');
  t.notMatch(detail(refused), /nope/);
  const wrongTunnel = await client(t, endpoint('https://127.0.0.1:1/x', { proxy: `http://svc:nope@127.0.0.1:${forward.port}`, ca: pki.ca })).introspect(TOKEN);
  t.equal(detail(wrongTunnel), 'request failed: UND_ERR_ABORTED (Proxy response (407))', 'on CONNECT too');

  const httpsServer2 = await fake(t, httpsServer);
  const tunnelled = await client(t, endpoint(httpsServer2.url, { proxy: url, ca: pki.ca })).introspect(TOKEN);
  t.equal(tunnelled.outcome, 'active', detail(tunnelled));
  t.equal(forward.requests.at(-1)?.method, 'CONNECT');
  t.equal(forward.requests.at(-1)?.proxyAuthorization, `Basic ${Buffer.from('svc:pa:ss@word').toString('base64')}`, 'on CONNECT too');
});

t.test('proxy settings are checked when the configuration loads', async (t) => {
  t.equal(configError({ proxy: 'socks5://127.0.0.1:1080' }), 'test: endpoints[0].proxy: must use http or https');
  t.equal(configError({ proxy: 'http://proxy:3128/path' }), 'test: endpoints[0].proxy: must be a proxy origin without a path, query or fragment');
  t.equal(configError({ proxy: 'proxy:3128' }), 'test: endpoints[0].proxy: must use http or https');
  t.equal(configError({ proxy: 'not a url' }), 'test: endpoints[0].proxy: must be an absolute http(s) URL');
});

t.test('proxy down: an error, promptly', async (t) => {
  const server = await fake(t);
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const started = Date.now();
  const result = await client(t, endpoint(server.url, { proxy: `http://127.0.0.1:${port}` })).introspect(TOKEN);
  t.equal(result.outcome, 'error');
  t.match(detail(result), /ECONNREFUSED/);
  t.ok(Date.now() - started < 1_000);
  t.equal(server.requests.length, 0);
});

t.test('through a proxy, connections stay bounded by maxConnections', async (t) => {
  for (const [name, options] of [
    ['http', {}],
    ['https', httpsServer],
  ] as const) {
    const server = await fake(t, options);
    server.respond((request) => ({ delayMs: 20, ...(normal(request) as object) }));
    const forward = await proxy(t);
    const c = client(t, endpoint(server.url, { proxy: forward.url, maxConnections: 2, ca: name === 'https' ? pki.ca : null }));
    const results = await Promise.all(Array.from({ length: 8 }, () => c.introspect(TOKEN)));
    t.same(results.map((r) => r.outcome), Array(8).fill('active'), `${name}: all answered`);
    t.ok(server.connectionCount() <= 2, `${name}: ${server.connectionCount()} connections reached the endpoint (max 2)`);
  }
});

t.test('through the service: a certificate we do not trust denies with unreachableStatus; the right CA allows', async (t) => {
  const server = await fake(t, httpsServer);
  const raw = (ca: string | null) => ({
    server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 } },
    log: { level: 'silent' },
    endpoints: [{ name: 'idp', url: server.url, authMethod: 'none', ca }],
  });
  const app = await startApp(buildConfig(raw(pki.otherCa), 'test', { env: {} }), createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  const check = () => envoy.check({ headers: { authorization: `Bearer ${TOKEN}` } }).then(summarize);

  const denied = await check();
  t.equal(denied.allowed, false);
  t.equal(denied.httpStatus, 401, 'unreachableStatus');
  t.equal(server.requests.length, 0);
  t.equal(await envoy.health(), 'SERVING', 'the service stays healthy');

  app.reload(buildConfig(raw(pki.ca), 'test', { env: {} }));
  t.equal((await check()).allowed, true, 'after a reload with the right CA');
});
