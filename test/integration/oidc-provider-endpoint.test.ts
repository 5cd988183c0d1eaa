/**
 * End to end against a real authorization server (oidc-provider), for the
 * endpoint options of issue 3: client authentication by a verbatim
 * authorizationValue and by a client id taken from a request header, and a
 * revocation made effective at once by the admin eviction (DELETE /cache).
 * (client_secret_basic and client_secret_post: oidc-provider.test.ts.
 * oidc-provider takes no bearer client authentication: that method is tested
 * against the fake server in test/introspection/endpoint-client.test.ts.)
 */
import t from 'tap';
import { request } from 'undici';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startAuthorizationServer } from '../support/authorization-server.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

const ADMIN = 'oidc-admin-token-31415926535';
const as = await startAuthorizationServer();
t.teardown(() => as.close());

async function start(t: Test, endpoint: Record<string, unknown>): Promise<{ app: App; envoy: EnvoyClient }> {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
      log: { level: 'silent' },
      admin: { token: ADMIN },
      endpoints: [{ name: 'oidc', url: as.introspectionUrl, ...endpoint }],
      policies: [{ name: 'p', mappedIdentity: '{client_id}' }],
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy };
}

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

t.test('authorization_value: a verbatim Authorization header the server accepts', async (t) => {
  const { envoy } = await start(t, {
    authorizationValue: basic(as.introspectors.basic.clientId, as.introspectors.basic.clientSecret),
  });
  const token = await as.issueToken({ scope: 'read' });
  const before = as.introspectionCount();
  const r = summarize(await envoy.check({ headers: { authorization: `Bearer ${token}` } }));
  t.equal(r.allowed, true);
  t.equal(r.headers['x-auth-subject'], 'app-one');
  t.equal(as.introspectionCount(), before + 1);

  const { envoy: wrong } = await start(t, { authorizationValue: basic(as.introspectors.basic.clientId, 'wrong') });
  const denied = summarize(await wrong.check({ headers: { authorization: `Bearer ${token}` } }));
  t.equal(denied.allowed, false, 'a value the server refuses: never an allow');
  t.equal(denied.httpStatus, 500, 'bad_response');
});

t.test('clientIdHeader with client_secret_post: the introspecting client named by a request header', async (t) => {
  const { envoy } = await start(t, {
    authMethod: 'client_secret_post',
    clientIdHeader: 'x-introspector',
    clientSecret: as.introspectors.post.clientSecret,
  });
  const token = await as.issueToken({ scope: 'read' });
  const check = (introspector?: string) =>
    envoy
      .check({ headers: { authorization: `Bearer ${token}`, ...(introspector ? { 'x-introspector': introspector } : {}) } })
      .then(summarize);
  t.equal((await check(as.introspectors.post.clientId)).allowed, true, 'the right client id: allowed');
  const before = as.introspectionCount();
  const other = await check('app-two');
  t.equal(other.allowed, false, 'another client id: not served from the first answer');
  t.equal(as.introspectionCount(), before + 1, 'the server was asked as that client');
  t.equal((await check()).allowed, false, 'no header: denied');
});

t.test('revocation, then the admin eviction: denied at once', async (t) => {
  const { app, envoy } = await start(t, {
    clientId: as.introspectors.basic.clientId,
    clientSecret: as.introspectors.basic.clientSecret,
  });
  const token = await as.issueToken({ scope: 'read' });
  const check = () => envoy.check({ headers: { authorization: `Bearer ${token}` } }).then(summarize);
  t.equal((await check()).allowed, true);
  await as.revoke(token);
  t.equal((await check()).allowed, true, 'cached: the revocation is not seen yet (validatedTokenTTL 600 s)');

  const before = as.introspectionCount();
  const response = await request(`http://127.0.0.1:${app.admin!.port}/cache`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  t.equal(response.statusCode, 200);
  t.same(await response.body.json(), { evicted: 1 });

  const denied = await check();
  t.equal(denied.allowed, false, 'denied at once');
  t.equal(denied.httpStatus, 401);
  t.equal(denied.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token", error_description="the token is not active"');
  t.equal(as.introspectionCount(), before + 1, 'asked the server again, which says revoked');
  t.equal((await check()).allowed, false);
  t.equal(as.introspectionCount(), before + 1, 'and that inactive answer is cached (negativeTTL)');
});
